"""MetricsData -> the bytes of an OTLP ExportMetricsServiceRequest, without a protobuf object per point.

The SDK's `encode_metrics` builds a protobuf message per data point and per attribute, from
NumberDataPoint objects: at trn2 scale (4,600 points a collection) that costs more than the whole
collection. `RequestEncoder.encode` writes the same message in protobuf's wire format directly from
the producer's point blocks (`producer.PointBlocks`: one interval per block, attribute sets that
groups build once), reusing what does not change from one collection to the next:

- a block of number points whose attribute sets cannot change (an `AttributeColumn`, or a sequence
  of `FrozenAttributes`) has a layout, made once: its points encoded but for their times and values
  (`_ColumnLayout.template`) and where those go. The layout is kept on the column (`view`) or by
  the ids of the attribute sets; each collection the block adds its template to the request as it
  is, and the times and values of all such blocks are written in a few whole-array passes once the
  request is joined (`_ColumnTails`): a block costs a few list appends, a point no Python object;
- the other points (one-point blocks, plain dicts, mixed value types) are joined from their
  attribute set's encoding, kept per FrozenAttributes object, and their times and value; histogram
  points are written one by one, with all their bucket counts as varints in one pass;
- the resource, the scope and each metric's name/description/unit are encoded once.
The kept encodings hold the attribute objects they came from (an id is never another object's
meanwhile) and are dropped when they outgrow what a collection uses, so memory stays flat however
a source builds its attribute sets.

The result is the message the SDK's exporter sends for the same MetricsData, field for field (the
unit tests decode both and compare them); it follows the SDK's choices where the protocol leaves
room: a gauge point has no start time, an integer value is `as_int` and anything else `as_double`,
a histogram's sum, min and max are always present, and a metric without points carries no data.
Data points that are not PointBlocks (the SDK's own objects) are encoded point by point, exemplars
excepted (the monitor records none).
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from itertools import chain
from typing import Any, NamedTuple

import numpy
from numpy.lib.stride_tricks import as_strided
from opentelemetry.sdk.metrics.export import (
    ExponentialHistogram,
    ExponentialHistogramDataPoint,
    Gauge,
    Metric,
    MetricsData,
    NumberDataPoint,
    Sum,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from otel_neuron.groups.base import AttributeColumn, FrozenAttributes, HistogramDelta, PointColumns
from otel_neuron.producer import PointBlocks

_logger = logging.getLogger(__name__)

# Wire types (protobuf encoding): VARINT 0, I64 1, LEN 2.
_VARINT, _I64, _LEN = 0, 1, 2
_INT64_RANGE = range(-(1 << 63), 1 << 63)

_pack_double = struct.Struct("<d").pack
_pack_fixed64 = struct.Struct("<Q").pack
_pack_sfixed64 = struct.Struct("<q").pack


def _tag(field: int, wire_type: int) -> bytes:
    return _varint(field << 3 | wire_type)


def _varint(value: int) -> bytes:
    """A non-negative integer (or a negative int64, as its 64-bit two's complement) as a varint."""
    if value < 0:
        value &= (1 << 64) - 1
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _zigzag(value: int) -> int:
    """A sint32/sint64's varint value."""
    return value << 1 if value >= 0 else (-value << 1) - 1


def _length_delimited(field: int, payload: bytes) -> bytes:
    return _tag(field, _LEN) + _varint(len(payload)) + payload


def _header(field: int, length: int) -> bytes:
    """The tag and length of a length-delimited field whose `length` bytes follow separately."""
    return _tag(field, _LEN) + _varint(length)


# Tags of the fields written per point.
_DATA_POINT = _tag(1, _LEN)  # Gauge.data_points / Sum.data_points / ExponentialHistogram.data_points
_START_TIME = _tag(2, _I64)
_TIME = _tag(3, _I64)
_AS_DOUBLE = _tag(4, _I64)
_AS_INT = _tag(6, _I64)
_TIMES_SIZE = 9  # a fixed64 field: its tag and 8 bytes
_VALUE_SIZE = 9  # as_double or as_int: a tag and 8 bytes


# --- attributes: KeyValue and AnyValue, as the SDK's _encode_attributes makes them --------------


class _Unencodable(Exception):
    """A value the SDK's encoder refuses too (it logs the key and leaves it out)."""


def _any_value(value: Any) -> bytes:
    """The AnyValue message of `value`; the oneof field is always written (it has presence)."""
    if value is None:
        return b""
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, str):
        return _length_delimited(1, value.encode())
    if isinstance(value, int):
        if value not in _INT64_RANGE:
            raise _Unencodable(f"{value} is out of range for int64")
        return b"\x18" + _varint(value)
    if isinstance(value, float):
        return b"\x21" + _pack_double(value)
    if isinstance(value, bytes):
        return _length_delimited(7, value)
    if isinstance(value, Sequence):
        return _length_delimited(5, b"".join(_length_delimited(1, _any_value(item)) for item in value))
    if isinstance(value, Mapping):
        pairs = b"".join(_length_delimited(1, _key_value(str(k), v)) for k, v in value.items())
        return _length_delimited(6, pairs)
    raise _Unencodable(f"Invalid type {type(value)} of value {value}")


