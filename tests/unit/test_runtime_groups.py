"""Per-period math of the runtime groups from consecutive snapshots, across resets and gaps."""

from __future__ import annotations

import os
import random
from collections.abc import Sequence

import pytest
from percentiles import exact_percentile

from otel_neuron.groups.base import MetricGroup
from otel_neuron.groups.runtime import (
    GROUP_TYPES,
    HwCountersGroup,
    InferenceStatsGroup,
    MemoryUsedGroup,
    NeuronCoreCountersGroup,
    RuntimeGroup,
    RuntimeVcpuUsageGroup,
    SnapshotChecks,
    create_runtime_groups,
)
from otel_neuron.histogram import SCALE, bucket_bounds, bucket_index
from otel_neuron.report.section_table import SECTIONS_V1
from otel_neuron.report.sections_v1 import (
    render_hw_counters,
    render_inference_stats,
    render_memory_used,
    render_neuroncore_counters,
    render_runtime_vcpu_usage,
)
from otel_neuron.runtime import runtime_pb2
from otel_neuron.runtime.recorder import InferenceRecorder, Subgraph
from otel_neuron.runtime.simulator import Simulator, SimulatorOptions
from otel_neuron.semconv import (
    CORE_FLOPS,
    CORE_INDEX,
    CORE_MEMORY_BY_CATEGORY,
    CORE_MEMORY_CATEGORIES,
    ECC_ERRORS,
    ECC_KINDS_V1,
    ERROR_TYPE,
    ERROR_TYPES,
    ERROR_TYPES_V2,
    HOST_MEMORY_BY_CATEGORY,
    HOST_MEMORY_CATEGORIES,
    HW_ERROR_TYPE,
    INFERENCE_COUNT,
    INFERENCE_ERRORS,
    MEMORY_CATEGORY,
    MEMORY_LOCATION,
    MODEL_ID,
    PROCESS_PID,
    RUNTIME_INDEX,
    RUNTIME_MEMORY,
    RUNTIME_TAG,
    SUBGRAPH_MEMORY,
    SUBGRAPH_MEMORY_BY_CATEGORY,
    SUBGRAPH_NAME,
)
from otel_neuron.semconv import SUBGRAPH_DEVICE_MEMORY_CATEGORIES as SUBGRAPH_CATEGORIES
from otel_neuron.sources.runtime_endpoint import RuntimeEndpoint, RuntimeEndpointError, parse_address


class FakeEndpoint:
    """Serves the snapshots of whatever recorder is current; `down` makes fetches fail. With
    `uptime_s` set, snapshots carry that runtime uptime (per-second values are then exact)."""

    def __init__(self, recorder: InferenceRecorder) -> None:
        self.recorder = recorder
        self.down = False
        self.last_error = ""
        self.address = parse_address("unix:/fake.sock")
        self.uptime_s: float | None = None

    def fetch(self) -> runtime_pb2.Snapshot:
        if self.down:
            self.last_error = "cannot connect to unix:/fake.sock: no such file"
            raise RuntimeEndpointError(self.last_error)
        self.last_error = ""
        return self._timed(self.recorder.snapshot())

    def _timed(self, snapshot: runtime_pb2.Snapshot) -> runtime_pb2.Snapshot:
        if self.uptime_s is not None:
            snapshot.uptime_nano = round(self.uptime_s * 1e9)
        return snapshot


def sharing(endpoint: object, *kinds: type[RuntimeGroup], index: int = 0) -> list[RuntimeGroup]:
    """Groups of one runtime, primed, sharing its endpoint and snapshot checks as the factory makes them."""
    checks = SnapshotChecks()
    groups = [kind(index, endpoint, checks) for kind in kinds]  # type: ignore[arg-type]
    for group in groups:
        group.prime()
    return groups


class Twins:
    """The same inferences recorded by two runtimes, one polled for period histograms."""

    def __init__(self) -> None:
        self.subtracting = FakeEndpoint(InferenceRecorder(runtime_id="a"))
        self.asking = PeriodAskingEndpoint(InferenceRecorder(runtime_id="b"))

    def record(self, *args: object) -> None:
        self.subtracting.recorder.record(*args)  # type: ignore[arg-type]
        self.asking.recorder.record(*args)  # type: ignore[arg-type]

    def restart(self) -> None:
        self.subtracting.recorder = InferenceRecorder(runtime_id="c")
        self.asking.recorder = InferenceRecorder(runtime_id="d")


