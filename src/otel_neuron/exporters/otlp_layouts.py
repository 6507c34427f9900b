"""A number metric's encoding, kept from one request to the next but for its times and values.

From one collection to the next a metric's points are nearly always the same attribute sets in the
same order (groups build them once: an `AttributeColumn`, `FrozenAttributes`); only their times
and values move, and those are fixed-size fields. So each metric's whole Metric message is kept
(`MetricLayout`) with room for them, made again only when its attribute sets, value types or
header change. A request then costs a read of each metric's blocks and, once the request is
joined, four whole-array writes for all its metrics (`FixedFields`): start times, times, doubles,
integers. Blocks whose attribute sets can change (a plain dict) are not laid out; their metric is
encoded point by point (see otlp_encoding).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from itertools import chain
from typing import Any, NamedTuple

import numpy
from numpy.lib.stride_tricks import as_strided

from otel_neuron.exporters.otlp_points import value_kind
from otel_neuron.exporters.otlp_wire import (
    AS_DOUBLE,
    AS_INT,
    START_TIME,
    TIME,
    field_header,
)
from otel_neuron.groups.base import AttributeColumn, FrozenAttributes, Point, PointColumns
from otel_neuron.producer import PointBlocks

_DOUBLE, _INT = "<f8", "<i8"  # value kinds (see otlp_points.value_kind)
_ROOM = bytes(8)  # where a fixed64 or double goes
GAUGE_FIELD, SUM_FIELD, EXPONENTIAL_HISTOGRAM_FIELD = 5, 7, 10  # Metric.gauge, .sum, .exponential_histogram


class MetricBlocks(NamedTuple):
    """One metric's non-empty blocks, read for a request: what decides its layout, and what fills it."""

    keys: list[Any]  # each block's attribute sets: an AttributeColumn or a FrozenAttributes
    identity: list[int]  # the keys' ids
    counts: list[int]  # each block's points
    kind: str  # of every value: "<f8" (as_double) or "<i8" (as_int)
    values: Any  # every point's, in order: a list or a numpy array
    starts: Sequence[int]  # each block's interval
    ends: Sequence[int]


def read_blocks(points: PointBlocks) -> MetricBlocks | None:
    """The metric's blocks, read in whole-list passes; None when they cannot be laid out: attribute
    sets that can change (plain dicts), several points in a block that is not a column (a list of
    pairs, from running totals), or values of more than one kind or of another type."""
    blocks: list[Any] = points.pairs_of_blocks
    intervals = points.intervals
    if not all(map(len, blocks)):  # a group without points for the metric adds an empty block
        present = [index for index, block in enumerate(blocks) if len(block)]
        blocks, intervals = [blocks[i] for i in present], [intervals[i] for i in present]
    if not blocks:
        return MetricBlocks([], [], [], _DOUBLE, (), (), ())
    read = _columns(blocks) if set(map(type, blocks)) == {PointColumns} else _single_points(blocks)
    if read is None:
        return None
    keys, block_values, counts = read
    found = _flat_values(block_values)
    if found is None:
        return None
    kind, values = found
    starts, ends = zip(*intervals)
    return MetricBlocks(keys, list(map(id, keys)), counts, kind, values, starts, ends)


# A metric's non-empty blocks as read: their keys, their values (in one or more sequences), their points.
_Read = tuple[list[Any], list[Sequence[Any]], list[int]]


def _columns(blocks: list[PointColumns]) -> _Read | None:
    keys = [block.attributes for block in blocks]
    if not set(map(type, keys)) <= {AttributeColumn}:
        return None
    values = [block.values for block in blocks]
    return keys, values, list(map(len, values))


def _single_points(blocks: list[Sequence[Point]]) -> _Read | None:
    """Blocks of one point each (a group's health points); their values in one sequence."""
    if set(map(len, blocks)) != {1}:
        return None
    keys, values = zip(*[block[0] for block in blocks])
    if set(map(type, keys)) != {FrozenAttributes}:
        return None
    return list(keys), [values], [1] * len(keys)


def _flat_values(block_values: list[Sequence[Any]]) -> tuple[str, Any] | None:
    """(kind, every value in order), all of one kind; None otherwise."""
    if all(type(values) is not numpy.ndarray for values in block_values):
        values = list(chain.from_iterable(block_values))
        kind = value_kind(values)
        return None if kind is None else (kind, values)
    kinds = set(map(value_kind, block_values))
    if len(kinds) != 1 or None in kinds:
        return None
    (kind,) = kinds
    assert kind is not None
    return kind, numpy.concatenate([numpy.asarray(values, dtype=kind) for values in block_values])


