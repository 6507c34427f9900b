"""The latest exported points in Prometheus's exposition, in OpenTelemetry's names.

`LatestMetrics.update(metrics_data)` keeps the latest point of every series; `render()` gives them
as an `Exposition`, translated as opentelemetry-exporter-prometheus (0.66b2) translates
MetricsData, so the exposition is the one its collector gave, byte for byte
(tests/fixtures/prometheus holds that exposition for real exports):

- names: characters outside `[a-zA-Z0-9:]` become `_`, a leading digit too; the unit is mapped
  (`By` -> `bytes`, `s` -> `seconds`, `m/s` -> `meters_per_second`, `1` and `{...}` -> nothing)
  and appended; a monotonic sum, or any delta sum, is a counter (`_total`), a cumulative
  non-monotonic sum or a gauge a gauge, a histogram a histogram;
- labels: attribute keys with characters outside `[a-zA-Z0-9]` as `_` (a leading digit too), values
  as strings (non-strings as JSON), the scope as `otel_scope_name`, `otel_scope_version`,
  `otel_scope_schema_url` and `otel_scope_<attribute>`; a metric's points all carry the union of
  its label names, the missing ones empty. Metrics that translate to one name, description and
  unit share a family, whose label names are the first one's;
- the resource is one `target_info` series; exponential histograms are served as classic ones with
  the fixed bounds SERVED_BOUNDS.

What a series translates to (its labels, and the start of its sample line) is kept from one
collection to the next, so a collection costs a lookup and a number's formatting per point. The
attribute sets the monitor's groups build once are recognised by identity (an `AttributeColumn`
keeps its own translation), other mappings by content. prometheus_client's metric families, for
the formats and requests the exposition leaves to prometheus_client, are built from the same
translation when first asked for.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from operator import add
from typing import Any, NamedTuple

from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    ExponentialHistogram,
    ExponentialHistogramDataPoint,
    Gauge,
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricsData,
    Sum,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
)
from prometheus_client.metrics_core import Metric as Family
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

from otel_neuron.exporters.exposition import (
    Exposition,
    RenderedFamily,
    go_floats,
    label_text,
    plain_name,
    render_families,
)
from otel_neuron.groups.base import AttributeColumn, FrozenAttributes, HistogramDelta, PointColumns
from otel_neuron.producer import PointBlocks

_logger = logging.getLogger(__name__)

# Attributes that, with the metric name, scope a "replace" of series: a new sample of a group for
# one runtime replaces all that metric's series of that runtime (NeuronCores that went idle vanish),
# without touching the series of other runtimes or other groups' health points.
_SCOPE_KEYS = ("neuron.runtime.index", "neuron.monitor.group")

# The `le` bounds served for every latency histogram: 0, then powers of two from 2^-13 s (122 us)
# to 2^4 s (16 s). Fixed, so a series' buckets never change between scrapes (histogram_quantile
# needs that), and few: 20 series per histogram instead of one per exponential bucket.
SERVED_BOUNDS = [0.0] + [2.0**power for power in range(-13, 5)]
_LOWEST_POWER = -13

SeriesKey = frozenset[tuple[str, Any]]
Labels = dict[str, str]
# The prometheus_client families a metric becomes.
Kind = type[CounterMetricFamily] | type[GaugeMetricFamily] | type[HistogramMetricFamily]


# --------------------------------------------------------------------------- names and units
# The rules of OpenTelemetry's Prometheus compatibility specification, as the exporter applies them.

_NAME_OUTSIDE = re.compile(r"[^a-zA-Z0-9:]+")
_LABEL_OUTSIDE = re.compile(r"[^a-zA-Z0-9]+")
_UNIT_ANNOTATION = re.compile(r"{.*}")
_UNITS = {
    "d": "days",
    "h": "hours",
    "min": "minutes",
    "s": "seconds",
    "ms": "milliseconds",
    "us": "microseconds",
    "ns": "nanoseconds",
    "By": "bytes",
    "KiBy": "kibibytes",
    "MiBy": "mebibytes",
    "GiBy": "gibibytes",
    "TiBy": "tibibytes",
    "KBy": "kilobytes",
    "MBy": "megabytes",
    "GBy": "gigabytes",
    "TBy": "terabytes",
    "m": "meters",
    "V": "volts",
    "A": "amperes",
    "J": "joules",
    "W": "watts",
    "g": "grams",
    "Cel": "celsius",
    "Hz": "hertz",
    "1": "",
    "%": "percent",
}
_PER_UNITS = {"s": "second", "m": "minute", "h": "hour", "d": "day", "w": "week", "mo": "month", "y": "year"}


def metric_name(name: str) -> str:
    """`system.cpu.utilization` -> `system_cpu_utilization` (before the unit is appended)."""
    if name and name[0].isdigit():
        name = "_" + name[1:]
    return _NAME_OUTSIDE.sub("_", name)


def label_name(key: str) -> str:
    """`cpu.logical_number` -> `cpu_logical_number`."""
    if key and key[0].isdigit():
        key = "_" + key[1:]
    return _LABEL_OUTSIDE.sub("_", key)


def unit_suffix(unit: str) -> str:
    """The UCUM unit as the name's suffix: `By` -> `bytes`, `By/s` -> `bytes_per_second`, `1` -> ``."""
    unit = _UNIT_ANNOTATION.sub("", unit)
    if unit in _UNITS:
        return _UNITS[unit]
    top, slash, bottom = unit.partition("/")
    if slash:
        bottom = _NAME_OUTSIDE.sub("_", bottom)
        if bottom:
            top = _NAME_OUTSIDE.sub("_", top)
            top = _UNITS.get(top, top)
            bottom = _PER_UNITS.get(bottom, bottom)
            return f"{top}_per_{bottom}" if top else f"per_{bottom}"
    return _NAME_OUTSIDE.sub("_", unit).strip("_")