class PeriodAskingEndpoint(FakeEndpoint):
    """Asks for the latencies since the inference_stats group's baseline, as RuntimeEndpoint does."""

    def __init__(self, recorder: InferenceRecorder) -> None:
        super().__init__(recorder)
        self.since_epoch = 0
        self.served: list[int] = []  # period_since_epoch of each answer

    def note_latency_baseline(self, epoch: int) -> None:
        self.since_epoch = epoch

    def fetch(self) -> runtime_pb2.Snapshot:
        super().fetch()  # the failure, if down
        snapshot = self._timed(self.recorder.snapshot(self.since_epoch))
        self.served.append(snapshot.period_since_epoch)
        return snapshot


def stats(endpoint: FakeEndpoint) -> InferenceStatsGroup:
    group = InferenceStatsGroup(0, endpoint)  # type: ignore[arg-type]
    group.prime()
    return group


def body(group: InferenceStatsGroup) -> dict:
    sample = group.sample()
    assert sample.error == ""
    return render_inference_stats(sample.points)


def test_counts_and_percentiles_cover_exactly_the_period() -> None:
    endpoint = FakeEndpoint(InferenceRecorder())
    endpoint.recorder.record("m", "completed", 9.0, 8.0)  # before the baseline: not counted
    group = stats(endpoint)
    latencies = [0.010, 0.012, 0.011, 0.050, 0.009]
    for latency in latencies:
        endpoint.recorder.record("m", "completed", latency, latency / 2)
    endpoint.recorder.record("m", "timed_out", 0.2, 0.1, "runtime")
    report = body(group)
    assert report["inference_summary"]["completed"] == 5
    assert report["inference_summary"]["timed_out"] == 1
    assert report["error_summary"] == {
        "generic": 0,
        "numerical": 0,
        "transient": 0,
        "runtime": 1,
        "hardware": 0,
    }
    total = report["latency_stats"]["total_latency"]
    ran = latencies + [0.2]
    assert total["p0"] == min(ran) and total["p100"] == max(ran)
    for q in (1, 25, 50, 75, 99):
        assert total[f"p{q}"] == pytest.approx(exact_percentile(ran, q), rel=0.01)
    assert report["latency_stats"]["device_latency"]["p100"] == 0.1


def test_latency_objects_are_null_when_nothing_completed() -> None:
    endpoint = FakeEndpoint(InferenceRecorder())
    group = stats(endpoint)
    endpoint.recorder.record("m", "failed_to_queue", None)
    report = body(group)
    assert report["latency_stats"] == {"total_latency": None, "device_latency": None}
    assert report["inference_summary"]["failed_to_queue"] == 1


def test_a_runtime_restart_gives_no_negative_counts_spike_or_stale_percentiles() -> None:
    endpoint = FakeEndpoint(InferenceRecorder())
    group = stats(endpoint)
    for _ in range(1000):
        endpoint.recorder.record("m", "completed", 5.0, 4.0)
    assert body(group)["inference_summary"]["completed"] == 1000
    endpoint.recorder = InferenceRecorder()  # restarted: totals start again from 0
    for _ in range(3):
        endpoint.recorder.record("m", "completed", 0.001, 0.0005)
    report = body(group)
    assert report["inference_summary"]["completed"] == 3
    assert all(value >= 0 for value in report["inference_summary"].values())
    assert report["latency_stats"]["total_latency"]["p100"] == 0.001  # nothing of the old 5 s
    assert body(group)["latency_stats"]["total_latency"] is None


def test_period_histograms_from_the_runtime_give_the_report_subtracting_would() -> None:
    twins = Twins()
    groups = [stats(twins.subtracting), stats(twins.asking)]
    rng = random.Random(7)
    for period in range(12):
        for _ in range(rng.randint(0, 40)):
            latency = rng.lognormvariate(-4.5, 0.6)
            twins.record(
                "m", rng.choice(["completed", "completed_with_err", "timed_out"]), latency, latency * 0.7
            )
        if period == 5:
            twins.restart()
        if period == 8:  # a collection that fails on both: the next one covers the gap
            twins.subtracting.down = twins.asking.down = True
            assert all(group.sample().error for group in groups)
            twins.subtracting.down = twins.asking.down = False
            twins.record("m", "completed", 0.0123, 0.01)
        subtracted, handed_over = (body(group) for group in groups)
        assert handed_over == subtracted
    assert twins.asking.served.count(0) <= 3  # the baseline, the restart, the failed fetch
    assert len(twins.asking.served) >= 12


class Watched:
    """A runtime endpoint whose answers the test sees: every snapshot a group was handed."""

    def __init__(self, endpoint: RuntimeEndpoint) -> None:
        self.endpoint = endpoint
        self.address = endpoint.address
        self.answers: list[runtime_pb2.Snapshot] = []

    @property
    def last_error(self) -> str:
        return self.endpoint.last_error

    def note_latency_baseline(self, epoch: int) -> None:
        self.endpoint.note_latency_baseline(epoch)

    def fetch(self) -> runtime_pb2.Snapshot:
        self.answers.append(self.endpoint.fetch())
        return self.answers[-1]


