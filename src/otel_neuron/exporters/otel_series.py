"""What each series of a metric becomes in the exposition: its labels, its sample lines' starts, its
family (see `otel_names` for the rules and the module that keeps the series)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from operator import add
from typing import Any, NamedTuple

from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    ExponentialHistogram,
    Gauge,
    Histogram,
    Sum,
)
from opentelemetry.sdk.resources import Resource
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
)
from prometheus_client.metrics_core import Metric as Family
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

from otel_neuron.exporters.exposition import RenderedFamily, go_floats, label_text
from otel_neuron.exporters.prometheus_translation import (
    SeriesKey,
    hashable,
    label_name,
    label_value,
    le_for,
    series_key,
    served_buckets,
)
from otel_neuron.groups.base import AttributeColumn, FrozenAttributes

Labels = dict[str, str]
# The prometheus_client families a metric becomes.
Kind = type[CounterMetricFamily] | type[GaugeMetricFamily] | type[HistogramMetricFamily]

# Attributes that, with the metric name, scope a "replace" of series: a new sample of a group for
# one runtime replaces all that metric's series of that runtime (NeuronCores that went idle vanish),
# without touching the series of other runtimes or other groups' health points.
SCOPE_KEYS = ("neuron.runtime.index", "neuron.monitor.group")


class Known(NamedTuple):
    """What an attribute set gives, whatever the metric: its series key, scope and own labels."""

    attributes: Mapping[str, Any]  # kept, so the id it is found by is not reused while it lives
    key: SeriesKey
    scope: tuple[Any, ...]
    labels: Labels  # label name -> value, in the attributes' order; never changed
    names: frozenset[str]


def _known_of(attributes: Mapping[str, Any]) -> Known:
    labels = {label_name(key): label_value(value) for key, value in attributes.items()}
    key = frozenset((name, hashable(value)) for name, value in attributes.items())
    scope = tuple(hashable(attributes.get(name)) for name in SCOPE_KEYS)
    return Known(attributes, key, scope, labels, frozenset(labels))


def known_column(
    column: AttributeColumn,
) -> tuple[tuple[SeriesKey, ...], tuple[Known, ...], frozenset[Any]]:
    """An AttributeColumn's translation (kept on the column: it cannot change)."""
    known = tuple(_known_of(attributes) for attributes in column)
    return tuple(k.key for k in known), known, frozenset(k.scope for k in known)


class KnownMemo:
    """Attribute sets outside columns, kept from one update to the next: FrozenAttributes by id
    (with the object in the entry, so the id cannot be reused while it lives), other mappings by
    content. Entries an update did not use are dropped at the end of the next one."""

    def __init__(self) -> None:
        self._previous: dict[Any, Known] = {}
        self._current: dict[Any, Known] = {}

    def known(self, attributes: Mapping[str, Any]) -> Known:
        frozen = type(attributes) is FrozenAttributes
        memo_key: Any = id(attributes) if frozen else series_key(attributes)
        known = self._current.get(memo_key)
        if known is None:
            known = self._previous.get(memo_key)
            if known is None or (frozen and known.attributes is not attributes):
                known = _known_of(attributes)
            self._current[memo_key] = known
        return known

    def end_update(self) -> None:
        self._previous, self._current = self._current, {}


class Layout(NamedTuple):
    """How one metric's series become its family's samples, for as long as none of this changes."""

    family_names: tuple[str, ...]  # the family's label names (those of the first metric it has)
    keys: tuple[str, ...]  # this metric's label names, sorted
    scope_labels: Labels
    name: str  # the family's name


class Series(NamedTuple):
    """A series' labels in its family, and the start of each of its sample lines (None: a label
    name the exposition leaves to prometheus_client)."""

    labels: Labels
    prefix: str | None  # `name{labels} ` (counters `name_total{...} `; histograms `name_count{...} `)
    plain: bool  # every line start made
    sum_prefix: str | None = None  # histograms: `name_sum{labels} `
    le: tuple[str, ...] = ()
    bucket_prefixes: tuple[str | None, ...] = ()


class Rendering(NamedTuple):
    """One metric's part of an exposition, enough to build its prometheus_client family later."""

    kind: Kind
    family_id: str
    name: str
    description: str
    unit: str
    layout: Layout
    series: dict[SeriesKey, tuple[Known, Any]]
    translated: dict[SeriesKey, Series]
    plain: bool  # every line start made: no label name left to prometheus_client
    starts: list[str | None] | None  # the line starts in series order (not for histograms)