def label_value(value: Any) -> str:
    """A string as it is; anything else as JSON (`true`, `3`, `["a", "b"]`)."""
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str)


# --------------------------------------------------------------------------- histograms


def explicit_histogram_point(point: ExponentialHistogramDataPoint) -> HistogramDataPoint:
    """The same distribution counted into SERVED_BOUNDS, exactly (see `served_bucket_counts`)."""
    return HistogramDataPoint(
        attributes=point.attributes,
        start_time_unix_nano=point.start_time_unix_nano,
        time_unix_nano=point.time_unix_nano,
        count=point.count,
        sum=point.sum,
        bucket_counts=served_bucket_counts(
            point.scale,
            point.zero_count + sum(point.negative.bucket_counts),
            point.positive.offset,
            point.positive.bucket_counts,
        ),
        explicit_bounds=list(SERVED_BOUNDS),
        min=point.min,
        max=point.max,
        exemplars=list(getattr(point, "exemplars", []) or []),
    )


def served_bucket_counts(scale: int, lowest_count: int, offset: int, counts: Iterable[int]) -> list[int]:
    """Base-2 exponential buckets counted into SERVED_BOUNDS and +Inf.

    A bucket of scale s >= 0 lies inside one power-of-two range (its index shifted right by s), so
    each count lands in the bucket of its true upper bound; values below the first bound count
    there, above the last in +Inf. `lowest_count` (zero and negative values, which this monitor
    never produces) counts in the first bucket.
    """
    served = [0] * (len(SERVED_BOUNDS) + 1)
    served[0] = lowest_count
    for index, count in enumerate(counts, start=offset):
        if count:
            power = index >> scale if scale >= 0 else index << -scale
            # Values of this bucket are <= 2^(power + 1): that bound's position, clamped to the range.
            position = min(max(power + 1 - _LOWEST_POWER + 1, 1), len(SERVED_BOUNDS))
            served[position] += int(count)
    return served


class _Buckets(NamedTuple):
    """A histogram point as the exposition reads it: counts per bucket (+Inf's last), each bucket's
    `le`, the sum."""

    counts: Sequence[int]
    le: tuple[str, ...]
    sum: float | None


_SERVED_LE = (*(f"{bound}" for bound in SERVED_BOUNDS), "+Inf")


def _buckets(value: Any) -> _Buckets:
    if type(value) is HistogramDelta:
        counts = served_bucket_counts(value.scale, value.zero_count, value.offset, value.bucket_counts)
        return _Buckets(counts, _SERVED_LE, value.sum)
    if isinstance(value, ExponentialHistogramDataPoint):
        value = explicit_histogram_point(value)
    le = _SERVED_LE if value.explicit_bounds == SERVED_BOUNDS else _le_of(value.explicit_bounds)
    return _Buckets(value.bucket_counts, le, value.sum)