def _key_value(key: str, value: Any) -> bytes:
    # The SDK always sets KeyValue.value, so an empty AnyValue (None) is still written.
    return (_length_delimited(1, key.encode()) if key else b"") + _length_delimited(2, _any_value(value))


def encode_attributes(attributes: Mapping[str, Any] | None, field: int) -> bytes:
    """Each attribute as a KeyValue in repeated field `field` of the enclosing message."""
    if not attributes:
        return b""
    encoded = []
    for key, value in attributes.items():
        try:
            encoded.append(_length_delimited(field, _key_value(key, value)))
        except Exception as error:  # noqa: BLE001 - as the SDK: the key is left out, the rest kept
            _logger.error("Failed to encode key %s: %s", key, error)
    return b"".join(encoded)


# --- number points --------------------------------------------------------------------------


def _number_prefix(attributes: Mapping[str, Any], times_size: int) -> bytes:
    """A NumberDataPoint's tag, length and attributes: all of it but its times and value."""
    encoded = encode_attributes(attributes, 7)
    return _DATA_POINT + _varint(len(encoded) + times_size + _VALUE_SIZE) + encoded


def _value(value: Any) -> bytes:
    """as_int for an int (bool included), as the SDK decides; as_double for anything else."""
    return _AS_INT + _pack_sfixed64(value) if isinstance(value, int) else _AS_DOUBLE + _pack_double(value)


_DOUBLES = frozenset((float, numpy.float64))  # value types encoded as_double (not int subclasses)
_INTS = frozenset((int, bool))


def _value_kind(values: Sequence[Any]) -> str | None:
    """The numpy type every value is encoded from: "<f8" (all as_double), "<i8" (all as_int), or None
    (mixed, or a type to check value by value)."""
    if type(values) is numpy.ndarray:
        kind = values.dtype.kind
        return "<f8" if kind == "f" else "<i8" if kind in "ib" else None
    kinds = set(map(type, values))
    return "<f8" if kinds <= _DOUBLES else "<i8" if kinds <= _INTS else None


def _tails(times: bytes, values: Sequence[Any]) -> Iterable[bytes]:
    """Each point's `times` and value with its tag: one bytes object per point."""
    if type(values) is numpy.ndarray:
        values = values.tolist()  # Python numbers, as the SDK's points hold
    kind = _value_kind(values)
    if kind == "<f8":
        return map((times + _AS_DOUBLE).__add__, map(_pack_double, values))
    if kind == "<i8":
        return map((times + _AS_INT).__add__, map(_pack_sfixed64, values))
    return [times + _value(value) for value in values]


class _ColumnLayout(NamedTuple):
    """A block's points encoded but for their times and values: each point's prefix (tag, length,
    attributes) followed by room for its tail (times, value tag, value), and where each tail goes.
    Read-only, made once per AttributeColumn (kept on it with `view`) or set of FrozenAttributes."""

    template: numpy.ndarray[Any, Any]  # uint8
    tails: numpy.ndarray[Any, Any]  # int64 offsets into template