def test_a_longer_latency_period_still_gets_the_runtimes_period_histograms() -> None:
    endpoint = RuntimeEndpoint("sim:?cores=2&seed=5", deadline_s=0.5, max_age_s=0.0)  # each fetch asks
    watched = Watched(endpoint)
    try:
        stats_group, memory_group = sharing(watched, InferenceStatsGroup, MemoryUsedGroup)
        baseline = watched.answers[0].epoch  # the inference_stats group's
        for _ in range(3):  # memory_used every period, inference_stats every fourth
            assert memory_group.sample().error == ""
        assert endpoint.since_epoch == baseline
        assert stats_group.sample().error == ""
        handed = watched.answers[-1]  # after two baselines and three memory_used periods
        # Its period histograms cover the group's whole period, not the one since the last answer.
        assert (handed.period_since_epoch, handed.epoch) == (baseline, baseline + 5)
    finally:
        endpoint.close()


def test_a_failed_collection_is_an_error_and_the_next_covers_the_gap() -> None:
    endpoint = FakeEndpoint(InferenceRecorder())
    now = [100.0]
    group = InferenceStatsGroup(0, endpoint, clock=lambda: now[0])  # type: ignore[arg-type]
    group.prime()
    endpoint.recorder.record("m", "completed", 0.01)
    endpoint.down = True
    now[0] = 101.0
    failed = group.sample()
    assert failed.error == "cannot connect to unix:/fake.sock: no such file"
    assert failed.period == 1.0
    assert group.runtime_error() == failed.error
    endpoint.recorder.record("m", "completed", 0.02)
    endpoint.down = False
    now[0] = 102.5
    recovered = group.sample()
    assert recovered.error == ""
    assert group.runtime_error() == ""
    assert render_inference_stats(recovered.points)["inference_summary"]["completed"] == 2
    # The period spans the whole gap the counts cover, not just the time since the failure.
    assert recovered.period == 2.5


def test_a_runtime_that_starts_after_the_monitor_is_counted_from_its_start() -> None:
    endpoint = FakeEndpoint(InferenceRecorder())
    endpoint.down = True
    group = stats(endpoint)  # the baseline fails: no runtime yet
    endpoint.down = False
    endpoint.recorder = InferenceRecorder()  # started after the baseline was attempted
    endpoint.recorder.record("m", "completed", 0.01)
    assert body(group)["inference_summary"]["completed"] == 1


def test_utilization_vcpu_memory_and_ecc() -> None:
    ticks = {"cpu": (0.0, 0.0)}
    recorder = InferenceRecorder(cores=2, devices=1, cpu_times=lambda: ticks["cpu"])
    model_id = recorder.register_model(
        "bert", [Subgraph("sg00", 1, host_bytes=10, device_bytes=20)], uuid="u-1", model_id=7
    )
    endpoint = FakeEndpoint(recorder)
    endpoint.uptime_s = 10.0
    cores, vcpu, ecc, memory = sharing(
        endpoint, NeuronCoreCountersGroup, RuntimeVcpuUsageGroup, HwCountersGroup, MemoryUsedGroup, index=3
    )
    endpoint.uptime_s = 10.2
    recorder.add_core_busy(0, 0.1)
    ticks["cpu"] = (0.05, 0.01)
    recorder.record_ecc(0, "mem_ecc_corrected", 2)
    core_sample = cores.sample()
    assert all(
        attributes["neuron.runtime.index"] == 3
        for attributes, _ in core_sample.points["neuron.core.utilization"]
    )
    in_use = render_neuroncore_counters(core_sample.points)["neuroncores_in_use"]
    assert in_use["0"]["neuroncore_utilization"] == pytest.approx(50.0)  # 0.1 s busy in 0.2 s
    assert in_use["1"] == {"neuroncore_utilization": 0.0, "loaded_models": ["bert:sg00"]}
    usage = render_runtime_vcpu_usage(vcpu.sample().points)["vcpu_usage"]
    vcpus = recorder.snapshot().vcpu_count
    assert usage["user"] == pytest.approx(100 * 0.05 / (0.2 * vcpus))
    assert render_hw_counters(ecc.sample().points) == {
        "neuron_devices": [
            {
                "neuron_device_index": 0,
                "mem_ecc_corrected": 2,
                "mem_ecc_uncorrected": 0,
                "sram_ecc_uncorrected": 0,
            }
        ]
    }
    assert (
        render_hw_counters(ecc.sample().points)["neuron_devices"][0]["mem_ecc_corrected"] == 0
    )  # per period
    assert render_memory_used(memory.sample().points) == {
        "neuron_runtime_used_bytes": {"host": 10, "neuron_device": 20},
        "loaded_models": [
            {
                "name": "bert",
                "uuid": "u-1",
                "model_id": model_id,
                "is_running": True,
                "memory_used_bytes": {"host": 10, "neuron_device": 20},
                "subgraphs": {
                    "sg00": {
                        "memory_used_bytes": {"host": 10, "neuron_device": 20},
                        "neuroncore_index": 1,
                        "neuron_device_index": 0,
                    }
                },
            }
        ],
    }