def _le_of(bounds: Sequence[float]) -> tuple[str, ...]:
    return (*(f"{bound}" for bound in bounds), "+Inf")


def _le_for(value: Any) -> tuple[str, ...]:
    """The `le` values of a histogram point's buckets."""
    if type(value) is HistogramDelta or isinstance(value, ExponentialHistogramDataPoint):
        return _SERVED_LE
    return _SERVED_LE if value.explicit_bounds == SERVED_BOUNDS else _le_of(value.explicit_bounds)


# --------------------------------------------------------------------------- attribute sets


class _Known(NamedTuple):
    """What an attribute set gives, whatever the metric: its series key, scope and own labels."""

    attributes: Mapping[str, Any]  # kept, so the id it is found by is not reused while it lives
    key: SeriesKey
    scope: tuple[Any, ...]
    labels: Labels  # label name -> value, in the attributes' order; never changed
    names: frozenset[str]


def _known_of(attributes: Mapping[str, Any]) -> _Known:
    labels = {label_name(key): label_value(value) for key, value in attributes.items()}
    key = frozenset((name, _hashable(value)) for name, value in attributes.items())
    scope = tuple(_hashable(attributes.get(name)) for name in _SCOPE_KEYS)
    return _Known(attributes, key, scope, labels, frozenset(labels))


def _known_column(
    column: AttributeColumn,
) -> tuple[tuple[SeriesKey, ...], tuple[_Known, ...], frozenset[Any]]:
    """An AttributeColumn's translation (kept on the column: it cannot change)."""
    known = tuple(_known_of(attributes) for attributes in column)
    return tuple(k.key for k in known), known, frozenset(k.scope for k in known)


class _KnownMemo:
    """Attribute sets outside columns, kept from one update to the next: FrozenAttributes by id
    (with the object in the entry, so the id cannot be reused while it lives), other mappings by
    content. Entries an update did not use are dropped at the end of the next one."""

    def __init__(self) -> None:
        self._previous: dict[Any, _Known] = {}
        self._current: dict[Any, _Known] = {}

    def known(self, attributes: Mapping[str, Any]) -> _Known:
        frozen = type(attributes) is FrozenAttributes
        memo_key: Any = id(attributes) if frozen else _series_key(attributes)
        known = self._current.get(memo_key)
        if known is None:
            known = self._previous.get(memo_key)
            if known is None or (frozen and known.attributes is not attributes):
                known = _known_of(attributes)
            self._current[memo_key] = known
        return known

    def end_update(self) -> None:
        self._previous, self._current = self._current, {}


# --------------------------------------------------------------------------- the latest series


class _Layout(NamedTuple):
    """How one metric's series become its family's samples, for as long as none of this changes."""

    family_names: tuple[str, ...]  # the family's label names (those of the first metric it has)
    keys: tuple[str, ...]  # this metric's label names, sorted
    scope_labels: Labels
    name: str  # the family's name


class _Series(NamedTuple):
    """A series' labels in its family, and the start of each of its sample lines (None: a label
    name the exposition leaves to prometheus_client)."""

    labels: Labels
    prefix: str | None  # `name{labels} ` (counters `name_total{...} `; histograms `name_count{...} `)
    plain: bool  # every line start made
    sum_prefix: str | None = None  # histograms: `name_sum{labels} `
    le: tuple[str, ...] = ()
    bucket_prefixes: tuple[str | None, ...] = ()


class _MetricState:
    __slots__ = (
        "label_keys",
        "layout",
        "metric",
        "order",
        "plain",
        "scope_labels",
        "scopes",
        "series",
        "starts",
        "translated",
    )

    def __init__(self, metric: Metric) -> None:
        self.metric = metric  # the latest Metric of this name: its description, unit and kind
        self.series: dict[SeriesKey, tuple[_Known, Any]] = {}  # never changed: replaced whole
        self.scopes: frozenset[Any] = frozenset()
        # What the last rendering made, kept while its series come back in the same order: its
        # series, their label names, the layout, each series' translation and line start.
        self.order: list[SeriesKey] = []
        self.scope_labels: Labels | None = None
        self.label_keys: tuple[str, ...] = ()
        self.layout: _Layout | None = None
        self.translated: dict[SeriesKey, _Series] = {}  # never changed once rendered: replaced whole
        self.starts: list[str | None] | None = None  # in series order (not for histograms)
        self.plain = True