def _layout(column: Sequence[Mapping[str, Any]], times_size: int) -> _ColumnLayout:
    tail = times_size + _VALUE_SIZE
    prefixes = [_number_prefix(attributes, times_size) for attributes in column]
    template = numpy.frombuffer(b"".join(prefix + bytes(tail) for prefix in prefixes), dtype=numpy.uint8)
    ends = numpy.cumsum([len(prefix) + tail for prefix in prefixes], dtype=numpy.int64)
    tails = ends - tail
    tails.flags.writeable = False
    return _ColumnLayout(template, tails)  # frombuffer over bytes: already read-only


def _gauge_layout(column: AttributeColumn) -> _ColumnLayout:
    return _layout(column, _TIMES_SIZE)


def _sum_layout(column: AttributeColumn) -> _ColumnLayout:
    return _layout(column, 2 * _TIMES_SIZE)


class _TailGroup:
    """Column blocks whose points' tails have one layout: a gauge's or a sum's times, and values
    as_double or as_int."""

    def __init__(self, dtype: str) -> None:
        self.dtype = dtype  # of the values: "<f8" or "<i8"
        self.order: list[int] = []  # each block's place among the request's templates
        self.tails: list[numpy.ndarray[Any, Any]] = []
        self.heads: list[bytes] = []  # each block's times and value tag
        self.values: list[Sequence[Any]] = []

    def write(self, request: numpy.ndarray[Any, Any], template_starts: numpy.ndarray[Any, Any]) -> None:
        counts = numpy.array([len(tails) for tails in self.tails])
        offsets = numpy.concatenate(self.tails) + numpy.repeat(template_starts[self.order], counts)
        head_size = len(self.heads[0])
        rows = numpy.empty((len(offsets), head_size + 8), dtype=numpy.uint8)
        heads = numpy.frombuffer(b"".join(self.heads), dtype=numpy.uint8).reshape(len(self.heads), head_size)
        rows[:, :head_size] = numpy.repeat(heads, counts, axis=0)
        values = numpy.array(list(chain.from_iterable(self.values)), dtype=self.dtype)
        rows[:, head_size:] = values.view(numpy.uint8).reshape(-1, 8)
        # Every run of len(row) bytes of the request as a row of a (writable) view: each tail is
        # then one row put at its offset (tails never overlap).
        windows = as_strided(request, shape=(len(request) - rows.shape[1] + 1, rows.shape[1]), strides=(1, 1))
        windows[offsets] = rows


class _ColumnTails:
    """The tails (times, value tag, value) of every column point of one request.

    A column block goes into the request as its layout's template, with room for its points'
    tails; once the request is joined, the tails are written in a few whole-array passes for the
    whole request, so a block costs a few list appends rather than numpy calls of its own.
    """

    def __init__(self) -> None:
        self._templates: list[numpy.ndarray[Any, Any]] = []  # in the order they are in the request
        self._groups: dict[tuple[int, str], _TailGroup] = {}

    def add(
        self, layout: _ColumnLayout, times: bytes, values: Sequence[Any], kind: str
    ) -> numpy.ndarray[Any, Any]:
        """The block's part of the request (its template); its tails are written by `write`."""
        group = self._groups.get((len(times), kind))
        if group is None:
            group = self._groups[len(times), kind] = _TailGroup(kind)
        group.order.append(len(self._templates))
        group.tails.append(layout.tails)
        group.heads.append(times + (_AS_DOUBLE if kind == "<f8" else _AS_INT))
        group.values.append(values.tolist() if type(values) is numpy.ndarray else values)
        self._templates.append(layout.template)
        return layout.template

    def write(self, parts: Sequence[Any]) -> bytes:
        """`parts` joined, with the tails written where their templates left room."""
        if not self._templates:
            return b"".join(parts)
        joined = bytearray().join(parts)
        request = numpy.frombuffer(joined, dtype=numpy.uint8)
        starts = self._template_starts(parts)
        for group in self._groups.values():
            group.write(request, starts)
        return bytes(joined)

    def _template_starts(self, parts: Sequence[Any]) -> numpy.ndarray[Any, Any]:
        """Where each template is in the joined request (they are in `parts` in the order added)."""
        starts = []
        templates = iter(self._templates)
        wanted: numpy.ndarray[Any, Any] | None = next(templates)
        position = 0
        for part in parts:
            if part is wanted:
                starts.append(position)
                wanted = next(templates, None)
            position += len(part)
        return numpy.array(starts, dtype=numpy.int64)


