"""Per-period math of the runtime groups from consecutive snapshots, across resets and gaps."""

from __future__ import annotations

import random
import time

import pytest

from otel_neuron.groups.runtime import (
    GROUP_TYPES,
    HwCountersGroup,
    InferenceStatsGroup,
    MemoryUsedGroup,
    NeuronCoreCountersGroup,
    RuntimeVcpuUsageGroup,
    _cores_by_columns,
    _window_min_max,
    create_runtime_groups,
)
from otel_neuron.histogram import exact_percentile
from otel_neuron.runtime import runtime_pb2
from otel_neuron.runtime.recorder import InferenceRecorder, Subgraph
from otel_neuron.sources.runtime_endpoint import RuntimeEndpointError, parse_address


class FakeEndpoint:
    """Serves the snapshots of whatever recorder is current; `down` makes fetches fail."""

    def __init__(self, recorder: InferenceRecorder) -> None:
        self.recorder = recorder
        self.down = False
        self.last_error = ""
        self.address = parse_address("unix:/fake.sock")

    def fetch(self) -> runtime_pb2.Snapshot:
        if self.down:
            self.last_error = "cannot connect to unix:/fake.sock: no such file"
            raise RuntimeEndpointError(self.last_error)
        self.last_error = ""
        return self.recorder.snapshot()


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
        snapshot = self.recorder.snapshot(self.since_epoch)
        self.served.append(snapshot.period_since_epoch)
        return snapshot


def stats(endpoint: FakeEndpoint) -> InferenceStatsGroup:
    group = InferenceStatsGroup(0, endpoint)  # type: ignore[arg-type]
    group.prime()
    return group


def body(group: InferenceStatsGroup) -> dict:
    sample = group.sample()
    assert sample.error == ""
    return InferenceStatsGroup.render(sample.points)


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


def test_a_longer_latency_period_still_gets_the_runtimes_period_histograms() -> None:
    (stats_group, memory_group) = create_runtime_groups(
        0, "sim:?cores=2&seed=5", ["inference_stats", "memory_used"], 0.5
    )
    endpoint = stats_group.endpoint  # type: ignore[attr-defined]
    try:
        for group in (stats_group, memory_group):
            group.prime()
        baseline = stats_group._previous.epoch  # type: ignore[attr-defined]
        for _ in range(3):  # memory_used every period, inference_stats every fourth
            endpoint._cached = None
            assert memory_group.sample().error == ""
        assert endpoint.since_epoch == baseline
        endpoint._cached = None
        sample = stats_group.sample()
        assert sample.error == ""
        assert stats_group._previous.period_since_epoch == baseline  # type: ignore[attr-defined]
        assert stats_group._previous.epoch == baseline + 4  # type: ignore[attr-defined]
    finally:
        endpoint.close()


def test_a_failed_collection_is_an_error_and_the_next_covers_the_gap() -> None:
    endpoint = FakeEndpoint(InferenceRecorder())
    group = stats(endpoint)
    endpoint.recorder.record("m", "completed", 0.01)
    endpoint.down = True
    time.sleep(0.05)
    failed = group.sample()
    assert failed.error == "cannot connect to unix:/fake.sock: no such file"
    assert group.runtime_error() == failed.error
    endpoint.recorder.record("m", "completed", 0.02)
    endpoint.down = False
    time.sleep(0.05)
    recovered = group.sample()
    assert recovered.error == ""
    assert group.runtime_error() == ""
    assert group.render(recovered.points)["inference_summary"]["completed"] == 2
    # The period spans the whole gap the counts cover, not just the time since the failure.
    assert recovered.period >= failed.period + 0.04


def test_a_runtime_that_starts_after_the_monitor_is_counted_from_its_start() -> None:
    endpoint = FakeEndpoint(InferenceRecorder())
    endpoint.down = True
    group = stats(endpoint)  # the baseline fails: no runtime yet
    endpoint.down = False
    time.sleep(0.002)
    endpoint.recorder = InferenceRecorder()
    endpoint.recorder.record("m", "completed", 0.01)
    assert body(group)["inference_summary"]["completed"] == 1