class _Rendering(NamedTuple):
    """One metric's part of an exposition, enough to build its prometheus_client family later."""

    kind: Kind
    family_id: str
    name: str
    description: str
    unit: str
    layout: _Layout
    series: dict[SeriesKey, tuple[_Known, Any]]
    translated: dict[SeriesKey, _Series]
    plain: bool  # every line start made: no label name left to prometheus_client
    starts: list[str | None] | None  # the line starts in series order (not for histograms)


class LatestMetrics:
    """The latest point of every series seen in exported MetricsData, rendered as Prometheus's
    exposition in OpenTelemetry's names. Used by one thread at a time (the exporter's `export`)."""

    def __init__(self) -> None:
        self._resource: Resource | None = None
        self._scope: InstrumentationScope | None = None
        self._metrics: dict[str, _MetricState] = {}
        self._memo = _KnownMemo()
        self._names: dict[tuple[str, str], tuple[str, str]] = {}
        self._scope_labels: tuple[InstrumentationScope | None, Labels] = (None, {})
        self._family_names: dict[tuple[Kind, str, str, str], str] = {}

    def update(self, metrics_data: MetricsData) -> None:
        for resource_metrics in metrics_data.resource_metrics:
            self._resource = resource_metrics.resource
            for scope_metrics in resource_metrics.scope_metrics:
                self._scope = scope_metrics.scope
                for metric in scope_metrics.metrics:
                    self._update_metric(metric)
        self._memo.end_update()

    def _update_metric(self, metric: Metric) -> None:
        state = self._metrics.get(metric.name)
        if state is None:
            state = self._metrics[metric.name] = _MetricState(metric)
        state.metric = metric
        fresh: dict[SeriesKey, tuple[_Known, Any]] = {}
        scopes: set[Any] = set()
        for attributes, values in _blocks(metric.data.data_points):
            if type(attributes) is AttributeColumn:
                keys, known, column_scopes = attributes.view(_known_column)
                fresh.update(zip(keys, zip(known, values)))
                scopes.update(column_scopes)
            else:
                for one, value in zip(attributes, values):
                    known_one = self._memo.known(one)
                    fresh[known_one.key] = (known_one, value)
                    scopes.add(known_one.scope)
        if not scopes:
            return
        # Ordered as one dict kept by series would be: what stays in place, then the fresh points.
        if state.scopes <= scopes:
            state.series = fresh
            state.scopes = frozenset(scopes)
        else:
            kept = {key: point for key, point in state.series.items() if point[0].scope not in scopes}
            kept.update(fresh)
            state.series = kept
            state.scopes = frozenset(point[0].scope for point in kept.values())

    # ----------------------------------------------------------------------- rendering

    def render(self) -> Exposition:
        """The exposition of every series kept (none before the first update)."""
        if self._resource is None:
            return Exposition.of([])
        target_info = _target_info(self._resource)
        renderings = self._renderings()
        rendered = render_families([target_info])
        if rendered is not None and all(part.plain for part in renderings):
            rendered += _rendered_families(renderings)
        else:
            rendered = None
        return Exposition(rendered, lambda: [target_info, *_families(renderings)])

    def _renderings(self) -> list[_Rendering]:
        scope_labels = self._labels_of_scope(self._scope or InstrumentationScope("otel_neuron"))
        renderings = []
        family_label_names: dict[str, tuple[str, ...]] = {}
        for state in self._metrics.values():
            metric = state.metric
            kind = _family_kind(metric.data)
            if kind is None:
                _logger.warning("Unsupported metric data. %s", type(metric.data))
                continue
            name, unit = self._name_and_unit(metric)
            description = metric.description or ""
            family_id = f"{name}|{description}|{unit}|{kind.__name__}"
            order = list(state.series)
            if order != state.order or scope_labels is not state.scope_labels:  # their label names again
                state.order, state.scope_labels, state.starts = order, scope_labels, None
                state.label_keys = _label_keys(scope_labels, state.series)
            family_names = family_label_names.setdefault(family_id, state.label_keys)
            family_name = self._family_name(kind, name, description, unit)
            layout = _Layout(family_names, state.label_keys, scope_labels, family_name)
            if layout != state.layout:
                state.layout, state.translated, state.starts = layout, {}, None
            if state.starts is None or kind is HistogramMetricFamily:  # a histogram's bounds may change
                state.translated, plain = _translate(kind, layout, state.series, state.translated)
                state.plain = plain and plain_name(family_name)
                if kind is not HistogramMetricFamily:
                    state.starts = [state.translated[key].prefix for key in order]
            renderings.append(
                _Rendering(
                    kind,
                    family_id,
                    name,
                    description,
                    unit,
                    layout,
                    state.series,
                    state.translated,
                    state.plain,
                    state.starts,
                )
            )
        return renderings

    def _family_name(self, kind: Kind, name: str, description: str, unit: str) -> str:
        """The family's name as prometheus_client makes it (a counter's `_total` dropped, the unit
        appended unless there already)."""
        key = (kind, name, description, unit)
        found = self._family_names.get(key)
        if found is None:
            found = self._family_names[key] = kind(name, description, unit=unit).name
        return found

    def _name_and_unit(self, metric: Metric) -> tuple[str, str]:
        key = (metric.name, metric.unit or "")
        found = self._names.get(key)
        if found is None:
            found = self._names[key] = (metric_name(metric.name), unit_suffix(metric.unit or ""))
        return found

    def _labels_of_scope(self, scope: InstrumentationScope) -> Labels:
        kept_scope, labels = self._scope_labels
        if kept_scope is not scope:
            attributes = {f"otel_scope_{key}": value for key, value in (scope.attributes or {}).items()}
            attributes.update(
                otel_scope_name=scope.name or "",
                otel_scope_version=scope.version or "",
                otel_scope_schema_url=scope.schema_url or "",
            )
            labels = {label_name(key): label_value(value) for key, value in attributes.items()}
            self._scope_labels = (scope, labels)
        return labels