class _AttributeMemo:
    """What `encode(attributes)` gave for each FrozenAttributes met, by the object's id.

    The objects are kept alive with their encodings (so an id is never another object's while its
    entry lives); a plain dict can change, so it is encoded each time. The memo is emptied when it
    holds more than twice the lookups of an encoding (plus some room): groups build their attribute
    sets once, so it stays the size of one collection, and one that builds them anew each period
    cannot make it grow without bound.
    """

    def __init__(self, encode: Callable[[Mapping[str, Any]], bytes]) -> None:
        self._encode = encode
        self._encoded: dict[int, bytes] = {}
        self._kept: dict[int, Mapping[str, Any]] = {}
        self._lookups = 0

    def one(self, attributes: Mapping[str, Any]) -> bytes:
        self._lookups += 1
        encoded = self._encoded.get(id(attributes))
        return self._add(attributes) if encoded is None else encoded

    def each(self, attributes: Sequence[Mapping[str, Any]]) -> list[bytes]:
        self._lookups += len(attributes)
        found = list(map(self._encoded.get, map(id, attributes)))
        return [self._add(a) if e is None else e for a, e in zip(attributes, found)]

    def _add(self, attributes: Mapping[str, Any]) -> bytes:
        encoded = self._encode(attributes)
        if type(attributes) is FrozenAttributes:
            self._encoded[id(attributes)] = encoded
            self._kept[id(attributes)] = attributes
        return encoded

    def end_encoding(self) -> None:
        if len(self._encoded) > 2 * self._lookups + 1024:
            self._encoded.clear()
            self._kept.clear()
        self._lookups = 0


class _BlockLayouts:
    """Layouts of blocks that are not AttributeColumns but whose attribute sets are all FrozenAttributes
    (lists of points, a cumulative counter's running totals), by the ids of their attribute sets.

    Kept as _AttributeMemo keeps its encodings: with the objects, and emptied when it holds the
    points of more than twice the lookups of an encoding (plus some room).
    """

    def __init__(self, times_size: int) -> None:
        self._times_size = times_size
        self._layouts: dict[tuple[int, ...], tuple[tuple[Mapping[str, Any], ...], _ColumnLayout]] = {}
        self._points_kept = 0
        self._points_looked_up = 0

    def get(self, attributes: tuple[Mapping[str, Any], ...]) -> _ColumnLayout | None:
        """The block's layout; None when an attribute set can change (a plain dict)."""
        self._points_looked_up += len(attributes)
        key = tuple(map(id, attributes))
        entry = self._layouts.get(key)
        if entry is not None:
            return entry[1]
        if any(type(each) is not FrozenAttributes for each in attributes):
            return None
        layout = _layout(attributes, self._times_size)
        self._layouts[key] = (attributes, layout)
        self._points_kept += len(attributes)
        return layout

    def end_encoding(self) -> None:
        if self._points_kept > 2 * self._points_looked_up + 1024:
            self._layouts.clear()
            self._points_kept = 0
        self._points_looked_up = 0


# --- the encoder ----------------------------------------------------------------------------


