"""A recorder or simulator that runs for months keeps a bounded amount of memory (issue 15).

Memory is measured with tracemalloc, counting only what the module under test allocates, so that the
interpreter's own caches do not blur it; time is the simulator's `step(elapsed)` and the recorder's
epochs (one per snapshot), so nothing sleeps.
"""

from __future__ import annotations

import gc
import threading
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.metrics.export import AggregationTemporality, MetricsData
from opentelemetry.sdk.resources import Resource

from otel_neuron.groups.base import (
    AttributeColumn,
    FrozenAttributes,
    GroupSample,
    MetricGroup,
    PointColumns,
    PointsByMetric,
)
from otel_neuron.producer import Collected, MetricsDataProducer
from otel_neuron.runtime import recorder as recorder_module
from otel_neuron.runtime import simulator as simulator_module
from otel_neuron.runtime.recorder import InferenceRecorder, Subgraph
from otel_neuron.runtime.simulator import Simulator, SimulatorOptions
from otel_neuron.semconv import INFERENCE_COUNT, MODEL_NAME
from otel_neuron.sources.fetch_loop import FetchLoop


@pytest.fixture
def traced() -> Iterator[None]:
    tracemalloc.start()
    try:
        yield
    finally:
        tracemalloc.stop()


def growth_kb(module_files: str | list[str] | None, action: Callable[[], None]) -> float:
    """KB held, after `action`, by what `module_files` allocated, beyond what they held before."""
    files = [module_files] if isinstance(module_files, str) else module_files or []
    filters = [tracemalloc.Filter(True, str(Path(file).resolve())) for file in files]
    gc.collect()
    before = tracemalloc.take_snapshot().filter_traces(filters)
    action()
    gc.collect()
    after = tracemalloc.take_snapshot().filter_traces(filters)
    return sum(stat.size_diff for stat in after.compare_to(before, "filename")) / 1024


def test_a_thread_per_request_keeps_the_recorder_flat_and_every_count(traced: None) -> None:
    recorder = InferenceRecorder(cores=2)
    recorder.register_model("resnet", [Subgraph("sg0", 0), Subgraph("sg1", 1)])
    since = [0]

    def serve(requests: int) -> None:  # each request on a thread of its own, as ThreadingHTTPServer does
        for number in range(requests):
            latency = 0.001 * (1 + number % 40)
            worker = threading.Thread(target=recorder.record, args=("resnet", "completed", latency, latency))
            worker.start()
            worker.join()
            if number % 20 == 0:
                since[0] = recorder.snapshot(since[0]).epoch

    serve(300)  # the latency windows fill up to their bound, the buckets in use appear
    growth = growth_kb(recorder_module.__file__, lambda: serve(3000))

    assert growth < 64, f"the recorder grew {growth:.0f} KB over 3000 requests"  # 1.8 KB a thread if kept
    snapshot = recorder.snapshot()
    assert snapshot.inferences.completed == 3300  # an ended thread's counts stay counted
    assert snapshot.total_latency.count == 3300
    expected_busy = sum(0.001 * (1 + number % 40) for number in range(300)) + sum(
        0.001 * (1 + number % 40) for number in range(3000)
    )
    assert sum(core.busy_seconds for core in snapshot.cores) == pytest.approx(expected_busy)


def test_threads_recording_at_once_each_count_and_a_later_thread_continues_a_shard() -> None:
    recorder = InferenceRecorder(cores=1)
    recorder.register_model("m", [Subgraph("sg0", 0)])
    together = threading.Barrier(4)

    def work(latency: float) -> None:
        together.wait()  # all four alive at once: four shards
        for _ in range(100):
            recorder.record("m", "completed", latency)

    first = [threading.Thread(target=work, args=(0.001 * (n + 1),)) for n in range(4)]
    for thread in first:
        thread.start()
    for thread in first:
        thread.join()
    before = recorder.snapshot()
    later = threading.Thread(target=recorder.record, args=("m", "timed_out", 0.5, None, "runtime"))
    later.start()
    later.join()
    after = recorder.snapshot(before.epoch)

    assert before.inferences.completed == 400 and before.total_latency.max == pytest.approx(0.004)
    assert after.inferences.completed == 400 and after.inferences.timed_out == 1
    assert after.errors.runtime == 1
    assert after.total_latency.count == 401 and after.total_latency.sum == pytest.approx(1.5)
    assert [(w.total_min, w.total_max) for w in after.latency_windows] == [(0.5, 0.5)]
    assert after.period_total_latency.count == 1 and after.period_total_latency.max == 0.5