def test_the_factory_shares_one_endpoint_and_checks_its_arguments() -> None:
    groups = create_runtime_groups(1, "sim:?cores=2&seed=3", list(GROUP_TYPES), deadline_s=0.5)
    assert [group.report_key for group in groups] == list(GROUP_TYPES)
    assert len({id(group.endpoint) for group in groups}) == 1  # type: ignore[attr-defined]
    groups[0].endpoint.close()  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="unknown runtime metric group 'vcpu_usage'"):
        create_runtime_groups(0, "sim:", ["vcpu_usage"], 0.5)
    with pytest.raises(ValueError, match="not a runtime address"):
        create_runtime_groups(0, "http://x", ["hw_counters"], 0.5)
    with pytest.raises(ValueError, match="unknown simulator option"):
        create_runtime_groups(0, "sim:?colors=3", ["hw_counters"], 0.5)


@pytest.mark.parametrize(
    ("address", "kind", "path"),
    [
        ("unix:/run/neuron.sock", "unix", "/run/neuron.sock"),
        ("unix:///run/neuron.sock", "unix", "/run/neuron.sock"),
        ("127.0.0.1:50051", "tcp", ""),
        ("dns:///localhost:50051", "tcp", ""),
        ("sim:", "sim", ""),
        ("sim:?cores=4&models=2&seed=1", "sim", ""),
    ],
)
def test_addresses(address: str, kind: str, path: str) -> None:
    parsed = parse_address(address)
    assert (parsed.kind, parsed.socket_path) == (kind, path)


@pytest.mark.parametrize(
    "address", ["", "unix:", "localhost", "dns:///nohost", "tcp://1.2.3.4:5", "sim:?cores=x"]
)
def test_bad_addresses(address: str) -> None:
    with pytest.raises(ValueError):
        parse_address(address)


class Served:
    """Hands out the snapshots it was given, one a fetch."""

    def __init__(self, *snapshots: runtime_pb2.Snapshot) -> None:
        self.snapshots = list(snapshots)
        self.last_error = ""
        self.address = parse_address("unix:/fake.sock")

    def fetch(self) -> runtime_pb2.Snapshot:
        return self.snapshots.pop(0)


LATENCY = 0.2  # every latency of the period lies in this one's bucket
WINDOWS = ((6, 0.2, 0.9), (3, 0.01, 5.0), (7, 0.1, 0.5), (4, 0.3, 0.4))  # epoch, total min, max; in any order


def latency_snapshot(
    epoch: int, count: int, windows: Sequence[tuple[int, float, float]] = (), oldest_epoch: int = 1
) -> runtime_pb2.Snapshot:
    """A runtime's answer holding `count` latencies (all in LATENCY's bucket; device latencies half
    the total), with latency windows (device min/max half the total's)."""
    snapshot = runtime_pb2.Snapshot(
        runtime_id="r", epoch=epoch, oldest_epoch=oldest_epoch, uptime_nano=epoch * 10**9
    )
    for histogram, scale in ((snapshot.total_latency, 1.0), (snapshot.device_latency, 0.5)):
        histogram.scale = SCALE
        histogram.offset = bucket_index(LATENCY * scale)
        histogram.bucket_counts.append(count)
        histogram.count = count
        histogram.sum = count * LATENCY * scale
        histogram.min, histogram.max = 0.01 * scale, 5.0 * scale
    for window_epoch, low, high in windows:
        snapshot.latency_windows.add(
            epoch=window_epoch, total_min=low, total_max=high, device_min=low / 2, device_max=high / 2
        )
    return snapshot


def period_min_max(previous: runtime_pb2.Snapshot, current: runtime_pb2.Snapshot) -> tuple[float, ...] | None:
    """(total p0, p100, device p0, p100) of the inference_stats report for the period between two
    answers of a runtime that hands over no period histograms; None: no latencies in the period."""
    group = stats(Served(previous, current))  # type: ignore[arg-type]
    latencies = body(group)["latency_stats"]
    if latencies["total_latency"] is None:
        return None
    total, device = latencies["total_latency"], latencies["device_latency"]
    return total["p0"], total["p100"], device["p0"], device["p100"]


