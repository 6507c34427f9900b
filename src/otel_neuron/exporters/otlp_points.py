"""OTLP data points in wire format, and what is kept of them from one request to the next.

Number points of a block whose attribute sets cannot change have a layout made once
(`ColumnLayout`: the points encoded but for their times and values); `ColumnTails` writes the
times and values of all such blocks of a request in a few whole-array passes. Attribute encodings
and layouts are kept by the attribute objects' ids (`AttributeMemo`, `BlockLayouts`), with the
objects, and dropped when they outgrow what a collection uses. Histogram points are written one
by one (see `otlp_encoding` for the whole design).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from itertools import chain
from typing import Any, NamedTuple

import numpy
from numpy.lib.stride_tricks import as_strided
from opentelemetry.sdk.metrics.export import (
    ExponentialHistogramDataPoint,
)

from otel_neuron.exporters.otlp_wire import (
    AS_DOUBLE,
    AS_INT,
    DATA_POINT,
    START_TIME,
    TIME,
    TIMES_SIZE,
    VALUE_SIZE,
    buckets_message,
    encode_attributes,
    length_delimited,
    pack_double,
    pack_fixed64,
    pack_sfixed64,
    packed_varints_each,
    varint,
    zigzag,
)
from otel_neuron.groups.base import AttributeColumn, FrozenAttributes, HistogramDelta

# --- number points --------------------------------------------------------------------------


def number_prefix(attributes: Mapping[str, Any], times_size: int) -> bytes:
    """A NumberDataPoint's tag, length and attributes: all of it but its times and value."""
    encoded = encode_attributes(attributes, 7)
    return DATA_POINT + varint(len(encoded) + times_size + VALUE_SIZE) + encoded


def number_value(value: Any) -> bytes:
    """as_int for an int (bool included), as the SDK decides; as_double for anything else."""
    return AS_INT + pack_sfixed64(value) if isinstance(value, int) else AS_DOUBLE + pack_double(value)


_DOUBLES = frozenset((float, numpy.float64))  # value types encoded as_double (not int subclasses)
_INTS = frozenset((int, bool))


def value_kind(values: Sequence[Any]) -> str | None:
    """The numpy type every value is encoded from: "<f8" (all as_double), "<i8" (all as_int), or None
    (mixed, or a type to check value by value)."""
    if type(values) is numpy.ndarray:
        kind = values.dtype.kind
        return "<f8" if kind == "f" else "<i8" if kind in "ib" else None
    kinds = set(map(type, values))
    return "<f8" if kinds <= _DOUBLES else "<i8" if kinds <= _INTS else None


def point_tails(times: bytes, values: Sequence[Any]) -> Iterable[bytes]:
    """Each point's `times` and value with its tag: one bytes object per point."""
    if type(values) is numpy.ndarray:
        values = values.tolist()  # Python numbers, as the SDK's points hold
    kind = value_kind(values)
    if kind == "<f8":
        return map((times + AS_DOUBLE).__add__, map(pack_double, values))
    if kind == "<i8":
        return map((times + AS_INT).__add__, map(pack_sfixed64, values))
    return [times + number_value(value) for value in values]


class _ColumnLayout(NamedTuple):
    """A block's points encoded but for their times and values: each point's prefix (tag, length,
    attributes) followed by room for its tail (times, value tag, value), and where each tail goes.
    Read-only, made once per AttributeColumn (kept on it with `view`) or set of FrozenAttributes."""

    template: numpy.ndarray[Any, Any]  # uint8
    tails: numpy.ndarray[Any, Any]  # int64 offsets into template


def _layout(column: Sequence[Mapping[str, Any]], times_size: int) -> _ColumnLayout:
    tail = times_size + VALUE_SIZE
    prefixes = [number_prefix(attributes, times_size) for attributes in column]
    template = numpy.frombuffer(b"".join(prefix + bytes(tail) for prefix in prefixes), dtype=numpy.uint8)
    ends = numpy.cumsum([len(prefix) + tail for prefix in prefixes], dtype=numpy.int64)
    tails = ends - tail
    tails.flags.writeable = False
    return _ColumnLayout(template, tails)  # frombuffer over bytes: already read-only


def gauge_layout(column: AttributeColumn) -> _ColumnLayout:
    return _layout(column, TIMES_SIZE)


def sum_layout(column: AttributeColumn) -> _ColumnLayout:
    return _layout(column, 2 * TIMES_SIZE)


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


class ColumnTails:
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
        group.heads.append(times + (AS_DOUBLE if kind == "<f8" else AS_INT))
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


class AttributeMemo:
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


class BlockLayouts:
    """Layouts of blocks that are not AttributeColumns but whose attribute sets are all FrozenAttributes
    (lists of points, a cumulative counter's running totals), by the ids of their attribute sets.

    Kept as AttributeMemo keeps its encodings: with the objects, and emptied when it holds the
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


# start and time (fields 2, 3), count (4), sum (5, optional), zero_count (7); then min and max (12, 13,
# optional): a histogram point's fixed-size fields, written as the SDK sets them (the optional ones
# always present).
_HISTOGRAM_FIXED = struct.Struct("<BQBQBQBdBQ").pack
_HISTOGRAM_RANGE = struct.Struct("<BdBd").pack


def histogram_point(attributes: bytes, start: int, end: int, value: HistogramDelta, counts: bytes) -> bytes:
    """An ExponentialHistogramDataPoint as the SDK encodes the producer's: `attributes` encoded in field
    1, `counts` the positive buckets' packed varints (b"": none, and no positive field), no negative
    buckets."""
    body = b"".join(
        (
            attributes,
            _HISTOGRAM_FIXED(
                0x11, start, 0x19, end, 0x21, value.count, 0x29, value.sum, 0x39, value.zero_count
            ),
            b"\x30" + varint(zigzag(value.scale)) if value.scale else b"",  # sint32, field 6
            length_delimited(8, buckets_message(value.offset, counts)) if counts else b"",
            _HISTOGRAM_RANGE(0x61, value.min, 0x69, value.max),
        )
    )
    return DATA_POINT + varint(len(body)) + body


def sdk_histogram_point(point: ExponentialHistogramDataPoint) -> bytes:
    if point.exemplars:
        raise ValueError("exemplars are not encoded (the monitor records none)")
    positive, negative = packed_varints_each([point.positive.bucket_counts, point.negative.bucket_counts])
    return length_delimited(
        1,
        b"".join(
            (
                encode_attributes(point.attributes, 1),
                START_TIME + pack_fixed64(point.start_time_unix_nano),
                TIME + pack_fixed64(point.time_unix_nano),
                b"\x21" + pack_fixed64(point.count),
                b"\x29" + pack_double(point.sum),
                b"\x30" + varint(zigzag(point.scale)) if point.scale else b"",
                b"\x39" + pack_fixed64(point.zero_count),
                length_delimited(8, buckets_message(point.positive.offset, positive)) if positive else b"",
                length_delimited(9, buckets_message(point.negative.offset, negative)) if negative else b"",
                b"\x50" + varint(point.flags) if point.flags else b"",
                b"\x61" + pack_double(point.min),
                b"\x69" + pack_double(point.max),
            )
        ),
    )