def test_many_epochs_keep_a_bounded_number_of_windows_and_period_histograms() -> None:
    recorder = InferenceRecorder(cores=1)
    recorder.register_model("m", [Subgraph("sg0", 0)])
    since = 0
    for number in range(1000):  # a monitor at 100 ms: one epoch per poll, latencies in each
        recorder.record("m", "completed", 0.002 + 0.0001 * (number % 7))
        since = recorder.snapshot(since).epoch

    everything = recorder.snapshot()
    assert len(everything.latency_windows) == 255  # of the 256 epochs a runtime keeps, the last had none
    assert everything.oldest_epoch == everything.epoch - 255
    recent = recorder.snapshot(since_epoch=everything.epoch - 20)
    assert recent.period_since_epoch == everything.epoch - 20 and recent.period_total_latency.count == 19
    stale = recorder.snapshot(since_epoch=everything.epoch - 40)  # its epochs are no longer held
    assert stale.period_since_epoch == 0 and stale.total_latency.count == 1000


def test_a_simulator_nobody_marks_keeps_no_latencies_and_churned_models_go(traced: None) -> None:
    simulator = Simulator(SimulatorOptions(rate=200, churn_s=5, seed=3))
    since = [0]

    def run(seconds: int) -> None:  # a monitor polling every second
        for _ in range(seconds):
            simulator.step(1.0)
            since[0] = simulator.snapshot(since[0]).epoch

    run(10)
    growth = growth_kb(simulator_module.__file__, lambda: run(60))

    assert growth < 16, f"the simulator grew {growth:.0f} KB over 12 000 inferences"  # 64 B each if kept
    snapshot = simulator.snapshot()
    assert len(snapshot.models) == 2 and snapshot.models_revision > 10
    assert simulator.ground_truth(mark=True).total_latencies == []  # none kept before the first mark
    simulator.step(0.1)
    truth = simulator.ground_truth(mark=True)
    assert len(truth.total_latencies) == len(truth.device_latencies) > 10
    assert simulator.ground_truth(mark=True).total_latencies == []


def test_model_churn_keeps_a_runtime_group_flat(traced: None) -> None:
    """Models loaded and unloaded for the life of a runtime: the memory group keeps only what recent
    samples used (it kept an attribute set per model, subgraph and location ever seen)."""
    from otel_neuron.groups import runtime_memory, snapshot_group
    from otel_neuron.sources.in_process import InProcessEndpoint

    recorder = InferenceRecorder(cores=2)
    endpoint = InProcessEndpoint(recorder)
    group = runtime_memory.MemoryUsedGroup(0, endpoint)
    group.prime()
    loaded = [0]

    def churn(samples: int) -> None:
        for _ in range(samples):
            recorder.unregister_model(loaded[0])
            loaded[0] = recorder.register_model(
                f"model-{loaded[0] + 1}", [Subgraph("sg0", 0), Subgraph("sg1", 1)], device_bytes=1 << 20
            )
            endpoint.next_collection()
            assert not group.sample().error

    churn(200)
    growth = growth_kb([runtime_memory.__file__, snapshot_group.__file__], lambda: churn(2000))
    assert growth < 64, f"the memory group grew {growth:.0f} KB over 2000 model changes"


class _CountingGroup(MetricGroup):
    """A group whose samples the test writes itself (producer input, not a source)."""

    report_key = "inference_stats"
    instruments = (INFERENCE_COUNT,)

    def _sample_points(self, period: float) -> PointsByMetric:
        raise AssertionError("the test builds the samples")


