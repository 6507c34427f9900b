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

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from opentelemetry.sdk.metrics.export import (
    ExponentialHistogramDataPoint,
    HistogramDataPoint,
    Metric,
    MetricsData,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from prometheus_client.metrics_core import HistogramMetricFamily

from otel_neuron.exporters.exposition import Exposition, plain_name, render_families
from otel_neuron.exporters.otel_series import (
    Kind,
    Known,
    KnownMemo,
    Labels,
    Layout,
    Rendering,
    Series,
    SeriesKey,
    families,
    family_kind,
    known_column,
    label_keys,
    rendered_families,
    target_info_family,
    translate,
)
from otel_neuron.exporters.prometheus_translation import (
    label_name,
    label_value,
    metric_name,
    unit_suffix,
)
from otel_neuron.groups.base import AttributeColumn, PointColumns
from otel_neuron.producer import PointBlocks

_logger = logging.getLogger(__name__)


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
        self.series: dict[SeriesKey, tuple[Known, Any]] = {}  # never changed: replaced whole
        self.scopes: frozenset[Any] = frozenset()
        # What the last rendering made, kept while its series come back in the same order: its
        # series, their label names, the layout, each series' translation and line start.
        self.order: list[SeriesKey] = []
        self.scope_labels: Labels | None = None
        self.label_keys: tuple[str, ...] = ()
        self.layout: Layout | None = None
        self.translated: dict[SeriesKey, Series] = {}  # never changed once rendered: replaced whole
        self.starts: list[str | None] | None = None  # in series order (not for histograms)
        self.plain = True


class LatestMetrics:
    """The latest point of every series seen in exported MetricsData, rendered as Prometheus's
    exposition in OpenTelemetry's names. Used by one thread at a time (the exporter's `export`)."""

    def __init__(self) -> None:
        self._resource: Resource | None = None
        self._scope: InstrumentationScope | None = None
        self._metrics: dict[str, _MetricState] = {}
        self._memo = KnownMemo()
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
        fresh: dict[SeriesKey, tuple[Known, Any]] = {}
        scopes: set[Any] = set()
        for attributes, values in _blocks(metric.data.data_points):
            if type(attributes) is AttributeColumn:
                keys, known, column_scopes = attributes.view(known_column)
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
        target_info = target_info_family(self._resource)
        renderings = self._renderings()
        rendered = render_families([target_info])
        if rendered is not None and all(part.plain for part in renderings):
            rendered += rendered_families(renderings)
        else:
            rendered = None
        return Exposition(rendered, lambda: [target_info, *families(renderings)])

    def _renderings(self) -> list[Rendering]:
        scope_labels = self._labels_of_scope(self._scope or InstrumentationScope("otel_neuron"))
        renderings = []
        family_label_names: dict[str, tuple[str, ...]] = {}
        for state in self._metrics.values():
            metric = state.metric
            kind = family_kind(metric.data)
            if kind is None:
                _logger.warning("Unsupported metric data. %s", type(metric.data))
                continue
            name, unit = self._name_and_unit(metric)
            description = metric.description or ""
            family_id = f"{name}|{description}|{unit}|{kind.__name__}"
            order = list(state.series)
            if order != state.order or scope_labels is not state.scope_labels:  # their label names again
                state.order, state.scope_labels, state.starts = order, scope_labels, None
                state.label_keys = label_keys(scope_labels, state.series)
            family_names = family_label_names.setdefault(family_id, state.label_keys)
            family_name = self._family_name(kind, name, description, unit)
            layout = Layout(family_names, state.label_keys, scope_labels, family_name)
            if layout != state.layout:
                state.layout, state.translated, state.starts = layout, {}, None
            if state.starts is None or kind is HistogramMetricFamily:  # a histogram's bounds may change
                state.translated, plain = translate(kind, layout, state.series, state.translated)
                state.plain = plain and plain_name(family_name)
                if kind is not HistogramMetricFamily:
                    state.starts = [state.translated[key].prefix for key in order]
            renderings.append(
                Rendering(
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


__all__ = ["LatestMetrics"]
