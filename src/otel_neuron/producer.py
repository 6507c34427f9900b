"""Turn the samples of one collection into OpenTelemetry MetricsData.

This is a MetricProducer in the OpenTelemetry specification's sense (the Python SDK has no
API for one yet): the groups already hold their per-period values, so building the data
points straight from the samples skips the SDK's per-measurement aggregation (about 9 us per
point), which alone would cost more than a whole collection at trn2 scale. Every exporter
(JSON report, OTLP, Prometheus) receives the same MetricsData.

Health travels as metrics too: each sampled group's actual period and its error string, and
each runtime's connection error, so an OTLP consumer can rebuild the whole report.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any, NamedTuple

from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Buckets,
    ExponentialHistogram,
    ExponentialHistogramDataPoint,
    Gauge,
    Metric,
    MetricsData,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from otel_neuron import __version__
from otel_neuron.groups.base import (
    AttributeValue,
    FrozenAttributes,
    GroupSample,
    HistogramDelta,
    InstrumentSpec,
    Kind,
    MetricGroup,
    Point,
    PointsByMetric,
    PointValue,
    bucket_list,
)
from otel_neuron.running_totals import RunningTotals
from otel_neuron.semconv import (
    APPLICATION_ERROR,
    ERROR_MESSAGE,
    GROUP,
    GROUP_ERROR,
    GROUP_PERIOD,
    PROCESS_PID,
    RUNTIME_ERROR,
    RUNTIME_INDEX,
    RUNTIME_TAG,
)

if TYPE_CHECKING:
    from otel_neuron.attribution import PodAttribution

SCOPE = InstrumentationScope("otel_neuron", __version__)


class Collected(NamedTuple):  # immutable, and cheaper to build than a frozen dataclass (82 a tick)
    """One group's sample, as taken at one tick."""

    group: MetricGroup
    sample: GroupSample


class MetricsDataProducer:
    """Builds MetricsData from collections: per-period (delta) counters, or running totals."""

    def __init__(
        self,
        resource: Resource,
        temporality: AggregationTemporality = AggregationTemporality.DELTA,
        attribution: PodAttribution | None = None,
    ) -> None:
        """`attribution` (--kubernetes) labels the groups' points of NeuronCores and devices a pod
        holds, and adds its own points (see otel_neuron.attribution)."""
        self._resource = resource
        self._attribution = attribution
        cumulative = temporality is AggregationTemporality.CUMULATIVE
        self._totals = CumulativeMetrics(attribution) if cumulative else None

    def use_resource(self, resource: Resource) -> None:
        """Later MetricsData carry `resource` (the instance facts can arrive after start-up)."""
        self._resource = resource

    @property
    def running_series(self) -> int:
        """How many series' running totals are kept (for cumulative exporters; 0 for delta)."""
        return 0 if self._totals is None else self._totals.running_series

    def produce(self, collected: Sequence[Collected]) -> MetricsData:
        """The collection's MetricsData in this producer's temporality."""
        data = self.produce_delta(collected)
        return data if self._totals is None else self._totals.of(data)

    def produce_delta(self, collected: Sequence[Collected]) -> MetricsData:
        """The collection's MetricsData with per-period counters (what CumulativeMetrics.of takes)."""
        attribution = self._attribution
        if attribution is None:
            builder = _MetricsBuilder()
        else:
            attribution.begin(item.sample.points for item in collected)
            builder = _LabellingBuilder(attribution.label)
        runtimes_seen: set[int] = set()
        entries_seen: set[_Entry] = set()
        for item in collected:
            _add_group(builder, item, runtimes_seen, entries_seen)
        if attribution is not None:
            attribution.add_own_points(builder.add)
        scope_metrics = ScopeMetrics(scope=SCOPE, metrics=builder.metrics(), schema_url="")
        return MetricsData([ResourceMetrics(self._resource, [scope_metrics], schema_url="")])


