"""NeuronInstrumentor in-process: what an app's own readers see, checked against values computed here."""

from __future__ import annotations

import doctest
import io
import json
import logging
import math
import queue
import random
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.metrics import (
    Counter,
    Histogram,
    MeterProvider,
    ObservableCounter,
    ObservableGauge,
    ObservableUpDownCounter,
    UpDownCounter,
)
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    ExponentialHistogramDataPoint,
    InMemoryMetricReader,
    MetricExporter,
    MetricExportResult,
    MetricsData,
    PeriodicExportingMetricReader,
)
from percentiles import exact_percentile

import otel_neuron
import otel_neuron.instrumentor
from otel_neuron.config import ConfigError, config_from_document
from otel_neuron.exporters.report_json import ReportJsonExporter
from otel_neuron.groups.base import HistogramDelta
from otel_neuron.histogram import PERCENTILES, SCALE, bucket_index, percentile
from otel_neuron.instrumentor import (
    InstrumentorSettings,
    NeuronInstrumentor,
    replay_values,
    settings_from_config,
    settings_from_environment,
)
from otel_neuron.report_schema import report_problem

INFERENCE_ONLY = {
    "neuron_runtimes": [{"address": "unix:/run/neuron.sock", "metrics": [{"type": "inference_stats"}]}]
}
DELTA = {
    cls: AggregationTemporality.DELTA
    for cls in (
        Counter,
        UpDownCounter,
        Histogram,
        ObservableCounter,
        ObservableUpDownCounter,
        ObservableGauge,
    )
}


@pytest.fixture
def recorder() -> otel_neuron.InferenceRecorder:
    recorder = otel_neuron.InferenceRecorder(cores=2, devices=1)
    recorder.register_model("resnet", [otel_neuron.Subgraph("sg00", 0, device_bytes=1 << 20)])
    return recorder


@pytest.fixture
def instrumentor() -> Iterator[NeuronInstrumentor]:
    instrumentor = NeuronInstrumentor()
    yield instrumentor
    if instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.uninstrument()


def provider_with(*readers: Any) -> MeterProvider:
    return MeterProvider(metric_readers=list(readers), views=otel_neuron.latency_views())


def points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    found: dict[str, list[Any]] = {}
    data = reader.get_metrics_data()
    for resource_metrics in data.resource_metrics if data else ():
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                found.setdefault(metric.name, []).extend(metric.data.data_points)
    return found


def by_attribute(found: dict[str, list[Any]], metric: str, key: str) -> dict[str, int]:
    return {str(point.attributes[key]): point.value for point in found.get(metric, ())}


def as_delta(point: ExponentialHistogramDataPoint) -> HistogramDelta:
    return HistogramDelta(
        point.scale,
        point.zero_count,
        point.positive.offset,
        tuple(point.positive.bucket_counts),
        point.count,
        point.sum,
        point.min,
        point.max,
    )


def test_outcome_and_error_counts_follow_the_documented_exception_mapping(
    recorder: otel_neuron.InferenceRecorder, instrumentor: NeuronInstrumentor
) -> None:
    reader = InMemoryMetricReader()
    instrumentor.instrument(meter_provider=provider_with(reader), config=INFERENCE_ONLY, recorder=recorder)
    raised = [
        otel_neuron.NumericalError("nan in output"),
        FloatingPointError(),
        otel_neuron.TransientError(),
        otel_neuron.HardwareError(),
        otel_neuron.NeuronRuntimeError(),
        otel_neuron.InferenceTimeout(),
        TimeoutError(),
        otel_neuron.IncorrectInputError(),
        ValueError("bad shape"),
        otel_neuron.QueueFullError(),
        queue.Full(),
        RuntimeError("anything else"),
    ]
    for error in raised:
        with pytest.raises(type(error)), recorder.time("resnet"):
            raise error

    @recorder.timed("resnet")
    def infer(x: int) -> int:
        return x + 1

    assert [infer(i) for i in range(5)] == [1, 2, 3, 4, 5]
    for _ in range(3):
        with recorder.time("resnet"):
            pass
    recorder.record("resnet", "completed", 0.002, 0.001)

    found = points(reader)
    assert by_attribute(found, "neuron.inference.count", "neuron.inference.outcome") == {
        "completed": 9,
        "completed_with_err": 4,  # transient, hardware, runtime, and RuntimeError as generic
        "completed_with_num_err": 2,
        "timed_out": 2,
        "incorrect_input": 2,
        "failed_to_queue": 2,
    }
    assert by_attribute(found, "neuron.inference.errors", "error.type") == {
        "generic": 3,  # IncorrectInputError, ValueError, RuntimeError
        "numerical": 2,
        "transient": 1,
        "runtime": 5,  # NeuronRuntimeError, two timeouts, two queue failures
        "hardware": 1,
        "model": 0,  # neuron-monitor 2.x's error type, counted from ModelError
    }
    # Latency is counted for every inference that ran: not for incorrect input or failed to queue.
    (latency,) = found["neuron.inference.latency"]
    assert latency.count == 9 + 4 + 2 + 2