class RequestEncoder:
    """Encodes MetricsData as an ExportMetricsServiceRequest's bytes, keeping what repeats.

    One encoder per exporter, used by one thread at a time (the exporter's worker).
    """

    def __init__(self) -> None:
        self._gauge_prefixes = _AttributeMemo(partial(_number_prefix, times_size=_TIMES_SIZE))
        self._sum_prefixes = _AttributeMemo(partial(_number_prefix, times_size=2 * _TIMES_SIZE))
        self._histogram_attributes = _AttributeMemo(partial(encode_attributes, field=1))
        self._gauge_blocks = _BlockLayouts(_TIMES_SIZE)
        self._sum_blocks = _BlockLayouts(2 * _TIMES_SIZE)
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
        parts: list[Any] = []
        tails = _ColumnTails()
        for resource, scopes in by_resource.items():
            body = [self._resource(resource)]
            for scope, metrics in scopes.items():
                body.extend(self._scope_metrics(scope, metrics, tails))
            schema_url = resource.schema_url
            if schema_url:
                body.append(_length_delimited(3, schema_url.encode()))
            parts.append(_header(1, sum(map(len, body))))
            parts.extend(body)
        for memo in (self._gauge_prefixes, self._sum_prefixes, self._histogram_attributes):
            memo.end_encoding()
        self._gauge_blocks.end_encoding()
        self._sum_blocks.end_encoding()
        return tails.write(parts)

    def _resource(self, resource: Resource) -> bytes:
        entry = self._resources.get(id(resource))
        if entry is None or entry[0] is not resource:
            self._resources.clear()  # the resource changes rarely (once, when the lookup ends)
            encoded = _length_delimited(1, encode_attributes(resource.attributes, 1))
            entry = self._resources[id(resource)] = (resource, encoded)
        return entry[1]

    def _scope_metrics(
        self, scope: InstrumentationScope | None, metrics: Sequence[Metric], tails: _ColumnTails
    ) -> list[Any]:
        """One ScopeMetrics field of ResourceMetrics (field 2), as parts to join."""
        body: list[Any] = [self._scope(scope)]
        for metric in metrics:
            body.extend(self._metric(metric, tails))
        if scope is not None and scope.schema_url:
            body.append(_length_delimited(3, scope.schema_url.encode()))
        return [_header(2, sum(map(len, body))), *body]

    def _scope(self, scope: InstrumentationScope | None) -> bytes:
        entry = self._scopes.get(id(scope))
        if entry is None or entry[0] is not scope:
            self._scopes.clear()
            body = b""
            if scope is not None:
                body = b"".join(
                    (
                        _length_delimited(1, scope.name.encode()) if scope.name else b"",
                        _length_delimited(2, scope.version.encode()) if scope.version else b"",
                        encode_attributes(scope.attributes, 3),
                    )
                )
            entry = self._scopes[id(scope)] = (scope, _length_delimited(1, body))
        return entry[1]

    def _metric(self, metric: Metric, tails: _ColumnTails) -> list[Any]:
        """One Metric field of ScopeMetrics (field 2), as parts to join."""
        header = self._metric_header(metric.name, metric.description or "", metric.unit or "")
        data = metric.data
        if isinstance(data, Gauge):
            field, points, trailer = 5, self._number_points(data.data_points, True, tails), b""
        elif isinstance(data, Sum):
            field, points = 7, self._number_points(data.data_points, False, tails)
            trailer = b"\x10" + _varint(data.aggregation_temporality)
            trailer += b"\x18\x01" if data.is_monotonic else b""
        elif isinstance(data, ExponentialHistogram):
            field, points = 10, self._histogram_points(data.data_points)
            trailer = b"\x10" + _varint(data.aggregation_temporality)
        else:
            _logger.warning("unsupported data type %s", type(data).__name__)
            field, points, trailer = 0, [], b""
        if not points:  # the SDK sets a metric's data while adding its first point
            return [_length_delimited(2, header)]
        data_length = sum(map(len, points)) + len(trailer)
        data_header = _header(field, data_length)
        metric_length = len(header) + len(data_header) + data_length
        return [_header(2, metric_length), header, data_header, *points, trailer]

    def _metric_header(self, name: str, description: str, unit: str) -> bytes:
        key = (name, description, unit)
        header = self._metric_headers.get(key)
        if header is None:
            if len(self._metric_headers) >= 4096:  # bounded, though instruments are few
                self._metric_headers.clear()
            header = self._metric_headers[key] = b"".join(
                _length_delimited(field, text.encode())
                for field, text in ((1, name), (2, description), (3, unit))
                if text
            )
        return header

    def _number_points(self, data_points: Sequence[Any], gauge: bool, tails: _ColumnTails) -> list[Any]:
        """The points' encodings, as bytes-like parts to join (a column's template among them)."""
        if type(data_points) is not PointBlocks:
            return [self._sdk_number_point(point, gauge) for point in data_points]
        encoded: list[Any] = []
        memo, blocks = (
            (self._gauge_prefixes, self._gauge_blocks) if gauge else (self._sum_prefixes, self._sum_blocks)
        )
        derive = _gauge_layout if gauge else _sum_layout
        last_interval: tuple[int, int] | None = None
        times = b""
        for block, interval in zip(data_points.pairs_of_blocks, data_points.intervals):
            if interval is not last_interval:  # a group's blocks share one interval object
                last_interval, (start, end) = interval, interval
                times = _TIME + _pack_fixed64(end)
                if not gauge:
                    times = _START_TIME + _pack_fixed64(start) + times
            if type(block) is PointColumns:
                attributes, values = block.attributes, block.values
                if not len(values):
                    continue
                column = attributes if isinstance(attributes, AttributeColumn) else None
                kind = _value_kind(values) if column is not None else None
                if column is not None and kind is not None:
                    encoded.append(tails.add(column.view(derive), times, values, kind))
                    continue
            elif len(block) == 1:
                ((only, value),) = block
                encoded.append(memo.one(only) + times + _value(value))
                continue
            elif not block:
                continue
            else:
                attributes, values = zip(*block)
                kind = _value_kind(values)
                layout = blocks.get(attributes) if kind is not None else None
                if layout is not None and kind is not None:
                    encoded.append(tails.add(layout, times, values, kind))
                    continue
            encoded.append(b"".join(chain.from_iterable(zip(memo.each(attributes), _tails(times, values)))))
        return encoded

    def _sdk_number_point(self, point: NumberDataPoint, gauge: bool) -> bytes:
        times = _TIME + _pack_fixed64(point.time_unix_nano)
        if not gauge:
            times = _START_TIME + _pack_fixed64(point.start_time_unix_nano) + times
        prefix = _number_prefix(point.attributes or {}, len(times))
        if point.exemplars:
            raise ValueError("exemplars are not encoded (the monitor records none)")
        return prefix + times + _value(point.value)

    def _histogram_points(self, data_points: Sequence[Any]) -> list[bytes]:
        if type(data_points) is not PointBlocks:
            return [_sdk_histogram_point(point) for point in data_points]
        points: list[tuple[Mapping[str, Any], tuple[int, int], HistogramDelta]] = []
        for block, interval in zip(data_points.pairs_of_blocks, data_points.intervals):
            for attributes, value in block:
                if not isinstance(value, HistogramDelta):
                    raise TypeError(f"a histogram point holds {type(value).__name__}")
                points.append((attributes, interval, value))
        # The bucket counts of all the metric's points in one pass (each point has hundreds).
        packed = _packed_varints_each([value.bucket_counts for _, _, value in points])
        attributes_of = self._histogram_attributes.one
        return [
            _histogram_point(attributes_of(attributes), start, end, value, counts)
            for (attributes, (start, end), value), counts in zip(points, packed)
        ]