def test_utilization_vcpu_memory_and_ecc() -> None:
    ticks = {"cpu": (0.0, 0.0)}
    recorder = InferenceRecorder(cores=2, devices=1, cpu_times=lambda: ticks["cpu"])
    model_id = recorder.register_model(
        "bert", [Subgraph("sg00", 1, host_bytes=10, device_bytes=20)], uuid="u-1", model_id=7
    )
    endpoint = FakeEndpoint(recorder)
    cores = NeuronCoreCountersGroup(3, endpoint)  # type: ignore[arg-type]
    vcpu = RuntimeVcpuUsageGroup(3, endpoint)  # type: ignore[arg-type]
    ecc = HwCountersGroup(3, endpoint)  # type: ignore[arg-type]
    memory = MemoryUsedGroup(3, endpoint)  # type: ignore[arg-type]
    for group in (cores, vcpu, ecc, memory):
        group.prime()
    time.sleep(0.2)
    recorder.add_core_busy(0, 0.1)
    ticks["cpu"] = (0.05, 0.01)
    recorder.record_ecc(0, "mem_ecc_corrected", 2)
    core_sample = cores.sample()
    assert all(
        attributes["neuron.runtime.index"] == 3
        for attributes, _ in core_sample.points["neuron.core.utilization"]
    )
    in_use = NeuronCoreCountersGroup.render(core_sample.points)["neuroncores_in_use"]
    assert 30 < in_use["0"]["neuroncore_utilization"] <= 50.5
    assert in_use["1"] == {"neuroncore_utilization": 0.0, "loaded_models": ["bert:sg00"]}
    usage = RuntimeVcpuUsageGroup.render(vcpu.sample().points)["vcpu_usage"]
    vcpus = recorder.snapshot().vcpu_count
    assert usage["user"] == pytest.approx(100 * 0.05 / (0.2 * vcpus), rel=0.2)
    assert ecc.render(ecc.sample().points) == {
        "neuron_devices": [
            {
                "neuron_device_index": 0,
                "mem_ecc_corrected": 2,
                "mem_ecc_uncorrected": 0,
                "sram_ecc_uncorrected": 0,
            }
        ]
    }
    assert ecc.render(ecc.sample().points)["neuron_devices"][0]["mem_ecc_corrected"] == 0  # per period
    assert MemoryUsedGroup.render(memory.sample().points) == {
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


def test_the_period_min_max_comes_from_every_window_after_the_previous_epoch_in_any_order() -> None:
    snapshot = runtime_pb2.Snapshot(epoch=7, oldest_epoch=2)
    for epoch, low, high in ((6, 0.2, 0.9), (3, 0.01, 5.0), (7, 0.1, 0.5), (4, 0.3, 0.4)):
        snapshot.latency_windows.add(
            epoch=epoch, total_min=low, total_max=high, device_min=low / 2, device_max=high / 2
        )
    assert _window_min_max(snapshot, 5) == (0.1, 0.9, 0.05, 0.45)
    assert _window_min_max(snapshot, 6) == (0.1, 0.5, 0.05, 0.25)  # epoch 7's window is not the last
    assert _window_min_max(snapshot, 7) is None  # nothing recorded since
    assert _window_min_max(snapshot, 0) is None  # epoch 1 is no longer retained: bound by the buckets
    snapshot.latency_windows.add(epoch=8, total_min=0.3, total_max=0.6, device_min=0.2, device_max=0.4)
    snapshot.epoch = 8
    assert _window_min_max(snapshot, 7) == (0.3, 0.6, 0.2, 0.4)  # the newest window, read alone
    assert _window_min_max(snapshot, 6) == (0.1, 0.6, 0.05, 0.4)


def test_a_down_runtime_is_one_error_series_in_the_metrics_and_the_reports_entry() -> None:
    from otel_neuron.exporters.report_json import report_from_metrics
    from otel_neuron.producer import RUNTIME_ERROR, Collected, MetricsDataProducer
    from otel_neuron.resource import build_resource
    from otel_neuron.sources.instance import InstanceFacts

    endpoint = FakeEndpoint(InferenceRecorder())
    groups = [kind(3, endpoint) for kind in GROUP_TYPES.values()]  # type: ignore[arg-type]
    for group in groups:
        group.prime()
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
    ecc = HwCountersGroup(0, endpoint)  # type: ignore[arg-type]
    cores = NeuronCoreCountersGroup(0, endpoint)  # type: ignore[arg-type]
    memory = MemoryUsedGroup(0, endpoint)  # type: ignore[arg-type]
    for group in (ecc, cores, memory):
        group.prime()

    def period() -> tuple[list[int], dict[str, list[str]], list[str]]:
        endpoint.tick()
        devices = ecc.render(ecc.sample().points)["neuron_devices"]
        in_use = NeuronCoreCountersGroup.render(cores.sample().points)["neuroncores_in_use"]
        loaded = MemoryUsedGroup.render(memory.sample().points)["loaded_models"]
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
    assert [
        model["is_running"] for model in MemoryUsedGroup.render(memory.sample().points)["loaded_models"]
    ] == [False]
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
    cores = NeuronCoreCountersGroup(0, endpoint)  # type: ignore[arg-type]
    cores.prime()
    time.sleep(0.05)
    recorder.add_core_busy(2, 0.01)
    points = cores.sample().points
    point_by_point = {name: list(column) for name, column in points.items()}  # plain lists: no views
    rendered = NeuronCoreCountersGroup.render(points)
    assert _cores_by_columns(points["neuron.core.utilization"], points["neuron.core.subgraphs"])  # the views
    assert rendered == NeuronCoreCountersGroup.render(point_by_point)
    in_use = rendered["neuroncores_in_use"]
    assert list(in_use) == ["0", "1", "2", "3"]
    assert in_use["2"]["loaded_models"] == ["bert:sg00", "gpt:sg00"]
    assert in_use["0"]["loaded_models"] == ["bert:sg01"]
    assert in_use["2"]["neuroncore_utilization"] > 0
    # The same model:subgraph placed twice on a core is listed twice, as point by point.
    recorder.register_model("bert", [Subgraph("sg00", 2)], uuid="u-3")
    twice = cores.sample().points
    assert NeuronCoreCountersGroup.render(twice)["neuroncores_in_use"]["2"]["loaded_models"] == [
        "bert:sg00",
        "bert:sg00",
        "gpt:sg00",
    ]
    assert NeuronCoreCountersGroup.render(twice) == NeuronCoreCountersGroup.render(
        {name: list(column) for name, column in twice.items()}
    )
