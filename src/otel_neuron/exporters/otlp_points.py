"""OTLP data points in wire format, one by one: number points (what a layout, otlp_layouts, does not
cover), exponential histogram points, and the SDK's own point objects. Attribute encodings are kept
by the attribute objects' ids (`AttributeMemo`), with the objects, and dropped when they outgrow
what a collection uses (see `otlp_encoding` for the whole design).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy
from opentelemetry.sdk.metrics.export import (
    ExponentialHistogramDataPoint,
)

from otel_neuron.exporters.otlp_wire import (
    AS_DOUBLE,
    AS_INT,
    DATA_POINT,
    START_TIME,
    TIME,
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
from otel_neuron.groups.base import FrozenAttributes, HistogramDelta

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
