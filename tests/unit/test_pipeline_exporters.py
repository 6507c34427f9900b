"""Each exporter gets one tick's samples the way it declares, and the sources are sampled once a tick."""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    MetricExporter,
    MetricExportResult,
    MetricsData,
)
from opentelemetry.sdk.resources import Resource

from otel_neuron.exporters.temporality import (
    CUMULATIVE_PREFERRED,
    DELTA_PREFERRED,
    DeclaredTemporalityExporter,
)
from otel_neuron.groups.base import InstrumentSpec, Kind, MetricGroup, PointsByMetric
from otel_neuron.pipeline import MonitorPipeline, ScheduledGroup

TEMPERATURE = InstrumentSpec("test.temperature", "Cel", "a gauge", Kind.GAUGE)
EVENTS = InstrumentSpec("test.events", "{event}", "a counter", Kind.COUNTER)


class CountingGroup(MetricGroup):
    """Reports how many times it was sampled: the gauge is the sample number, each adds 5 events."""

    report_key = "counting"
    instruments = (TEMPERATURE, EVENTS)

    def __init__(self) -> None:
        super().__init__()
        self.samples = 0

    def _sample_points(self, period: float) -> PointsByMetric:
        self.samples += 1
        return {TEMPERATURE.name: [({}, self.samples)], EVENTS.name: [({}, 5)]}


class Recording:
    """Keeps what it is given: (temperature, events, the events' temporality) per export."""

    received: list[tuple[Any, Any, AggregationTemporality]]

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        metrics = {
            metric.name: metric
            for resource_metrics in metrics_data.resource_metrics
            for scope_metrics in resource_metrics.scope_metrics
            for metric in scope_metrics.metrics
        }
        events = metrics[EVENTS.name].data
        temperature = metrics[TEMPERATURE.name].data.data_points[0].value
        self.received.append((temperature, events.data_points[0].value, events.aggregation_temporality))
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        return None


class DeclaringExporter(Recording, DeclaredTemporalityExporter):
    def __init__(self, preferred: dict[type, AggregationTemporality]) -> None:
        super().__init__(preferred)
        self.received = []


class PlainExporter(Recording, MetricExporter):
    def __init__(self) -> None:
        super().__init__()
        self.received = []


def test_each_exporter_gets_counters_as_it_declares_from_one_sample_a_tick() -> None:
    group = CountingGroup()
    delta = DeclaringExporter(DELTA_PREFERRED)
    cumulative = DeclaringExporter(CUMULATIVE_PREFERRED)
    plain = PlainExporter()  # declares nothing: running totals, the SDK's default
    pipeline = MonitorPipeline([ScheduledGroup(group, 1.0)], [delta, cumulative, plain], Resource.get_empty())
    try:
        for _ in range(3):
            pipeline.tick([1.0])
    finally:
        pipeline.shutdown()

    assert group.samples == 3  # three exporters, one sample a tick
    DELTA, CUMULATIVE = AggregationTemporality.DELTA, AggregationTemporality.CUMULATIVE
    assert delta.received == [(1, 5, DELTA), (2, 5, DELTA), (3, 5, DELTA)]
    assert cumulative.received == [(1, 5, CUMULATIVE), (2, 10, CUMULATIVE), (3, 15, CUMULATIVE)]
    assert plain.received == cumulative.received
