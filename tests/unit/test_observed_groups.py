"""In-app, the groups' observable instruments show every SDK reader the last sample, never a new one."""

from __future__ import annotations

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from otel_neuron.groups.base import InstrumentSpec, Kind, MetricGroup, PointsByMetric
from otel_neuron.groups.observable import ObservedGroups

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


def values(reader: InMemoryMetricReader) -> dict[str, object]:
    data = reader.get_metrics_data()
    if data is None:  # no instrument observed anything
        return {}
    return {
        metric.name: metric.data.data_points[0].value
        for resource_metrics in data.resource_metrics
        for scope_metrics in resource_metrics.scope_metrics
        for metric in scope_metrics.metrics
    }


def test_readers_see_the_last_sample_and_counter_totals_without_resampling() -> None:
    group = CountingGroup()
    first, second = InMemoryMetricReader(), InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[first, second])
    observed = ObservedGroups(provider.get_meter("test"), [group])
    try:
        group.sample()
        assert values(first) == {"test.temperature": 1, "test.events": 5}
        group.sample()
        assert values(first) == {"test.temperature": 2, "test.events": 10}
        assert values(first) == {"test.temperature": 2, "test.events": 10}  # a second scrape: same
        assert values(second) == {"test.temperature": 2, "test.events": 10}  # another reader: same
        assert group.samples == 2  # collecting never sampled the source
        observed.close()
        assert values(first) == {}
    finally:
        provider.shutdown()