# start and time (fields 2, 3), count (4), sum (5, optional), zero_count (7); then min and max (12, 13,
# optional): a histogram point's fixed-size fields, written as the SDK sets them (the optional ones
# always present).
_HISTOGRAM_FIXED = struct.Struct("<BQBQBQBdBQ").pack
_HISTOGRAM_RANGE = struct.Struct("<BdBd").pack


def _histogram_point(attributes: bytes, start: int, end: int, value: HistogramDelta, counts: bytes) -> bytes:
    """An ExponentialHistogramDataPoint as the SDK encodes the producer's: `attributes` encoded in field
    1, `counts` the positive buckets' packed varints (b"": none, and no positive field), no negative
    buckets."""
    body = b"".join(
        (
            attributes,
            _HISTOGRAM_FIXED(
                0x11, start, 0x19, end, 0x21, value.count, 0x29, value.sum, 0x39, value.zero_count
            ),
            b"\x30" + _varint(_zigzag(value.scale)) if value.scale else b"",  # sint32, field 6
            _length_delimited(8, _buckets(value.offset, counts)) if counts else b"",
            _HISTOGRAM_RANGE(0x61, value.min, 0x69, value.max),
        )
    )
    return _DATA_POINT + _varint(len(body)) + body


def _sdk_histogram_point(point: ExponentialHistogramDataPoint) -> bytes:
    if point.exemplars:
        raise ValueError("exemplars are not encoded (the monitor records none)")
    positive, negative = _packed_varints_each([point.positive.bucket_counts, point.negative.bucket_counts])
    return _length_delimited(
        1,
        b"".join(
            (
                encode_attributes(point.attributes, 1),
                _START_TIME + _pack_fixed64(point.start_time_unix_nano),
                _TIME + _pack_fixed64(point.time_unix_nano),
                b"\x21" + _pack_fixed64(point.count),
                b"\x29" + _pack_double(point.sum),
                b"\x30" + _varint(_zigzag(point.scale)) if point.scale else b"",
                b"\x39" + _pack_fixed64(point.zero_count),
                _length_delimited(8, _buckets(point.positive.offset, positive)) if positive else b"",
                _length_delimited(9, _buckets(point.negative.offset, negative)) if negative else b"",
                b"\x50" + _varint(point.flags) if point.flags else b"",
                b"\x61" + _pack_double(point.min),
                b"\x69" + _pack_double(point.max),
            )
        ),
    )


