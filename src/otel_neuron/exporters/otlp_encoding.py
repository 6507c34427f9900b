"""MetricsData -> the bytes of an OTLP ExportMetricsServiceRequest, without a protobuf object per point.

The SDK's `encode_metrics` builds a protobuf message per data point and per attribute, from
NumberDataPoint objects: at trn2 scale (4,600 points a collection) that costs more than the whole
collection. `RequestEncoder.encode` writes the same message in protobuf's wire format directly from
the producer's point blocks (`producer.PointBlocks`: one interval per block, attribute sets that
groups build once), reusing what does not change from one collection to the next:

- a number metric whose blocks are attribute sets that cannot change (`AttributeColumn`s, or one
  `FrozenAttributes` a block, as the groups' health points) keeps its whole Metric message from one
  request to the next, with room for its points' times and values (`otlp_layouts.MetricLayout`),
  made again only when its attribute sets, value type or header change. Each request reads the
  metric's blocks in whole-list passes and, once the request is joined, the times and values of
  all such metrics are written in two whole-array passes (`otlp_layouts.FixedFields`): a metric
  costs a few list passes, a block or a point no Python work of its own;
- the other number points (plain dicts, mixed value types, a running total's list of pairs) are
  joined from their attribute set's encoding, kept per FrozenAttributes object, and their times and
  value; histogram points are written one by one, with all their bucket counts as varints in one pass;
- the resource, the scope and each metric's name/description/unit are encoded once.
What is kept holds the attribute objects it came from (an id is never another object's meanwhile):
a metric's message is replaced when its points change (one per metric name, at most 4,096 names),
and the attribute encodings are dropped when they outgrow what a collection uses, so memory stays
flat however a source builds its attribute sets.

The result is the message the SDK's exporter sends for the same MetricsData, field for field (the
unit tests decode both and compare them); it follows the SDK's choices where the protocol leaves
room: a gauge point has no start time, an integer value is `as_int` and anything else `as_double`,
a histogram's sum, min and max are always present, and a metric without points carries no data.
Data points that are not PointBlocks (the SDK's own objects) are encoded point by point, exemplars
excepted (the monitor records none).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from functools import partial
from itertools import chain
from typing import Any

from opentelemetry.sdk.metrics.export import (
    ExponentialHistogram,
    Gauge,
    Metric,
    MetricsData,
    NumberDataPoint,
    Sum,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from otel_neuron.exporters.otlp_layouts import (
    EXPONENTIAL_HISTOGRAM_FIELD,
    GAUGE_FIELD,
    SUM_FIELD,
    FixedFields,
    MetricFrame,
    MetricLayout,
    lay_out,
    read_blocks,
)
from otel_neuron.exporters.otlp_points import (
    AttributeMemo,
    histogram_point,
    number_prefix,
    number_value,
    point_tails,
    sdk_histogram_point,
)
from otel_neuron.exporters.otlp_wire import (
    START_TIME,
    TIME,
    TIMES_SIZE,
    encode_attributes,
    field_header,
    length_delimited,
    pack_fixed64,
    packed_varints_each,
    varint,
)
from otel_neuron.groups.base import HistogramDelta, PointColumns
from otel_neuron.producer import PointBlocks

_logger = logging.getLogger(__name__)


class RequestEncoder:
    """Encodes MetricsData as an ExportMetricsServiceRequest's bytes, keeping what repeats.

    One encoder per exporter, used by one thread at a time (the exporter's worker).
    """

    def __init__(self) -> None:
        self._gauge_prefixes = AttributeMemo(partial(number_prefix, times_size=TIMES_SIZE))
        self._sum_prefixes = AttributeMemo(partial(number_prefix, times_size=2 * TIMES_SIZE))
        self._histogram_attributes = AttributeMemo(partial(encode_attributes, field=1))
        self._layouts: dict[str, MetricLayout] = {}  # by metric name
        self._fields = FixedFields()
        self._resources: dict[int, tuple[Resource, bytes]] = {}
        self._scopes: dict[int, tuple[InstrumentationScope | None, bytes]] = {}
        self._metric_headers: dict[tuple[str, str, str], bytes] = {}

    def encode(self, data: MetricsData) -> bytes:
        # encode_metrics keys resources and scopes by value: a repeated one keeps its first place
        # and its last content.
        by_resource: dict[Resource, dict[InstrumentationScope | None, Sequence[Metric]]] = {}
        for resource_metrics in data.resource_metrics:
            by_resource[resource_metrics.resource] = {
                scope_metrics.scope: scope_metrics.metrics for scope_metrics in resource_metrics.scope_metrics
            }
        parts: list[bytes] = []
        self._fields.begin()
        for resource, scopes in by_resource.items():
            body = [self._resource(resource)]
            for scope, metrics in scopes.items():
                body.extend(self._scope_metrics(scope, metrics))
            schema_url = resource.schema_url
            if schema_url:
                body.append(length_delimited(3, schema_url.encode()))
            parts.append(field_header(1, sum(map(len, body))))
            parts.extend(body)
        for memo in (self._gauge_prefixes, self._sum_prefixes, self._histogram_attributes):
            memo.end_encoding()
        return self._fields.write(parts)

    def _resource(self, resource: Resource) -> bytes:
        entry = self._resources.get(id(resource))
        if entry is None or entry[0] is not resource:
            self._resources.clear()  # the resource changes rarely (once, when the lookup ends)
            encoded = length_delimited(1, encode_attributes(resource.attributes, 1))
            entry = self._resources[id(resource)] = (resource, encoded)
        return entry[1]

    def _scope_metrics(self, scope: InstrumentationScope | None, metrics: Sequence[Metric]) -> list[bytes]:
        """One ScopeMetrics field of ResourceMetrics (field 2), as parts to join."""
        body = [self._scope(scope)]
        for metric in metrics:
            body.extend(self._metric(metric))
        if scope is not None and scope.schema_url:
            body.append(length_delimited(3, scope.schema_url.encode()))
        return [field_header(2, sum(map(len, body))), *body]

    def _scope(self, scope: InstrumentationScope | None) -> bytes:
        entry = self._scopes.get(id(scope))
        if entry is None or entry[0] is not scope:
            self._scopes.clear()
            body = b""
            if scope is not None:
                body = b"".join(
                    (
                        length_delimited(1, scope.name.encode()) if scope.name else b"",
                        length_delimited(2, scope.version.encode()) if scope.version else b"",
                        encode_attributes(scope.attributes, 3),
                    )
                )
            entry = self._scopes[id(scope)] = (scope, length_delimited(1, body))
        return entry[1]

    def _metric(self, metric: Metric) -> list[bytes]:
        """One Metric field of ScopeMetrics (field 2), as parts to join."""
        header = self._metric_header(metric.name, metric.description or "", metric.unit or "")
        data = metric.data
        if isinstance(data, Gauge):
            frame = MetricFrame(header, GAUGE_FIELD, b"")
        elif isinstance(data, Sum):
            trailer = b"\x10" + varint(data.aggregation_temporality)
            frame = MetricFrame(header, SUM_FIELD, trailer + b"\x18\x01" if data.is_monotonic else trailer)
        elif isinstance(data, ExponentialHistogram):
            trailer = b"\x10" + varint(data.aggregation_temporality)
            frame = MetricFrame(header, EXPONENTIAL_HISTOGRAM_FIELD, trailer)
            return self._framed(frame, self._histogram_points(data.data_points))
        else:
            _logger.warning("unsupported data type %s", type(data).__name__)
            return self._framed(MetricFrame(header, 0, b""), [])
        points = data.data_points
        blocks = read_blocks(points) if type(points) is PointBlocks else None
        if blocks is None:
            return self._framed(frame, self._number_points(points, frame.field == GAUGE_FIELD))
        if not blocks.keys:
            return self._framed(frame, [])
        layout = self._layouts.get(metric.name)
        if layout is None or not layout.fits(frame, blocks):
            if len(self._layouts) >= 4096:  # bounded, though instruments are few
                self._layouts.clear()
            prefixes = self._gauge_prefixes if frame.field == GAUGE_FIELD else self._sum_prefixes
            layout = self._layouts[metric.name] = lay_out(frame, blocks, prefixes.one)
        return [self._fields.add(layout, blocks)]

    @staticmethod
    def _framed(frame: MetricFrame, points: list[bytes]) -> list[bytes]:
        if not points:  # the SDK sets a metric's data while adding its first point
            return [length_delimited(2, frame.header)]
        return [frame.around(b"".join(points))]

    def _metric_header(self, name: str, description: str, unit: str) -> bytes:
        key = (name, description, unit)
        header = self._metric_headers.get(key)
        if header is None:
            if len(self._metric_headers) >= 4096:  # bounded, though instruments are few
                self._metric_headers.clear()
            header = self._metric_headers[key] = b"".join(
                length_delimited(field, text.encode())
                for field, text in ((1, name), (2, description), (3, unit))
                if text
            )
        return header

    def _number_points(self, data_points: Sequence[Any], gauge: bool) -> list[bytes]:
        """Each point encoded in turn: the SDK's points, or blocks that cannot be laid out."""
        if type(data_points) is not PointBlocks:
            return [self._sdk_number_point(point, gauge) for point in data_points]
        memo = self._gauge_prefixes if gauge else self._sum_prefixes
        encoded: list[bytes] = []
        for block, (start, end) in zip(data_points.pairs_of_blocks, data_points.intervals):
            if not len(block):
                continue
            times = TIME + pack_fixed64(end)
            if not gauge:
                times = START_TIME + pack_fixed64(start) + times
            if type(block) is PointColumns:
                attributes, values = block.attributes, block.values
            else:
                attributes, values = zip(*block)
            encoded.extend(chain.from_iterable(zip(memo.each(attributes), point_tails(times, values))))
        return encoded

    def _sdk_number_point(self, point: NumberDataPoint, gauge: bool) -> bytes:
        times = TIME + pack_fixed64(point.time_unix_nano)
        if not gauge:
            times = START_TIME + pack_fixed64(point.start_time_unix_nano) + times
        prefix = number_prefix(point.attributes or {}, len(times))
        if point.exemplars:
            raise ValueError("exemplars are not encoded (the monitor records none)")
        return prefix + times + number_value(point.value)

    def _histogram_points(self, data_points: Sequence[Any]) -> list[bytes]:
        if type(data_points) is not PointBlocks:
            return [sdk_histogram_point(point) for point in data_points]
        points: list[tuple[Mapping[str, Any], tuple[int, int], HistogramDelta]] = []
        for block, interval in zip(data_points.pairs_of_blocks, data_points.intervals):
            for attributes, value in block:
                if not isinstance(value, HistogramDelta):
                    raise TypeError(f"a histogram point holds {type(value).__name__}")
                points.append((attributes, interval, value))
        # The bucket counts of all the metric's points in one pass (each point has hundreds).
        packed = packed_varints_each([value.bucket_counts for _, _, value in points])
        attributes_of = self._histogram_attributes.one
        return [
            histogram_point(attributes_of(attributes), start, end, value, counts)
            for (attributes, (start, end), value), counts in zip(points, packed)
        ]
