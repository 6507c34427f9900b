"""MetricsData kept as JSON in tests/fixtures (what a real pipeline exported), read back exactly.

The format is this project's own, lossless for what the exporters read: attribute values keep their
JSON types (int, float, bool, str, list), numbers their int-or-float kind, NaN and infinities as
Python's json writes them.

    exports = load_exports(FIXTURES / "prometheus" / "pipeline-exports.json")  # list[MetricsData]
    blocks = load_exports(path, as_blocks=True)  # the same, as the monitor's producer hands it over

`as_blocks=True` gives the data points of gauges, sums and exponential histograms as the producer's
`PointBlocks` (one block per run of points sharing an interval: a `PointColumns` over an
`AttributeColumn` when it has several points, a list of (FrozenAttributes, value) pairs otherwise;
histogram values as `HistogramDelta`), so an exporter's fast path for them meets the same data.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from itertools import groupby
from pathlib import Path
from typing import Any

from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Buckets,
    ExponentialHistogram,
    ExponentialHistogramDataPoint,
    Gauge,
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricsData,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from otel_neuron.groups.base import AttributeColumn, FrozenAttributes, HistogramDelta, PointColumns
from otel_neuron.producer import PointBlocks


def load_exports(path: Path, as_blocks: bool = False) -> list[MetricsData]:
    kept = _Kept() if as_blocks else None
    return [metrics_data(export, kept) for export in json.loads(path.read_text())]


def metrics_data(export: Sequence[Mapping[str, Any]], kept: _Kept | None = None) -> MetricsData:
    return MetricsData(
        [
            ResourceMetrics(
                Resource(_attributes(item["resource"])),
                [_scope_metrics(scoped, kept) for scoped in item["scope_metrics"]],
                item["schema_url"],
            )
            for item in export
        ]
    )


def _attributes(pairs: Sequence[Sequence[Any]]) -> dict[str, Any]:
    return {key: tuple(value) if isinstance(value, list) else value for key, value in pairs}


def _scope_metrics(scoped: Mapping[str, Any], kept: _Kept | None) -> ScopeMetrics:
    scope = scoped["scope"]
    return ScopeMetrics(
        InstrumentationScope(
            scope["name"], scope["version"], scope["schema_url"], _attributes(scope["attributes"]) or None
        ),
        [_metric(metric, kept) for metric in scoped["metrics"]],
        scoped["schema_url"],
    )


def _metric(metric: Mapping[str, Any], kept: _Kept | None) -> Metric:
    kind, points = metric["kind"], metric["points"]
    data: Any
    if kind == "histogram":
        data = Histogram(
            [_histogram(point) for point in points], AggregationTemporality(metric["temporality"])
        )
    elif kind == "exponential_histogram":
        exponential = (
            _blocks(points, _delta, kept) if kept is not None else [_exponential(point) for point in points]
        )
        data = ExponentialHistogram(exponential, AggregationTemporality(metric["temporality"]))
    else:
        numbers = _blocks(points, _value, kept) if kept is not None else [_number(point) for point in points]
        if kind == "gauge":
            data = Gauge(numbers)
        else:
            data = Sum(numbers, AggregationTemporality(metric["temporality"]), metric["is_monotonic"])
    return Metric(metric["name"], metric["description"], metric["unit"], data)


def _blocks(points: Sequence[Mapping[str, Any]], value_of: Any, kept: _Kept) -> PointBlocks:
    blocks = PointBlocks()
    for interval, run in groupby(points, key=lambda point: (point["start"], point["time"])):
        chunk = list(run)
        values = [value_of(point) for point in chunk]
        block: Any
        if len(chunk) > 1:
            block = PointColumns(kept.column([point["attributes"] for point in chunk]), values)
        else:
            block = [(kept.frozen(chunk[0]["attributes"]), values[0])]
        blocks.pairs_of_blocks.append(block)
        blocks.intervals.append(interval)
    return blocks


class _Kept:
    """The attribute objects of one load, reused from one export to the next as groups reuse theirs."""

    def __init__(self) -> None:
        self._frozen: dict[str, FrozenAttributes] = {}
        self._columns: dict[str, AttributeColumn] = {}

    def frozen(self, pairs: Sequence[Sequence[Any]]) -> FrozenAttributes:
        key = json.dumps(pairs)
        found = self._frozen.get(key)
        if found is None:
            found = self._frozen[key] = FrozenAttributes(_attributes(pairs))
        return found

    def column(self, attributes: Sequence[Sequence[Sequence[Any]]]) -> AttributeColumn:
        key = json.dumps(attributes)
        found = self._columns.get(key)
        if found is None:
            found = self._columns[key] = AttributeColumn(self.frozen(pairs) for pairs in attributes)
        return found


def _value(point: Mapping[str, Any]) -> Any:
    return point["value"]


def _delta(point: Mapping[str, Any]) -> HistogramDelta:
    if point["negative"][1]:
        raise ValueError("the producer's histograms have no negative buckets")
    offset, counts = point["positive"]
    return HistogramDelta(
        scale=point["scale"],
        zero_count=point["zero_count"],
        offset=offset,
        bucket_counts=tuple(counts),
        count=point["count"],
        sum=point["sum"],
        min=point["min"],
        max=point["max"],
    )


def _number(point: Mapping[str, Any]) -> NumberDataPoint:
    return NumberDataPoint(_attributes(point["attributes"]), point["start"], point["time"], point["value"])


def _histogram(point: Mapping[str, Any]) -> HistogramDataPoint:
    return HistogramDataPoint(
        attributes=_attributes(point["attributes"]),
        start_time_unix_nano=point["start"],
        time_unix_nano=point["time"],
        count=point["count"],
        sum=point["sum"],
        bucket_counts=point["bucket_counts"],
        explicit_bounds=point["explicit_bounds"],
        min=point["min"],
        max=point["max"],
    )


def _exponential(point: Mapping[str, Any]) -> ExponentialHistogramDataPoint:
    return ExponentialHistogramDataPoint(
        attributes=_attributes(point["attributes"]),
        start_time_unix_nano=point["start"],
        time_unix_nano=point["time"],
        count=point["count"],
        sum=point["sum"],
        scale=point["scale"],
        zero_count=point["zero_count"],
        positive=Buckets(*point["positive"]),
        negative=Buckets(*point["negative"]),
        flags=point["flags"],
        min=point["min"],
        max=point["max"],
    )