_TYPES: dict[Kind, str] = {
    CounterMetricFamily: "counter",
    GaugeMetricFamily: "gauge",
    HistogramMetricFamily: "histogram",
}
_SUFFIX: dict[Kind, str] = {CounterMetricFamily: "_total", GaugeMetricFamily: ""}


def family_kind(data: Any) -> Kind | None:
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


def label_keys(scope_labels: Labels, series: Mapping[SeriesKey, tuple[Known, Any]]) -> tuple[str, ...]:
    """A metric's label names, sorted: the scope's and its points' own (none without points)."""
    names = set(scope_labels) if series else set()
    for label_set in {known.names for known, _ in series.values()}:
        names.update(label_set)
    return tuple(sorted(names))


def translate(
    kind: Kind,
    layout: Layout,
    series: Mapping[SeriesKey, tuple[Known, Any]],
    before: Mapping[SeriesKey, Series],
) -> tuple[dict[SeriesKey, Series], bool]:
    """Each series' labels and line starts (those of `before` kept, the others made), and whether
    every line start could be made."""
    translated = {}
    plain = True
    for key, (known, value) in series.items():
        found = before.get(key)
        if found is None:
            found = _series(kind, layout, known.labels)
        if kind is HistogramMetricFamily:
            le = le_for(value)
            if le != found.le:
                found = _with_buckets(layout, found, le)
        plain = plain and found.plain
        translated[key] = found
    return translated, plain


def _series(kind: Kind, layout: Layout, own: Labels) -> Series:
    """A series' labels: the scope's and its own (its own winning), every one of the metric's names
    present (empty if not its own), zipped with the family's names."""
    merged = {**layout.scope_labels, **own}
    labels = dict(zip(layout.family_names, [merged.get(key, "") for key in layout.keys]))
    text = label_text(labels)
    if kind is HistogramMetricFamily:
        count, total = _line_start(layout.name + "_count", text), _line_start(layout.name + "_sum", text)
        return Series(labels, count, text is not None, total)  # plain once its buckets are made
    return Series(labels, _line_start(layout.name + _SUFFIX[kind], text), text is not None)


def _with_buckets(layout: Layout, series: Series, le: tuple[str, ...]) -> Series:
    starts = tuple(
        _line_start(layout.name + "_bucket", label_text({**series.labels, "le": bound})) for bound in le
    )
    plain = series.prefix is not None and None not in starts
    return series._replace(le=le, bucket_prefixes=starts, plain=plain)


def _line_start(name: str, text: str | None) -> str | None:
    if text is None:
        return None
    return f"{name}{{{text}}} " if text else f"{name} "


def rendered_families(renderings: Sequence[Rendering]) -> list[RenderedFamily]:
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


def _add_sample_lines(part: Rendering, lines: list[str]) -> None:
    if part.starts is not None:
        if part.starts:
            values = go_floats([value for _, value in part.series.values()])
            lines.append("\n".join(map(add, part.starts, values)) + "\n")
        return
    for key, (_, value) in part.series.items():
        series = part.translated[key]
        buckets = served_buckets(value)
        total = 0
        for start, count in zip(series.bucket_prefixes, buckets.counts):
            total += count
            lines.append(f"{start}{floatToGoString(total)}\n")
        # Without sum and count when the first bound is negative, as prometheus_client does.
        if float(buckets.le[0]) >= 0 and buckets.sum is not None:
            lines.append(f"{series.prefix}{floatToGoString(total)}\n")
            lines.append(f"{series.sum_prefix}{floatToGoString(buckets.sum)}\n")


def families(renderings: Sequence[Rendering]) -> list[Family]:
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
            buckets = served_buckets(value)
            total = 0
            for bound, count in zip(buckets.le, buckets.counts):
                total += count
                samples.append(Sample(family.name + "_bucket", {**series.labels, "le": bound}, total))
            if float(buckets.le[0]) >= 0 and buckets.sum is not None:
                samples.append(Sample(family.name + "_count", series.labels, total))
                samples.append(Sample(family.name + "_sum", series.labels, buckets.sum))
    return list(families.values())


def target_info_family(resource: Resource) -> Family:
    labels = {label_name(key): label_value(value) for key, value in resource.attributes.items()}
    info = InfoMetricFamily("target", "Target metadata", labels=list(labels))
    info.add_metric(list(labels), labels)
    return info