# The exposition's type of each family class.
_TYPES: dict[Kind, str] = {
    CounterMetricFamily: "counter",
    GaugeMetricFamily: "gauge",
    HistogramMetricFamily: "histogram",
}
_SUFFIX: dict[Kind, str] = {CounterMetricFamily: "_total", GaugeMetricFamily: ""}


def _family_kind(data: Any) -> Kind | None:
    if isinstance(data, Sum):
        # Cumulative up-down sums are gauges (Prometheus compatibility); every other sum a counter.
        if not data.is_monotonic and data.aggregation_temporality == AggregationTemporality.CUMULATIVE:
            return GaugeMetricFamily
        return CounterMetricFamily
    if isinstance(data, Gauge):
        return GaugeMetricFamily
    if isinstance(data, (Histogram, ExponentialHistogram)):
        return HistogramMetricFamily
    return None


def _label_keys(scope_labels: Labels, series: Mapping[SeriesKey, tuple[_Known, Any]]) -> tuple[str, ...]:
    """A metric's label names, sorted: the scope's and its points' own (none without points)."""
    names = set(scope_labels) if series else set()
    for label_set in {known.names for known, _ in series.values()}:
        names.update(label_set)
    return tuple(sorted(names))


def _translate(
    kind: Kind,
    layout: _Layout,
    series: Mapping[SeriesKey, tuple[_Known, Any]],
    before: Mapping[SeriesKey, _Series],
) -> tuple[dict[SeriesKey, _Series], bool]:
    """Each series' labels and line starts (those of `before` kept, the others made), and whether
    every line start could be made."""
    translated = {}
    plain = True
    for key, (known, value) in series.items():
        found = before.get(key)
        if found is None:
            found = _series(kind, layout, known.labels)
        if kind is HistogramMetricFamily:
            le = _le_for(value)
            if le != found.le:
                found = _with_buckets(layout, found, le)
        plain = plain and found.plain
        translated[key] = found
    return translated, plain


def _series(kind: Kind, layout: _Layout, own: Labels) -> _Series:
    """A series' labels: the scope's and its own (its own winning), every one of the metric's names
    present (empty if not its own), zipped with the family's names."""
    merged = {**layout.scope_labels, **own}
    labels = dict(zip(layout.family_names, [merged.get(key, "") for key in layout.keys]))
    text = label_text(labels)
    if kind is HistogramMetricFamily:
        count, total = _line_start(layout.name + "_count", text), _line_start(layout.name + "_sum", text)
        return _Series(labels, count, text is not None, total)  # plain once its buckets are made
    return _Series(labels, _line_start(layout.name + _SUFFIX[kind], text), text is not None)


def _with_buckets(layout: _Layout, series: _Series, le: tuple[str, ...]) -> _Series:
    starts = tuple(
        _line_start(layout.name + "_bucket", label_text({**series.labels, "le": bound})) for bound in le
    )
    plain = series.prefix is not None and None not in starts
    return series._replace(le=le, bucket_prefixes=starts, plain=plain)