def test_percentiles_from_the_apps_histogram_are_within_1_percent_and_min_max_exact(
    recorder: otel_neuron.InferenceRecorder, instrumentor: NeuronInstrumentor
) -> None:
    reader = InMemoryMetricReader(preferred_temporality=DELTA)
    instrumentor.instrument(meter_provider=provider_with(reader), config=INFERENCE_ONLY, recorder=recorder)
    rng = random.Random(7)
    for period in range(3):  # each collection is a period with its own distribution
        totals = [rng.lognormvariate(-5.0 + period, 0.6) for _ in range(2000)]
        devices = [total * rng.uniform(0.5, 0.9) for total in totals]
        for total, device in zip(totals, devices, strict=True):
            recorder.record("resnet", "completed", total, device)
        found = points(reader)
        for metric, values in (
            ("neuron.inference.latency", totals),
            ("neuron.inference.device.latency", devices),
        ):
            (point,) = found[metric]
            histogram = as_delta(point)
            assert histogram.count == len(values)
            assert point.min == min(values) and point.max == max(values)
            assert point.sum == pytest.approx(sum(values), rel=0.0055)
            for q in PERCENTILES:
                assert percentile(histogram, q) == pytest.approx(exact_percentile(values, q), rel=0.01), (
                    metric,
                    q,
                )
            assert percentile(histogram, 0) == min(values) and percentile(histogram, 100) == max(values)
        completed = by_attribute(found, "neuron.inference.count", "neuron.inference.outcome")["completed"]
        assert completed == 2000  # the delta reader sees each period's count


def test_a_cumulative_and_a_delta_reader_each_see_every_inference_once(
    recorder: otel_neuron.InferenceRecorder, instrumentor: NeuronInstrumentor
) -> None:
    cumulative, delta = InMemoryMetricReader(), InMemoryMetricReader(preferred_temporality=DELTA)
    instrumentor.instrument(
        meter_provider=provider_with(cumulative, delta), config=INFERENCE_ONLY, recorder=recorder
    )
    seen_by_delta = 0
    for batch in (10, 0, 25, 7):
        for _ in range(batch):
            recorder.record("resnet", "completed", 0.004, 0.003)
        latency = points(delta).get("neuron.inference.latency", [])
        seen_by_delta += sum(point.count for point in latency)
        if batch % 2:
            points(cumulative)  # the readers collect at different moments
    found = points(cumulative)
    assert by_attribute(found, "neuron.inference.count", "neuron.inference.outcome")["completed"] == 42
    assert found["neuron.inference.latency"][0].count == 42
    assert seen_by_delta == 42


def test_uninstrument_stops_every_callback_and_the_histogram(
    recorder: otel_neuron.InferenceRecorder, instrumentor: NeuronInstrumentor
) -> None:
    reader = InMemoryMetricReader(preferred_temporality=DELTA)
    snapshots = []
    original = recorder.snapshot
    recorder.snapshot = lambda *since: snapshots.append(1) or original(*since)  # type: ignore[method-assign]
    instrumentor.instrument(meter_provider=provider_with(reader), recorder=recorder)
    recorder.record("resnet", "completed", 0.004, 0.003)
    assert points(reader)["neuron.inference.latency"][0].count == 1
    groups = instrumentor.active_groups
    assert {group.report_key for group in groups} >= {"vcpu_usage", "memory_info", "inference_stats"}

    instrumentor.uninstrument()
    taken = len(snapshots)
    sampled = [group.last_sample for group in groups]
    recorder.record("resnet", "completed", 0.004, 0.003)
    after = points(reader)
    assert len(snapshots) == taken, "a callback read the recorder after uninstrument()"
    assert [group.last_sample for group in groups] == sampled, "a group was sampled after uninstrument()"
    assert not any(values for name, values in after.items() if name.startswith(("neuron.", "system."))), after

    # The instrumentor is a singleton; instrumenting again starts afresh with the new arguments.
    second = InMemoryMetricReader()
    NeuronInstrumentor(config=INFERENCE_ONLY, recorder=recorder).instrument(
        meter_provider=provider_with(second)
    )
    assert [group.report_key for group in instrumentor.active_groups] == ["inference_stats"]
    recorder.record("resnet", "completed", 0.004, 0.003)
    assert (
        by_attribute(points(second), "neuron.inference.count", "neuron.inference.outcome")["completed"] >= 1
    )