class CumulativeMetrics:
    """The cumulative MetricsData of delta ones: each counter's and histogram's points become their
    series' running totals (running_totals.py); gauges and up-down counters, which report what
    stands, are the delta MetricsData's own objects. Deriving them from the delta data, rather than
    building the collection a second time, is what lets a monitor with a JSON report (delta) and an
    OTLP exporter (cumulative) build each point once."""

    def __init__(self, attribution: PodAttribution | None = None) -> None:
        """`attribution`: the one that labelled the delta MetricsData. A series' total goes by its
        group's points (a device's count carries on when another pod holds the device), so the
        totals of a labelled block are those of its points as the group gave them, labelled again."""
        self._totals = RunningTotals()
        self._attribution = attribution

    @property
    def running_series(self) -> int:
        return len(self._totals)

    def of(self, delta: MetricsData) -> MetricsData:
        latest: int | None = None
        resource_metrics = []
        for each in delta.resource_metrics:
            scopes = []
            for scope_metrics in each.scope_metrics:
                metrics = []
                for metric in scope_metrics.metrics:
                    metrics.append(self._cumulative(metric))
                    points = metric.data.data_points
                    if type(points) is PointBlocks and points.intervals:  # every group's health, at least
                        latest = max(latest or 0, max(end for _, end in points.intervals))
                scopes.append(ScopeMetrics(scope_metrics.scope, metrics, scope_metrics.schema_url))
            resource_metrics.append(ResourceMetrics(each.resource, scopes, each.schema_url))
        if latest is not None and len(self._totals):
            self._totals.forget_absent(latest)
        return MetricsData(resource_metrics)

    def _cumulative(self, metric: Metric) -> Metric:
        """The metric with running totals (a new Metric), or the metric itself when it reports what
        stands (a gauge, an up-down counter) or is not the producer's."""
        data = metric.data
        delta = AggregationTemporality.DELTA
        if isinstance(data, Sum) and data.is_monotonic and data.aggregation_temporality is delta:
            totals = self._running_totals(metric.name, data.data_points)
            cumulative: Any = Sum(totals, AggregationTemporality.CUMULATIVE, is_monotonic=True)
        elif isinstance(data, ExponentialHistogram) and data.aggregation_temporality is delta:
            totals = self._running_totals(metric.name, data.data_points)
            cumulative = ExponentialHistogram(totals, AggregationTemporality.CUMULATIVE)
        else:
            return metric
        if totals is data.data_points:
            return metric
        return Metric(metric.name, metric.description, metric.unit, cumulative)

    def _running_totals(self, name: str, points: Sequence[Any]) -> Sequence[Any]:
        if type(points) is not PointBlocks:
            return points  # not the producer's: left as it is
        totals = PointBlocks()
        unlabelled = points.unlabelled
        for index, (pairs, (start, end)) in enumerate(zip(points.pairs_of_blocks, points.intervals)):
            self._totals.keep_for_periods_of(end - start)
            own = unlabelled.get(index) if unlabelled else None
            for since, block in self._totals.add(name, pairs if own is None else own, (start, end)):
                if own is not None and self._attribution is not None:
                    block = self._attribution.label(block)
                totals.pairs_of_blocks.append(block)
                totals.intervals.append((since, end))
        return totals


def _add_group(
    builder: _MetricsBuilder, item: Collected, runtimes_seen: set[int], entries_seen: set[_Entry]
) -> None:
    """The group's points and health; its runtime's connection error too, once per MetricsData
    (every group of a runtime reports the same one: five points would be five equal series), and
    likewise each application's entry-level upstream error (see _first_entry_errors).

    A group that may be absent from its source (`absent_when_empty`: a neuron-monitor stream's
    system group, which the stream need not carry) and whose sample is empty is left out, health
    included: the reports then have no such section."""
    group, sample = item
    if not sample.points and not sample.error and getattr(group, "absent_when_empty", False):
        return
    end = sample.time_unix_nano
    interval = (end - int(sample.period * 1e9), end)  # one tuple for all of the group's blocks
    index = group.runtime_index
    health = _health_points(group.report_key, index, sample.error)
    add = builder.add
    add(GROUP_PERIOD, ((health.group, sample.period),), interval)
    add(GROUP_ERROR, health.error, interval)
    if index is not None and index not in runtimes_seen:
        runtimes_seen.add(index)
        add(RUNTIME_ERROR, _runtime_error_points(index, group.runtime_error()), interval)
    points = sample.points
    if points.get(APPLICATION_ERROR.name):
        points = _first_entry_errors(points, entries_seen)
    add = builder.add_group_points
    for spec in group.instruments:
        add(spec, points.get(spec.name, ()), interval)


class _HealthPoints(NamedTuple):
    group: FrozenAttributes  # the attributes of the group's period point
    error: tuple[Point]  # the group's error point, whole: its value follows from its attributes


@lru_cache(maxsize=4096)
def _health_points(report_key: str, runtime_index: int | None, error: str) -> _HealthPoints:
    """Built once per distinct (group, error) rather than three dicts per group and tick; the key is
    every value the points are made of, so a new error message makes new points."""
    attributes: dict[str, AttributeValue] = {GROUP: report_key}
    if runtime_index is not None:
        attributes[RUNTIME_INDEX] = runtime_index
    error_attributes = FrozenAttributes({**attributes, ERROR_MESSAGE: error})
    return _HealthPoints(FrozenAttributes(attributes), ((error_attributes, 1 if error else 0),))


# An application's entry-level error point, by its (runtime index, process.pid, neuron.runtime.tag).
_Entry = tuple[Any, Any, Any]


def _first_entry_errors(points: PointsByMetric, seen: set[_Entry]) -> PointsByMetric:
    """`points` without the entry-level application errors an earlier group of this MetricsData
    gave. Each bridge group of a runtime carries its applications' entry errors (it may be the
    only one due), but one point per application makes the series; its group errors (with
    neuron.monitor.group) are each the group's own."""
    errors = points[APPLICATION_ERROR.name]
    kept: list[Point] = []
    for attributes, value in errors:
        if GROUP not in attributes:
            entry = (attributes.get(RUNTIME_INDEX), attributes.get(PROCESS_PID), attributes.get(RUNTIME_TAG))
            if entry in seen:
                continue
            seen.add(entry)
        kept.append((attributes, value))
    return points if len(kept) == len(errors) else {**points, APPLICATION_ERROR.name: kept}