def _line_start(name: str, text: str | None) -> str | None:
    if text is None:
        return None
    return f"{name}{{{text}}} " if text else f"{name} "


def _rendered_families(renderings: Sequence[_Rendering]) -> list[RenderedFamily]:
    """The renderings' sample lines, a family per family id (all line starts made)."""
    heads: dict[str, tuple[str, str, str, str]] = {}
    lines: dict[str, list[str]] = {}
    for part in renderings:
        if part.family_id not in heads:
            heads[part.family_id] = (part.layout.name, _TYPES[part.kind], part.description, part.unit)
            lines[part.family_id] = []
        _add_sample_lines(part, lines[part.family_id])
    rendered = []
    for family_id, (name, family_type, description, unit) in heads.items():
        text = "".join(lines[family_id])
        rendered.append(RenderedFamily(name, family_type, description, unit, text, text, ()))
    return rendered


def _add_sample_lines(part: _Rendering, lines: list[str]) -> None:
    if part.starts is not None:
        if part.starts:
            values = go_floats([value for _, value in part.series.values()])
            lines.append("\n".join(map(add, part.starts, values)) + "\n")
        return
    for key, (_, value) in part.series.items():
        series = part.translated[key]
        buckets = _buckets(value)
        total = 0
        for start, count in zip(series.bucket_prefixes, buckets.counts):
            total += count
            lines.append(f"{start}{floatToGoString(total)}\n")
        # Without sum and count when the first bound is negative, as prometheus_client does.
        if float(buckets.le[0]) >= 0 and buckets.sum is not None:
            lines.append(f"{series.prefix}{floatToGoString(total)}\n")
            lines.append(f"{series.sum_prefix}{floatToGoString(buckets.sum)}\n")


def _families(renderings: Sequence[_Rendering]) -> list[Family]:
    """The renderings as prometheus_client families (what its encoders and registries read)."""
    families: dict[str, Family] = {}
    for part in renderings:
        family = families.get(part.family_id)
        if family is None:
            family = families[part.family_id] = part.kind(
                part.name, part.description, labels=part.layout.family_names, unit=part.unit
            )
        samples = family.samples
        for key, (_, value) in part.series.items():
            series = part.translated[key]
            if part.kind is not HistogramMetricFamily:
                samples.append(Sample(family.name + _SUFFIX[part.kind], series.labels, value))
                continue
            buckets = _buckets(value)
            total = 0
            for bound, count in zip(buckets.le, buckets.counts):
                total += count
                samples.append(Sample(family.name + "_bucket", {**series.labels, "le": bound}, total))
            if float(buckets.le[0]) >= 0 and buckets.sum is not None:
                samples.append(Sample(family.name + "_count", series.labels, total))
                samples.append(Sample(family.name + "_sum", series.labels, buckets.sum))
    return list(families.values())


def _target_info(resource: Resource) -> Family:
    labels = {label_name(key): label_value(value) for key, value in resource.attributes.items()}
    info = InfoMetricFamily("target", "Target metadata", labels=list(labels))
    info.add_metric(list(labels), labels)
    return info


def _blocks(data_points: Any) -> Iterable[tuple[Sequence[Any], Sequence[Any]]]:
    """(attributes, values) per block: the producer's columns as they are, other points one by one."""
    if type(data_points) is not PointBlocks:
        for point in data_points:
            yield [point.attributes or {}], [_value_of(point)]
        return
    for block in data_points.pairs_of_blocks:
        if type(block) is PointColumns:
            values = block.values
            yield block.attributes, values.tolist() if hasattr(values, "tolist") else values
        elif block:
            attributes, values = zip(*block)
            yield attributes, values


def _value_of(point: Any) -> Any:
    return point if isinstance(point, (HistogramDataPoint, ExponentialHistogramDataPoint)) else point.value


def _series_key(attributes: Mapping[str, Any]) -> SeriesKey:
    return frozenset((key, _hashable(value)) for key, value in attributes.items())


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, (list, tuple)) else value


__all__ = [
    "SERVED_BOUNDS",
    "LatestMetrics",
    "explicit_histogram_point",
    "label_name",
    "label_value",
    "metric_name",
    "served_bucket_counts",
    "unit_suffix",
]