def test_the_json_report_exporter_prints_the_guides_report_for_this_process(
    recorder: otel_neuron.InferenceRecorder, instrumentor: NeuronInstrumentor
) -> None:
    out = io.StringIO()
    reader = PeriodicExportingMetricReader(
        ReportJsonExporter(runtime_count=1, out=out), export_interval_millis=3_600_000
    )
    provider = MeterProvider(metric_readers=[reader])  # no view: the exporter asks for its own aggregation
    instrumentor.instrument(meter_provider=provider, recorder=recorder)
    latencies = [0.001 * (1 + i % 37) for i in range(500)]
    for latency in latencies:
        recorder.record("resnet", "completed", latency, latency / 2)
    recorder.record("resnet", "timed_out", 0.5, None, "runtime")
    provider.force_flush()
    report = json.loads(out.getvalue().splitlines()[-1])
    assert report_problem(report) == ""
    (entry,) = report["neuron_runtime_data"]
    stats = entry["report"]["inference_stats"]
    assert stats["inference_summary"]["completed"] == 500 and stats["inference_summary"]["timed_out"] == 1
    assert stats["error_summary"]["runtime"] == 1
    total = stats["latency_stats"]["total_latency"]
    assert total["p0"] == 0.001 and total["p100"] == 0.5
    assert total["p50"] == pytest.approx(exact_percentile([*latencies, 0.5], 50), rel=0.01)
    assert set(entry["report"]) == {
        "neuroncore_counters",
        "inference_stats",
        "memory_used",
        "hw_counters",
        "neuron_runtime_vcpu_usage",
    }
    assert entry["report"]["memory_used"]["loaded_models"][0]["name"] == "resnet"
    assert set(report["system_data"]) == {"vcpu_usage", "memory_info"}
    provider.shutdown()


def test_settings_from_every_config_form(tmp_path: Any) -> None:
    document = {
        "period": "1s",
        "neuron_runtimes": [
            {"address": "unix:/run/a.sock", "metrics": [{"type": "inference_stats"}, {"type": "vcpu_usage"}]},
            {
                "address": "unix:/run/b.sock",
                "metrics": [{"type": "memory_used"}, {"type": "inference_stats"}],
            },
        ],
        "system_metrics": [{"type": "memory_info"}],
    }
    path = tmp_path / "monitor.conf"
    path.write_text(json.dumps(document))
    for form in (document, str(path), path, config_from_document(document)):
        settings = settings_from_config(form, environ={})
        assert settings.system_groups == ("memory_info",)
        assert settings.runtime_groups == ("inference_stats", "neuron_runtime_vcpu_usage", "memory_used")
    with pytest.raises(ConfigError, match="neuron_runtimes"):
        settings_from_config({"neuron_runtimes": "x"}, environ={})


def test_settings_from_the_environment(tmp_path: Any) -> None:
    assert settings_from_environment({}) == InstrumentorSettings(source="OTEL_NEURON_* environment")
    path = tmp_path / "monitor.conf"
    path.write_text(json.dumps({"system_metrics": [{"type": "vcpu_usage"}]}))
    settings = settings_from_environment(
        {
            "OTEL_NEURON_CONFIG": str(path),
            "OTEL_NEURON_RUNTIME_METRICS": "inference_stats, hw_counters",
            "OTEL_NEURON_RUNTIME_ADDRESS": "unix:/tmp/app.sock",
            "OTEL_NEURON_RUNTIME_SOCKET_MODE": "660",
        }
    )
    assert settings.system_groups == ("vcpu_usage",)
    assert settings.runtime_groups == ("inference_stats", "hw_counters")
    assert (settings.serve_address, settings.socket_mode) == ("unix:/tmp/app.sock", 0o660)
    assert settings_from_environment({"OTEL_NEURON_SYSTEM_METRICS": "none"}).system_groups == ()
    for name, value, message in (
        (
            "OTEL_NEURON_SYSTEM_METRICS",
            "vcpu_usage,gpu",
            "OTEL_NEURON_SYSTEM_METRICS: unknown metric group 'gpu'",
        ),
        (
            "OTEL_NEURON_RUNTIME_SOCKET_MODE",
            "rw",
            "OTEL_NEURON_RUNTIME_SOCKET_MODE: 'rw' is not an octal mode",
        ),
        ("OTEL_NEURON_CONFIG", str(tmp_path / "missing.conf"), "missing.conf: no such file"),
    ):
        with pytest.raises(ConfigError, match=message):
            settings_from_environment({name: value})