@lru_cache(maxsize=4096)
def _runtime_error_points(runtime_index: int, error: str) -> tuple[Point]:
    return ((FrozenAttributes({RUNTIME_INDEX: runtime_index, ERROR_MESSAGE: error}), 1 if error else 0),)


class _MetricsBuilder:
    """Collects data points per instrument; one Metric per name however many groups feed it."""

    def __init__(self) -> None:
        self._specs: dict[str, InstrumentSpec] = {}
        self._points: dict[str, PointBlocks] = {}

    def add(self, spec: InstrumentSpec, pairs: Sequence[Point], interval: tuple[int, int]) -> None:
        """Add one block of points, all over `interval` (start, end in ns since the epoch)."""
        points = self._points.get(spec.name)
        if points is None:
            self._specs[spec.name] = spec
            points = self._points[spec.name] = PointBlocks()
        # PointBlocks' own lists, filled here while the MetricsData is built (read only after).
        points.pairs_of_blocks.append(pairs)
        points.intervals.append(interval)

    # A group's own points, as opposed to the monitor's health points (see _LabellingBuilder).
    add_group_points = add

    def metrics(self) -> list[Metric]:
        return [self._metric(self._specs[name], points) for name, points in self._points.items()]

    def _metric(self, spec: InstrumentSpec, points: PointBlocks) -> Metric:
        data: Any
        if spec.kind is Kind.GAUGE:
            data = Gauge(points)
        elif spec.kind is Kind.HISTOGRAM:
            data = ExponentialHistogram(points, AggregationTemporality.DELTA)
        elif spec.kind is Kind.UPDOWN:
            # A current amount is always reported as it stands (OTel's rule for UpDownCounters).
            data = Sum(points, AggregationTemporality.CUMULATIVE, is_monotonic=False)
        else:
            data = Sum(points, AggregationTemporality.DELTA, is_monotonic=True)
        return Metric(spec.name, spec.description, spec.unit, data)


class _LabellingBuilder(_MetricsBuilder):
    """A builder whose groups' points go through `label` first (pod attribution); a plain builder is
    used without it, so the monitor pays nothing for the option it does not use."""

    def __init__(self, label: Callable[[Sequence[Point]], Sequence[Point]]) -> None:
        super().__init__()
        self._label = label

    def add_group_points(
        self, spec: InstrumentSpec, pairs: Sequence[Point], interval: tuple[int, int]
    ) -> None:
        labelled = self._label(pairs)
        self.add(spec, labelled, interval)
        if labelled is not pairs:  # a series is its group's points: running totals go by those
            points = self._points[spec.name]
            points.unlabelled[len(points.pairs_of_blocks) - 1] = pairs


class PointBlocks(Sequence[Any]):
    """The data points of one metric, kept as (attributes, value) pairs until someone asks for objects.

    Building a NumberDataPoint costs about 1 us; a JSON report of 192 vCPUs needs none of them,
    so they are made on first access (an OTLP export) and the report reads `pairs()` instead.
    """

    def __init__(self) -> None:
        # One entry per block in each list, appended by the builder: no tuple per block (a tick adds
        # 400 blocks), one interval per group. Complete before anyone reads the MetricsData.
        self.pairs_of_blocks: list[Sequence[Point]] = []
        self.intervals: list[tuple[int, int]] = []  # (start, end) of each block, shared by a group's blocks
        # The blocks pod attribution labelled, as their group gave them, by their index.
        self.unlabelled: dict[int, Sequence[Point]] = {}
        self._points: list[Any] | None = None

    def pairs(self) -> Iterable[Point]:
        for pairs in self.pairs_of_blocks:
            yield from pairs

    def blocks(self) -> tuple[Sequence[Point], ...]:
        """The pairs as added: one sequence per group and instrument."""
        return tuple(self.pairs_of_blocks)

    def _materialized(self) -> list[Any]:
        if self._points is None:
            self._points = [
                _data_point(a, v, start, end)
                for pairs, (start, end) in zip(self.pairs_of_blocks, self.intervals)
                for a, v in pairs
            ]
        return self._points

    def __len__(self) -> int:
        return sum(map(len, self.pairs_of_blocks))

    def __getitem__(self, index: Any) -> Any:
        return self._materialized()[index]

    def __iter__(self) -> Any:
        return iter(self._materialized())


def _data_point(attributes: Any, value: PointValue, start: int, end: int) -> Any:
    if isinstance(value, HistogramDelta):
        return histogram_data_point(attributes, value, start, end)
    return NumberDataPoint(attributes, start, end, value)


def histogram_data_point(
    attributes: Any, value: HistogramDelta, start: int, end: int
) -> ExponentialHistogramDataPoint:
    return ExponentialHistogramDataPoint(
        attributes=attributes,
        start_time_unix_nano=start,
        time_unix_nano=end,
        count=value.count,
        sum=value.sum,
        scale=value.scale,
        zero_count=value.zero_count,
        positive=Buckets(value.offset, bucket_list(value.bucket_counts)),
        negative=Buckets(0, []),
        flags=0,
        min=value.min,
        max=value.max,
    )