def _buckets(offset: int, packed_counts: bytes) -> bytes:
    """A Buckets message: offset (sint32) and bucket_counts (packed uint64)."""
    return (b"\x08" + _varint(_zigzag(offset)) if offset else b"") + _length_delimited(2, packed_counts)


def _packed_varints_each(counts: Sequence[Any]) -> list[bytes]:
    """Each sequence of non-negative counts as consecutive varints (b"" for an empty one), all of them
    in whole-array passes."""
    arrays = [numpy.asarray(each, dtype=numpy.uint64) for each in counts]
    if not arrays:
        return []
    values = numpy.concatenate(arrays)
    if not values.size:
        return [b""] * len(arrays)
    encoded, sizes = _varints(values)
    # Byte offsets of each sequence's first and last value.
    value_ends = numpy.cumsum([len(array) for array in arrays])
    byte_ends = numpy.concatenate(([0], numpy.cumsum(sizes)))[value_ends].tolist()
    return [encoded[start:end] for start, end in zip([0, *byte_ends], byte_ends)]


def _varints(values: numpy.ndarray[Any, Any]) -> tuple[bytes, numpy.ndarray[Any, Any]]:
    """uint64 values as consecutive varints, and each one's size in bytes."""
    top = int(values.max())
    if top < 0x80:
        return values.astype(numpy.uint8).tobytes(), numpy.ones(len(values), dtype=numpy.int64)
    width = (top.bit_length() + 6) // 7  # bytes of the largest
    sizes = numpy.ones(len(values), dtype=numpy.int64)
    for group in range(1, width):
        sizes += values >= numpy.uint64(1 << (7 * group))
    shifts = numpy.arange(0, 7 * width, 7, dtype=numpy.uint64)
    groups = (values[:, None] >> shifts) & numpy.uint64(0x7F)  # low 7 bits first, one row per value
    columns = numpy.arange(width)
    groups |= (columns < sizes[:, None] - 1).astype(numpy.uint64) << numpy.uint64(7)  # "more follows"
    return groups.astype(numpy.uint8)[columns < sizes[:, None]].tobytes(), sizes