def test_a_bad_environment_is_logged_and_the_app_keeps_running(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, instrumentor: NeuronInstrumentor
) -> None:
    monkeypatch.setenv("OTEL_NEURON_RUNTIME_METRICS", "inference_statz")
    with caplog.at_level(logging.ERROR, logger="otel_neuron"):
        instrumentor.instrument(meter_provider=provider_with(InMemoryMetricReader()))
    assert instrumentor.active_groups == []
    assert "unknown metric group 'inference_statz'" in caplog.text
    instrumentor.uninstrument()
    with pytest.raises(ConfigError):  # an explicit argument is the caller's mistake: it raises
        NeuronInstrumentor(config={"neuron_runtimes": 1}).instrument(meter_provider=provider_with())


def test_replayed_values_reproduce_buckets_count_min_and_max() -> None:
    histogram = HistogramDelta(6, 1, 100, (2, 0, 3, 1), 7, 1.0, 0.0, 3.1)
    pairs = replay_values(histogram)
    assert sum(times for _, times in pairs) == 7
    assert pairs[:2] == [(0.0, 1), (3.1, 1)]
    assert replay_values(HistogramDelta(6, 0, 5, (1,), 1, 2.0, 2.0, 2.0)) == [(2.0, 1)]
    assert replay_values(HistogramDelta(6, 0, 0, (), 0, 0.0, 0.0, 0.0)) == []


def test_the_docstring_example_runs(instrumentor: NeuronInstrumentor) -> None:
    result = doctest.testmod(otel_neuron.instrumentor)
    assert result.attempted > 0 and result.failed == 0


class KeepingExporter(MetricExporter):
    """Keeps every MetricsData it is given (what a collector would receive)."""

    def __init__(self) -> None:
        super().__init__()
        self.received: list[MetricsData] = []

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> Any:
        self.received.append(metrics_data)
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        pass


def exported_latency(data: MetricsData) -> dict[str, list[Any]]:
    found: dict[str, list[Any]] = {}
    for resource_metrics in data.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                if metric.name.endswith("latency"):
                    found.setdefault(metric.name, []).append(metric.data)
    return found


def expected_buckets(values: list[float]) -> tuple[int, list[int]]:
    """(offset, counts) of `values` in base-2 exponential buckets of scale 6, counted here."""
    indexes = [bucket_index(value, SCALE) for value in values]
    low = min(indexes)
    counts = [0] * (max(indexes) - low + 1)
    for index in indexes:
        counts[index - low] += 1
    return low, counts


@pytest.mark.parametrize("temporality", [AggregationTemporality.DELTA, AggregationTemporality.CUMULATIVE])
def test_a_latency_exporter_exports_the_recorders_exact_histograms(
    recorder: otel_neuron.InferenceRecorder, instrumentor: NeuronInstrumentor, temporality: Any
) -> None:
    """The lean path: each export carries the latencies as the recorder counted them, with no SDK
    Histogram fed (one point per histogram, exact count, sum, min, max, buckets)."""
    keeping = KeepingExporter()
    preference = {**DELTA, Histogram: temporality}
    exporter = otel_neuron.LatencyExporter(keeping, preference)
    provider = provider_with(PeriodicExportingMetricReader(exporter, export_interval_millis=10**9))
    instrumentor.instrument(
        meter_provider=provider, config=INFERENCE_ONLY, recorder=recorder, latency_exporter=exporter
    )
    rng = random.Random(7)
    recorded: list[float] = []
    try:
        for period in range(2):
            batch = [rng.lognormvariate(-5.5, 0.6) for _ in range(500 + 300 * period)]
            for value in batch:
                recorder.record("resnet", "completed", value, value / 2)
            recorded += batch
            provider.force_flush()
            expected = batch if temporality is AggregationTemporality.DELTA else recorded
            latency = exported_latency(keeping.received[-1])
            assert len(latency["neuron.inference.latency"]) == 1  # not also an SDK Histogram's
            histogram = latency["neuron.inference.latency"][0]
            assert histogram.aggregation_temporality is temporality
            (point,) = histogram.data_points
            assert point.count == len(expected)
            assert point.sum == pytest.approx(math.fsum(expected), rel=1e-12)
            assert (point.min, point.max) == (min(expected), max(expected))
            assert (point.scale, point.positive.offset, list(point.positive.bucket_counts)) == (
                SCALE,
                *expected_buckets(expected),
            )
            (device,) = latency["neuron.inference.device.latency"][0].data_points
            assert (device.count, device.max) == (len(expected), max(expected) / 2)
            if period == 0:
                first_start = point.start_time_unix_nano
        same_start = point.start_time_unix_nano == first_start
        assert same_start is (temporality is AggregationTemporality.CUMULATIVE)
    finally:
        provider.shutdown()