@pytest.mark.parametrize(
    ("since_epoch", "expected"),
    [
        (5, (0.1, 0.9, 0.05, 0.45)),  # epochs 6 and 7, whatever the order they arrive in
        (6, (0.1, 0.5, 0.05, 0.25)),  # epoch 7 alone, though its window is not the last
    ],
)
def test_the_periods_min_and_max_come_from_every_window_after_the_previous_answer(
    since_epoch: int, expected: tuple[float, ...]
) -> None:
    previous = latency_snapshot(since_epoch, 10)
    current = latency_snapshot(7, 14, WINDOWS, oldest_epoch=2)
    assert period_min_max(previous, current) == expected


def test_the_newest_window_alone_bounds_a_one_epoch_period_and_older_ones_join_a_longer_one() -> None:
    windows = (*WINDOWS, (8, 0.3, 0.6))
    current = latency_snapshot(8, 14, windows, oldest_epoch=2)
    assert period_min_max(latency_snapshot(7, 10), current) == (0.3, 0.6, 0.15, 0.3)
    current = latency_snapshot(8, 14, windows, oldest_epoch=2)
    assert period_min_max(latency_snapshot(6, 10), current) == (0.1, 0.6, 0.05, 0.3)


def test_nothing_recorded_since_the_previous_answer_gives_no_latencies() -> None:
    assert period_min_max(latency_snapshot(7, 14), latency_snapshot(8, 14, WINDOWS, oldest_epoch=2)) is None


def test_a_period_older_than_the_windows_kept_is_bounded_by_its_buckets() -> None:
    previous = latency_snapshot(1, 10)  # epoch 2 is no longer retained: windows cannot bound the period
    bounds = period_min_max(previous, latency_snapshot(7, 14, WINDOWS, oldest_epoch=3))
    total_bucket = bucket_bounds(bucket_index(LATENCY))
    device_bucket = bucket_bounds(bucket_index(LATENCY / 2))
    assert bounds == (*total_bucket, *device_bucket)


def test_a_down_runtime_is_one_error_series_in_the_metrics_and_the_reports_entry() -> None:
    from otel_neuron.producer import RUNTIME_ERROR, Collected, MetricsDataProducer
    from otel_neuron.report import report_from_metrics
    from otel_neuron.resource import build_resource
    from otel_neuron.sources.instance import InstanceFacts

    endpoint = FakeEndpoint(InferenceRecorder())
    groups = sharing(endpoint, *GROUP_TYPES.values(), index=3)
    endpoint.down = True
    collected = [Collected(group, group.sample()) for group in groups]
    data = MetricsDataProducer(build_resource(InstanceFacts(error="test"))).produce(collected)

    (metric,) = [m for m in data.resource_metrics[0].scope_metrics[0].metrics if m.name == RUNTIME_ERROR.name]
    (point,) = metric.data.data_points  # five groups of one runtime: still one series
    assert point.value == 1 and point.attributes["error.message"] == endpoint.last_error
    (entry,) = report_from_metrics(data)["neuron_runtime_data"]
    assert entry["neuron_runtime_index"] == 3 and entry["error"] == endpoint.last_error
    assert set(entry["report"]) == set(GROUP_TYPES)


class TickEndpoint(FakeEndpoint):
    """Hands every group the same snapshot until `tick()`, as the collector does."""

    def __init__(self, recorder: InferenceRecorder) -> None:
        super().__init__(recorder)
        self.tick()

    def tick(self) -> None:
        self.current = self.recorder.snapshot()

    def fetch(self) -> runtime_pb2.Snapshot:
        return self.current


def test_ecc_events_and_model_loads_show_in_the_period_they_happen_and_only_then() -> None:
    recorder = InferenceRecorder(cores=2, devices=2)
    endpoint = TickEndpoint(recorder)
    ecc, cores, memory = sharing(endpoint, HwCountersGroup, NeuronCoreCountersGroup, MemoryUsedGroup)

    def period() -> tuple[list[int], dict[str, list[str]], list[str]]:
        endpoint.tick()
        devices = render_hw_counters(ecc.sample().points)["neuron_devices"]
        in_use = render_neuroncore_counters(cores.sample().points)["neuroncores_in_use"]
        loaded = render_memory_used(memory.sample().points)["loaded_models"]
        return (
            [device["mem_ecc_uncorrected"] for device in devices],
            {core: entry["loaded_models"] for core, entry in in_use.items()},
            [model["name"] for model in loaded],
        )

    assert period() == ([0, 0], {"0": [], "1": []}, [])
    assert period() == ([0, 0], {"0": [], "1": []}, [])
    recorder.record_ecc(1, "mem_ecc_uncorrected", 3)
    model_id = recorder.register_model("bert", [Subgraph("sg00", 1)])
    assert period() == ([0, 3], {"0": [], "1": ["bert:sg00"]}, ["bert"])
    assert period() == ([0, 0], {"0": [], "1": ["bert:sg00"]}, ["bert"])
    recorder.set_model_running(model_id, False)
    endpoint.tick()  # the models changed, though not where neuroncore_counters looks
    assert [model["is_running"] for model in render_memory_used(memory.sample().points)["loaded_models"]] == [
        False
    ]
    recorder.unregister_model(model_id)
    recorder.record_ecc(0, "mem_ecc_uncorrected")
    assert period() == ([1, 0], {"0": [], "1": []}, [])
    assert period() == ([0, 0], {"0": [], "1": []}, [])