def _collection(group: MetricGroup, second: int, models: dict[str, int]) -> list[Collected]:
    points = [(FrozenAttributes({MODEL_NAME: name}), count) for name, count in models.items()]
    sample = GroupSample(1.0, "", second * 1_000_000_000, {INFERENCE_COUNT.name: points})
    return [Collected(group, sample)]


def _cumulative_counts(data: MetricsData) -> dict[str, tuple[int, int]]:
    """Model -> (count, start time in s) of the inference counts in `data`."""
    metrics = data.resource_metrics[0].scope_metrics[0].metrics
    points = next(metric.data.data_points for metric in metrics if metric.name == INFERENCE_COUNT.name)
    return {p.attributes[MODEL_NAME]: (p.value, p.start_time_unix_nano // 1_000_000_000) for p in points}


def test_cumulative_totals_of_series_that_come_and_go_stay_bounded() -> None:
    """A model loaded for two seconds each, 3,000 times over (apps and pods churn the same way): the
    producer keeps totals only for the series of the recent past (it kept one per series ever seen)."""
    producer = MetricsDataProducer(Resource({}), AggregationTemporality.CUMULATIVE)
    group = _CountingGroup(0)
    kept = []
    for second in range(1, 6001):
        producer.produce(_collection(group, second, {"steady": 1, f"model-{second // 2}": 1}))
        kept.append(producer.running_series)
    assert max(kept[3000:]) <= 2 * max(kept[:200]) < 200


def test_a_series_that_returns_after_it_was_forgotten_restarts_with_a_later_start_time() -> None:
    producer = MetricsDataProducer(Resource({}), AggregationTemporality.CUMULATIVE)
    group = _CountingGroup(0)
    for second in (1, 2, 3):
        counts = _cumulative_counts(producer.produce(_collection(group, second, {"steady": 2, "bert": 5})))
    assert counts == {"steady": (6, 0), "bert": (15, 0)}
    for second in range(4, 300):  # bert unloaded for five minutes; steady keeps going
        producer.produce(_collection(group, second, {"steady": 2}))
    counts = _cumulative_counts(producer.produce(_collection(group, 300, {"steady": 2, "bert": 5})))
    assert counts == {"steady": (600, 0), "bert": (5, 299)}  # a reset OTLP and Prometheus both see


class _GaugeOnlyGroup(MetricGroup):
    """A group with no counter (its health points are all it reports)."""

    report_key = "system_info"
    instruments = ()

    def _sample_points(self, period: float) -> PointsByMetric:
        raise AssertionError("the test builds the samples")


def test_a_series_forgotten_while_only_gauges_reported_restarts() -> None:
    """The retention runs on the collections' time, whatever they carry: a counter absent for five
    minutes while only a gauge group reports is forgotten, and begins again when it returns."""
    producer = MetricsDataProducer(Resource({}), AggregationTemporality.CUMULATIVE)
    group, gauges = _CountingGroup(0), _GaugeOnlyGroup()
    for second in (1, 2):
        producer.produce(_collection(group, second, {"bert": 5}))
    for second in range(3, 300):
        producer.produce([Collected(gauges, GroupSample(1.0, "", second * 10**9, {}))])
    assert producer.running_series == 0
    assert _cumulative_counts(producer.produce(_collection(group, 300, {"bert": 5}))) == {"bert": (5, 299)}


def test_a_series_absent_for_a_few_periods_keeps_its_total() -> None:
    producer = MetricsDataProducer(Resource({}), AggregationTemporality.CUMULATIVE)
    group = _CountingGroup(0)
    producer.produce(_collection(group, 1, {"bert": 5}))
    for second in range(2, 10):  # the runtime failed for eight periods: no points
        producer.produce([Collected(group, GroupSample(1.0, "connection refused", second * 10**9, {}))])
    assert _cumulative_counts(producer.produce(_collection(group, 10, {"bert": 5}))) == {"bert": (10, 0)}


def test_a_held_up_fetch_loop_is_handed_a_bounded_backlog() -> None:
    """A fetch loop whose thread is held up (a host far too slow, a fetch that blocks) is not handed
    a coroutine every tick for ever: the ones it cannot reach are dropped, cancelled at once, and the
    loop takes new ones again once it caught up."""
    loop = FetchLoop()
    release = threading.Event()
    started = threading.Event()

    async def hold_up() -> None:
        started.set()
        release.wait()  # blocks the loop's thread, as a stuck fetch would

    async def answer() -> str:
        return "answered"

    try:
        loop.submit(hold_up())
        assert started.wait(10)
        futures = [loop.submit(answer()) for _ in range(1000)]
        waiting = [future for future in futures if not future.cancelled()]
        assert 0 < len(waiting) <= 16  # the rest were dropped, not queued behind the held-up one
        release.set()
        assert [future.result(timeout=10) for future in waiting] == ["answered"] * len(waiting)
        assert loop.submit(answer()).result(timeout=10) == "answered"
    finally:
        release.set()
        loop.close()


def _column_collection(
    group: MetricGroup, second: int, column: AttributeColumn, counts: list[int]
) -> list[Collected]:
    sample = GroupSample(
        1.0, "", second * 1_000_000_000, {INFERENCE_COUNT.name: PointColumns(column, counts)}
    )
    return [Collected(group, sample)]


def test_cumulative_totals_of_a_reused_column_continue_whatever_column_carries_the_series() -> None:
    """Groups hand over the same AttributeColumn every period: its totals add up position by
    position, continue when a new column names the same series, and restart after a long absence."""
    producer = MetricsDataProducer(Resource({}), AggregationTemporality.CUMULATIVE)
    group = _CountingGroup(0)
    column = AttributeColumn(FrozenAttributes({MODEL_NAME: name}) for name in ("a", "b"))
    for second in (1, 2, 3):
        counts = _cumulative_counts(producer.produce(_column_collection(group, second, column, [1, 10])))
    assert counts == {"a": (3, 0), "b": (30, 0)}
    rebuilt = AttributeColumn(FrozenAttributes({MODEL_NAME: name}) for name in ("b", "a"))  # same series
    counts = _cumulative_counts(producer.produce(_column_collection(group, 4, rebuilt, [10, 1])))
    assert counts == {"a": (4, 0), "b": (40, 0)}
    counts = _cumulative_counts(producer.produce(_column_collection(group, 5, column, [1, 10])))
    assert counts == {"a": (5, 0), "b": (50, 0)}
    for second in range(6, 300):  # the runtime gone for five minutes: its series are forgotten
        producer.produce(_collection(group, second, {"other": 1}))
    counts = _cumulative_counts(producer.produce(_column_collection(group, 300, column, [1, 10])))
    assert counts == {"a": (1, 299), "b": (10, 299)}


def test_cumulative_totals_continue_when_a_columns_series_is_reported_apart_from_it() -> None:
    """A column's totals are kept in the column between periods; a series it holds that some other
    block reports (a list of points naming it) continues from the column's total, and so does the
    column afterwards."""
    producer = MetricsDataProducer(Resource({}), AggregationTemporality.CUMULATIVE)
    group = _CountingGroup(0)
    column = AttributeColumn(FrozenAttributes({MODEL_NAME: name}) for name in ("a", "b"))
    for second in (1, 2):
        producer.produce(_column_collection(group, second, column, [1, 10]))
    counts = _cumulative_counts(producer.produce(_collection(group, 3, {"a": 100})))
    assert counts == {"a": (102, 0)}
    counts = _cumulative_counts(producer.produce(_column_collection(group, 4, column, [1, 10])))
    assert counts == {"a": (103, 0), "b": (30, 0)}
    counts = _cumulative_counts(producer.produce(_column_collection(group, 5, column, [1, 10])))
    assert counts == {"a": (104, 0), "b": (40, 0)}
