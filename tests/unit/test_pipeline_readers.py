"""An SDK reader attached to the pipeline's MeterProvider sees the latest samples, never a new one."""

from __future__ import annotations

from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource

from otel_neuron.groups.base import GroupSample, InstrumentSpec, Kind, MetricGroup, PointsByMetric
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

    @staticmethod
    def render(points: PointsByMetric) -> dict[str, object]:
        return {}


def values(reader: InMemoryMetricReader) -> dict[str, object]:
    data = reader.get_metrics_data()
    assert data is not None
    return {
        metric.name: metric.data.data_points[0].value
        for resource_metrics in data.resource_metrics
        for scope_metrics in resource_metrics.scope_metrics
        for metric in scope_metrics.metrics
    }


def test_an_sdk_reader_sees_the_last_sample_and_counter_totals_without_resampling() -> None:
    group = CountingGroup()
    reader = InMemoryMetricReader()
    pipeline = MonitorPipeline([ScheduledGroup(group, 1.0)], [], Resource.get_empty(), sdk_readers=[reader])
    try:
        pipeline.tick([1.0])
        pipeline.tick([1.0])
        assert group.samples == 2
        assert values(reader) == {"test.temperature": 2, "test.events": 10}
        assert values(reader) == {"test.temperature": 2, "test.events": 10}  # a second scrape: same
        assert group.samples == 2  # collecting never sampled the source
        assert isinstance(group.last_sample, GroupSample)
    finally:
        pipeline.shutdown()
