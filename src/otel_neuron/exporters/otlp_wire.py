"""Protobuf's wire format as OTLP's metrics messages need it: tags, varints, fixed-size fields,
length-delimited fields, attributes (KeyValue/AnyValue, as the SDK's _encode_attributes makes them)
and exponential histograms' Buckets."""

from __future__ import annotations

import logging
import struct
from collections.abc import Mapping, Sequence
from typing import Any

import numpy

_logger = logging.getLogger(__name__)

# Wire types (protobuf encoding): VARINT 0, I64 1, LEN 2.
_VARINT, _I64, _LEN = 0, 1, 2
_INT64_RANGE = range(-(1 << 63), 1 << 63)

pack_double = struct.Struct("<d").pack
pack_fixed64 = struct.Struct("<Q").pack
pack_sfixed64 = struct.Struct("<q").pack


def _tag(field: int, wire_type: int) -> bytes:
    return varint(field << 3 | wire_type)


def varint(value: int) -> bytes:
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


def zigzag(value: int) -> int:
    """A sint32/sint64's varint value."""
    return value << 1 if value >= 0 else (-value << 1) - 1


def length_delimited(field: int, payload: bytes) -> bytes:
    return _tag(field, _LEN) + varint(len(payload)) + payload


def field_header(field: int, length: int) -> bytes:
    """The tag and length of a length-delimited field whose `length` bytes follow separately."""
    return _tag(field, _LEN) + varint(length)


# Tags of the fields written per point.
DATA_POINT = _tag(1, _LEN)  # Gauge.data_points / Sum.data_points / ExponentialHistogram.data_points
START_TIME = _tag(2, _I64)
TIME = _tag(3, _I64)
AS_DOUBLE = _tag(4, _I64)
AS_INT = _tag(6, _I64)
TIMES_SIZE = 9  # a fixed64 field: its tag and 8 bytes
VALUE_SIZE = 9  # as_double or as_int: a tag and 8 bytes


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
        return length_delimited(1, value.encode())
    if isinstance(value, int):
        if value not in _INT64_RANGE:
            raise _Unencodable(f"{value} is out of range for int64")
        return b"\x18" + varint(value)
    if isinstance(value, float):
        return b"\x21" + pack_double(value)
    if isinstance(value, bytes):
        return length_delimited(7, value)
    if isinstance(value, Sequence):
        return length_delimited(5, b"".join(length_delimited(1, _any_value(item)) for item in value))
    if isinstance(value, Mapping):
        pairs = b"".join(length_delimited(1, _key_value(str(k), v)) for k, v in value.items())
        return length_delimited(6, pairs)
    raise _Unencodable(f"Invalid type {type(value)} of value {value}")


def _key_value(key: str, value: Any) -> bytes:
    # The SDK always sets KeyValue.value, so an empty AnyValue (None) is still written.
    return (length_delimited(1, key.encode()) if key else b"") + length_delimited(2, _any_value(value))


def encode_attributes(attributes: Mapping[str, Any] | None, field: int) -> bytes:
    """Each attribute as a KeyValue in repeated field `field` of the enclosing message."""
    if not attributes:
        return b""
    encoded = []
    for key, value in attributes.items():
        try:
            encoded.append(length_delimited(field, _key_value(key, value)))
        except Exception as error:  # noqa: BLE001 - as the SDK: the key is left out, the rest kept
            _logger.error("Failed to encode key %s: %s", key, error)
    return b"".join(encoded)


def buckets_message(offset: int, packed_counts: bytes) -> bytes:
    """A Buckets message: offset (sint32) and bucket_counts (packed uint64)."""
    return (b"\x08" + varint(zigzag(offset)) if offset else b"") + length_delimited(2, packed_counts)


def packed_varints_each(counts: Sequence[Any]) -> list[bytes]:
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