class MetricFrame(NamedTuple):
    """A Metric message but for its points: its header (name, description, unit), its data's field
    (Gauge 5, Sum 7) and what follows the points in it (a Sum's temporality and monotonicity)."""

    header: bytes
    field: int
    trailer: bytes

    def around(self, points: bytes) -> bytes:
        """The Metric field of ScopeMetrics (field 2) with `points`."""
        data_length = len(points) + len(self.trailer)
        data_header = field_header(self.field, data_length)
        metric_length = len(self.header) + len(data_header) + data_length
        return b"".join((field_header(2, metric_length), self.header, data_header, points, self.trailer))


class MetricLayout(NamedTuple):
    """A number metric's Metric message with zeros where its points' times and values go."""

    frame: MetricFrame
    keys: list[Any]  # kept, so no id in `identity` is another object's while the layout lives
    identity: list[int]
    counts: list[int]
    kind: str
    repeats: numpy.ndarray[Any, Any]  # counts, for numpy.repeat
    message: bytes
    tail_at: numpy.ndarray[
        Any, Any
    ]  # where each point's tail (times and value, tags included) is in `message`

    def fits(self, frame: MetricFrame, blocks: MetricBlocks) -> bool:
        return (
            blocks.identity == self.identity
            and blocks.counts == self.counts
            and blocks.kind == self.kind
            and frame == self.frame
        )


def lay_out(
    frame: MetricFrame,
    blocks: MetricBlocks,
    prefix_of: Callable[[Mapping[str, Any]], bytes],
) -> MetricLayout:
    """The metric's layout; `prefix_of(attributes)` gives a point's bytes before its times
    (otlp_points.number_prefix)."""
    gauge = frame.field == GAUGE_FIELD
    times = TIME + _ROOM if gauge else START_TIME + _ROOM + TIME + _ROOM
    tail = times + (AS_DOUBLE if blocks.kind == _DOUBLE else AS_INT) + _ROOM
    parts: list[bytes] = []
    prefix_sizes: list[int] = []
    for key in blocks.keys:
        for attributes in key if type(key) is AttributeColumn else (key,):
            prefix = prefix_of(attributes)
            parts += (prefix, tail)
            prefix_sizes.append(len(prefix))
    tail_size = len(tail)
    message = frame.around(b"".join(parts))
    before = len(message) - sum(prefix_sizes) - tail_size * len(prefix_sizes) - len(frame.trailer)
    tails = before + numpy.cumsum(numpy.array(prefix_sizes, dtype=numpy.int64) + tail_size) - tail_size
    return MetricLayout(
        frame=frame,
        keys=blocks.keys,
        identity=blocks.identity,
        counts=blocks.counts,
        kind=blocks.kind,
        repeats=numpy.array(blocks.counts, dtype=numpy.int64),
        message=message,
        tail_at=tails,
    )


# A point's tail: its times and value, each with its tag (a gauge has no start time).
_SUM_TAIL = numpy.dtype([("start_tag", "u1"), ("start", "<u8"), ("end_tag", "u1"), ("end", "<u8"),
                         ("value_tag", "u1"), ("value", "<u8")])  # fmt: skip
_GAUGE_TAIL = numpy.dtype([("end_tag", "u1"), ("end", "<u8"), ("value_tag", "u1"), ("value", "<u8")])