def test_after_a_restart_the_period_is_the_new_runtimes_whole_life_whatever_epoch_was_asked_for() -> None:
    endpoint = PeriodAskingEndpoint(InferenceRecorder(runtime_id="old"))
    group = stats(endpoint)
    endpoint.recorder.record("m", "completed", 0.3)
    assert body(group)["inference_summary"]["completed"] == 1  # the baseline's epoch is now 2
    endpoint.recorder = InferenceRecorder(runtime_id="new")  # restarted
    endpoint.recorder.record("m", "completed", 0.9, 0.8)
    endpoint.recorder.record("m", "completed", 0.001, 0.0005)
    for _ in range(4):  # other monitors poll the new runtime past the epoch this one asks about
        endpoint.recorder.snapshot()
        endpoint.recorder.record("m", "completed", 0.05, 0.04)
    report = body(group)
    assert report["inference_summary"]["completed"] == 6
    total = report["latency_stats"]["total_latency"]
    assert (total["p0"], total["p100"]) == (0.001, 0.9)
    assert report["latency_stats"]["device_latency"]["p0"] == 0.0005


def test_neuroncores_in_use_reads_the_same_from_columns_as_point_by_point() -> None:
    recorder = InferenceRecorder(cores=4, devices=1)
    recorder.register_model("bert", [Subgraph("sg00", 2), Subgraph("sg01", 0)], uuid="u-1")
    recorder.register_model("gpt", [Subgraph("sg00", 2)], uuid="u-2")
    endpoint = FakeEndpoint(recorder)
    endpoint.uptime_s = 1.0
    (cores,) = sharing(endpoint, NeuronCoreCountersGroup)
    endpoint.uptime_s = 1.05
    recorder.add_core_busy(2, 0.01)
    points = cores.sample().points
    point_by_point = {name: list(column) for name, column in points.items()}  # plain lists: no views
    rendered = render_neuroncore_counters(points)
    assert rendered == render_neuroncore_counters(point_by_point)
    in_use = rendered["neuroncores_in_use"]
    assert list(in_use) == ["0", "1", "2", "3"]
    assert in_use["2"]["loaded_models"] == ["bert:sg00", "gpt:sg00"]
    assert in_use["0"]["loaded_models"] == ["bert:sg01"]
    assert in_use["2"]["neuroncore_utilization"] > 0
    # The same model:subgraph placed twice on a core is listed twice, as point by point.
    recorder.register_model("bert", [Subgraph("sg00", 2)], uuid="u-3")
    twice = cores.sample().points
    assert render_neuroncore_counters(twice)["neuroncores_in_use"]["2"]["loaded_models"] == [
        "bert:sg00",
        "bert:sg00",
        "gpt:sg00",
    ]
    assert render_neuroncore_counters(twice) == render_neuroncore_counters(
        {name: list(column) for name, column in twice.items()}
    )


# -- neuron-monitor 2.x's fields from the runtime protocol: application, categories, model errors, flops


class ClockedEndpoint:
    """Serves a hand-stepped simulator's snapshots with the runtime's clock set by the test, so
    per-second values are exact; `older` strips what a runtime predating protocol additions lacks."""

    def __init__(self, simulator: Simulator, older: bool = False) -> None:
        self.simulator = simulator
        self.older = older
        self.uptime_s = 0.0
        self.last_error = ""
        self.address = parse_address("unix:/fake.sock")

    def fetch(self) -> runtime_pb2.Snapshot:
        snapshot = self.simulator.snapshot()
        snapshot.uptime_nano = round(self.uptime_s * 1e9)
        if self.older:
            _strip_additions(snapshot)
        return snapshot


def _strip_additions(snapshot: runtime_pb2.Snapshot) -> None:
    """The snapshot as a runtime that predates the tag, categories, flops, model and SRAM-corrected
    counts would answer it (those fields absent, read as their defaults)."""
    snapshot.ClearField("tag")
    snapshot.ClearField("core_memory")
    snapshot.runtime_memory.ClearField("host_categories")
    for model in snapshot.models:
        for subgraph in model.subgraphs:
            subgraph.memory.ClearField("host_categories")
            subgraph.memory.ClearField("device_categories")
    for core in snapshot.cores:
        core.ClearField("flops")
    snapshot.errors.ClearField("model")
    for device in snapshot.devices:
        device.ClearField("sram_ecc_corrected")


def all_groups(endpoint: object, index: int = 0) -> list[MetricGroup]:
    return list(sharing(endpoint, *GROUP_TYPES.values(), index=index))


def sampled(groups: list[MetricGroup]) -> dict[str, list[tuple[dict, object]]]:
    """Every group sampled once: each instrument's points as (attributes, value) lists."""
    points: dict[str, list[tuple[dict, object]]] = {}
    for group in groups:
        sample = group.sample()
        assert sample.error == "", (group.report_key, sample.error)
        for name, block in sample.points.items():
            points.setdefault(name, []).extend((dict(attributes), value) for attributes, value in block)
    return points


def busy_simulator(**options: object) -> Simulator:
    settings = {"cores": 4, "devices": 2, "models": 3, "rate": 2000.0, "seed": 7, "churn_s": 0.0}
    settings.update(options)
    return Simulator(SimulatorOptions(**settings))  # type: ignore[arg-type]


def test_every_point_carries_the_applications_pid_and_tag_from_neuron_process_tag(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NEURON_PROCESS_TAG", "my_app_1")
    endpoint = ClockedEndpoint(busy_simulator(error_rate=0.2, ecc_per_hour=360_000.0))
    groups = all_groups(endpoint, index=2)
    endpoint.simulator.step(1.0)
    endpoint.uptime_s = 1.0
    points = sampled(groups)
    counted = 0
    for name, block in points.items():
        for attributes, _ in block:
            assert attributes[RUNTIME_INDEX] == 2
            assert attributes[PROCESS_PID] == os.getpid(), name
            assert attributes[RUNTIME_TAG] == "my_app_1", name
            counted += 1
    assert counted > 50


def test_without_neuron_process_tag_the_tag_is_the_pid_and_an_argument_wins(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("NEURON_PROCESS_TAG", raising=False)
    endpoint = FakeEndpoint(InferenceRecorder())
    groups = all_groups(endpoint)
    tags = {attributes[RUNTIME_TAG] for block in sampled(groups).values() for attributes, _ in block}
    assert tags == {str(os.getpid())}
    monkeypatch.setenv("NEURON_PROCESS_TAG", "from_env")
    endpoint.recorder = InferenceRecorder(runtime_id="next", tag="given")  # a restart, tagged anew
    tags = {attributes[RUNTIME_TAG] for block in sampled(groups).values() for attributes, _ in block}
    assert tags == {"given"}  # every group's attributes were built again: none keeps the old tag


def test_memory_categories_add_up_to_the_totals_the_simulator_registered() -> None:
    simulator = busy_simulator(cores=8, models=6, churn_s=5.0)
    endpoint = ClockedEndpoint(simulator)
    (memory,) = [group for group in all_groups(endpoint) if group.report_key == "memory_used"]
    for second in range(1, 31):  # models unloaded and loaded meanwhile
        simulator.step(1.0)
        endpoint.uptime_s = second
        truth = simulator.ground_truth()
        points = sampled([memory])
        used = {a[MEMORY_LOCATION]: v for a, v in points[RUNTIME_MEMORY.name]}
        assert used == {"host": truth.memory.host_bytes, "neuron_device": truth.memory.device_bytes}

        host = {a[MEMORY_CATEGORY]: v for a, v in points[HOST_MEMORY_BY_CATEGORY.name]}
        assert host == {c.category: c.bytes for c in truth.memory.host_categories}
        assert list(host) == list(HOST_MEMORY_CATEGORIES) and sum(host.values()) == used["host"]

        by_core: dict[int, dict[str, int]] = {}
        for attributes, value in points[CORE_MEMORY_BY_CATEGORY.name]:
            by_core.setdefault(attributes[CORE_INDEX], {})[attributes[MEMORY_CATEGORY]] = value
        assert sorted(by_core) == list(range(8))
        assert all(list(categories) == list(CORE_MEMORY_CATEGORIES) for categories in by_core.values())
        device = {c: sum(categories[c] for categories in by_core.values()) for c in CORE_MEMORY_CATEGORIES}
        assert device == {c.category: c.bytes for c in truth.memory.device_categories}
        assert sum(device.values()) == used["neuron_device"]

        subgraph_totals = {_subgraph_key(a): v for a, v in points[SUBGRAPH_MEMORY.name]}
        summed: dict[tuple, int] = dict.fromkeys(subgraph_totals, 0)
        for attributes, value in points[SUBGRAPH_MEMORY_BY_CATEGORY.name]:
            known = HOST_MEMORY_CATEGORIES if attributes[MEMORY_LOCATION] == "host" else SUBGRAPH_CATEGORIES
            assert attributes[MEMORY_CATEGORY] in known
            summed[_subgraph_key(attributes)] += value
        assert summed == subgraph_totals and len(summed) >= 12  # every subgraph, host and device


def _subgraph_key(attributes: dict) -> tuple:
    return tuple(attributes[key] for key in (MODEL_ID, SUBGRAPH_NAME, CORE_INDEX, MEMORY_LOCATION))


def test_model_errors_and_sram_corrected_ecc_are_the_simulators_and_the_1x_report_keeps_its_keys() -> None:
    simulator = busy_simulator(error_rate=0.3, ecc_per_hour=720_000.0)
    endpoint = ClockedEndpoint(simulator)
    groups = all_groups(endpoint)
    before = simulator.ground_truth()
    counted = {"model": 0, "sram_ecc_corrected": 0}
    for second in range(1, 6):
        simulator.step(1.0)
        endpoint.uptime_s = second
        stats, ecc = (g for g in groups if g.report_key in ("inference_stats", "hw_counters"))
        stats_points, ecc_points = stats.sample().points, ecc.sample().points
        errors = {a[ERROR_TYPE]: v for a, v in stats_points[INFERENCE_ERRORS.name]}
        assert list(errors) == list(ERROR_TYPES_V2)
        counted["model"] += errors["model"]
        for attributes, value in ecc_points[ECC_ERRORS.name]:
            if attributes[HW_ERROR_TYPE] == "sram_ecc_corrected":
                counted["sram_ecc_corrected"] += value
        # The 1.x report: the guide's five error types and three ECC kinds, as before.
        assert list(render_inference_stats(stats_points)["error_summary"]) == list(ERROR_TYPES)
        for entry in render_hw_counters(ecc_points)["neuron_devices"]:
            assert list(entry) == ["neuron_device_index", *ECC_KINDS_V1]
    after = simulator.ground_truth()
    sram = sum(d.sram_ecc_corrected for d in after.devices) - sum(
        d.sram_ecc_corrected for d in before.devices
    )
    assert counted == {"model": after.errors.model - before.errors.model, "sram_ecc_corrected": sram}
    assert counted["model"] > 0 and counted["sram_ecc_corrected"] > 0


def test_flops_per_second_are_the_periods_flops_over_the_runtimes_time() -> None:
    simulator = busy_simulator()
    endpoint = ClockedEndpoint(simulator)
    (cores,) = [group for group in all_groups(endpoint) if group.report_key == "neuroncore_counters"]
    for second in (2.0, 4.5):
        before = simulator.ground_truth().flops
        simulator.step(1.0)
        elapsed, endpoint.uptime_s = second - endpoint.uptime_s, second
        done = simulator.ground_truth().flops - before
        points = sampled([cores])
        flops = {a[CORE_INDEX]: v for a, v in points[CORE_FLOPS.name]}
        assert sorted(flops) == [0, 1, 2, 3]
        assert sum(flops.values()) * elapsed == pytest.approx(done, rel=1e-9)
        assert done > 0
    in_use = render_neuroncore_counters(cores.sample().points)["neuroncores_in_use"]
    assert set(in_use["0"]) == {"neuroncore_utilization", "loaded_models"}  # the 1.x report as before


def test_a_runtime_predating_the_additions_still_reports_without_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("NEURON_PROCESS_TAG", raising=False)
    endpoint = ClockedEndpoint(busy_simulator(error_rate=0.3, ecc_per_hour=720_000.0), older=True)
    current = ClockedEndpoint(busy_simulator(error_rate=0.3, ecc_per_hour=720_000.0))
    old_groups, new_groups = all_groups(endpoint), all_groups(current)
    for simulated in (endpoint, current):
        simulated.simulator.step(1.0)
        simulated.uptime_s = 1.0
    old, new = sampled(old_groups), sampled(new_groups)
    for name in (HOST_MEMORY_BY_CATEGORY, CORE_MEMORY_BY_CATEGORY, SUBGRAPH_MEMORY_BY_CATEGORY, CORE_FLOPS):
        assert old[name.name] == [] and new[name.name] != []
    assert {a[RUNTIME_TAG] for block in old.values() for a, _ in block} == {str(os.getpid())}
    assert {a[PROCESS_PID] for block in old.values() for a, _ in block} == {os.getpid()}
    assert dict((a[ERROR_TYPE], v) for a, v in old[INFERENCE_ERRORS.name])["model"] == 0
    # Everything else is what the same workload gives with the additions (the same seed).
    for name in (RUNTIME_MEMORY, SUBGRAPH_MEMORY, INFERENCE_COUNT):
        assert old[name.name] == new[name.name]
    for group in old_groups:
        assert SECTIONS_V1[group.report_key].render(group.sample().points) is not None