class _Tails(NamedTuple):
    """The tails of the points of a request's Sum (or Gauge) layouts: where they are relative to
    their layout's message, and what they hold that does not change from request to request."""

    layouts: list[int]  # the layouts' places in the request's list of layouts
    tail_at: numpy.ndarray[Any, Any]  # in their messages, in request order
    points: numpy.ndarray[Any, Any]  # per layout, for numpy.repeat
    repeats: numpy.ndarray[Any, Any]  # points per block, for numpy.repeat
    value_tags: numpy.ndarray[Any, Any]  # per point: as_double's or as_int's

    @classmethod
    def of(cls, layouts: list[MetricLayout], chosen: list[int]) -> _Tails:
        def joined(parts: list[Any], dtype: Any) -> numpy.ndarray[Any, Any]:
            return numpy.concatenate(parts) if parts else numpy.zeros(0, dtype=dtype)

        tags = [(AS_DOUBLE if layouts[i].kind == _DOUBLE else AS_INT)[0] for i in chosen]
        points = numpy.array([len(layouts[i].tail_at) for i in chosen], dtype=numpy.int64)
        return cls(
            layouts=chosen,
            tail_at=joined([layouts[i].tail_at for i in chosen], numpy.int64),
            points=points,
            repeats=joined([layouts[i].repeats for i in chosen], numpy.int64),
            value_tags=numpy.repeat(numpy.array(tags, dtype=numpy.uint8), points),
        )

    def write(
        self, request: numpy.ndarray[Any, Any], bases: list[int], blocks: list[MetricBlocks], sums: bool
    ) -> None:
        """Each point's tail, from the blocks of these layouts, at its place in `request`."""
        if not self.layouts:
            return
        chosen = [blocks[i] for i in self.layouts]
        rows = numpy.empty(len(self.tail_at), dtype=_SUM_TAIL if sums else _GAUGE_TAIL)
        if sums:
            rows["start_tag"] = START_TIME[0]
            rows["start"] = _times([each.starts for each in chosen], self.repeats)
        rows["end_tag"] = TIME[0]
        rows["end"] = _times([each.ends for each in chosen], self.repeats)
        rows["value_tag"] = self.value_tags
        rows["value"] = numpy.concatenate(
            [numpy.asarray(each.values, dtype=each.kind).view(numpy.uint64) for each in chosen]
        )
        at = self.tail_at + numpy.repeat(numpy.array([bases[i] for i in self.layouts]), self.points)
        width = rows.dtype.itemsize
        # Every run of `width` bytes of the request as a row of a (writable) view: a tail is one row.
        windows = as_strided(request, shape=(len(request) - width + 1, width), strides=(1, 1))
        windows[at] = rows.view(numpy.uint8).reshape(-1, width)


class FixedFields:
    """The times and values of every laid-out metric of a request, written once it is joined.

    Where they go is kept too: the next request with the same layouts writes all its points' tails
    in two whole-array passes (Sums, Gauges), with no work per metric but reading its values.
    """

    def __init__(self) -> None:
        self._messages: list[bytes] = []  # this request's: each layout's message, in request order
        self._layouts: list[MetricLayout] = []
        self._blocks: list[MetricBlocks] = []
        self._kept: tuple[list[MetricLayout], list[int], _Tails, _Tails] | None = None  # the last request's

    def begin(self) -> None:
        """A new request: what an earlier one left (one whose encoding failed half-way) is dropped."""
        self._messages, self._layouts, self._blocks = [], [], []

    def add(self, layout: MetricLayout, blocks: MetricBlocks) -> bytes:
        """The metric's part of the request (its layout's message); its fields are written by `write`."""
        self._messages.append(layout.message)
        self._layouts.append(layout)
        self._blocks.append(blocks)
        return layout.message

    def write(self, parts: Sequence[bytes]) -> bytes:
        """`parts` joined, with the times and values written where the layouts left room."""
        layouts, blocks = self._layouts, self._blocks
        self.begin()  # what this request holds goes with it
        if not layouts:
            return b"".join(parts)
        sums, gauges = self._tails(layouts)
        bases = self._bases(layouts, parts)
        joined = bytearray().join(parts)
        request = numpy.frombuffer(joined, dtype=numpy.uint8)
        sums.write(request, bases, blocks, sums=True)
        gauges.write(request, bases, blocks, sums=False)
        return bytes(joined)

    def _tails(self, layouts: list[MetricLayout]) -> tuple[_Tails, _Tails]:
        identity = list(map(id, layouts))
        if self._kept is None or self._kept[1] != identity:
            every = range(len(layouts))
            sums = [i for i in every if layouts[i].frame.field == SUM_FIELD]
            gauges = [i for i in every if layouts[i].frame.field != SUM_FIELD]
            self._kept = (layouts, identity, _Tails.of(layouts, sums), _Tails.of(layouts, gauges))
        return self._kept[2], self._kept[3]

    @staticmethod
    def _bases(layouts: list[MetricLayout], parts: Sequence[bytes]) -> list[int]:
        """Where each layout's message is in the joined request (they are in `parts` in order)."""
        messages = iter([layout.message for layout in layouts])
        wanted: bytes | None = next(messages)
        bases = []
        position = 0
        for part in parts:
            if part is wanted:
                bases.append(position)
                wanted = next(messages, None)
            position += len(part)
        return bases


def _times(per_block: list[Sequence[int]], repeats: numpy.ndarray[Any, Any]) -> numpy.ndarray[Any, Any]:
    """Each block's time, once per point."""
    return numpy.repeat(numpy.fromiter(chain.from_iterable(per_block), dtype=numpy.uint64), repeats)
