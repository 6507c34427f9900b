"""Running totals per series, for exporters that want cumulative temporality.

A group's counters and histograms are per-period deltas; a cumulative exporter needs each series'
total since it began. A series is its instrument and attribute values. Its total is kept while
some group reports it, and forgotten once none has for the retention time (an application that
exited, a model unloaded, a pod gone), so the map holds the series of the recent past however many
come and go. A series that returns after it was forgotten begins again: its start time is the
start of the period it reappears in, a reset every consumer can see.

A block whose attribute sets are an AttributeColumn (what groups build once and reuse every period)
keeps its series in column order (`_ColumnSeries`): the next period adds its values position by
position, with no key made or looked up, and its totals go out as a column again, so the OTLP
encoder reuses that column's layout as it does for the per-period values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy

from otel_neuron.groups.base import (
    AttributeColumn,
    FrozenAttributes,
    HistogramDelta,
    Point,
    PointColumns,
    PointValue,
)
from otel_neuron.histogram import merge_histograms

# A series' running total is kept while it has been reported within this time, and at least for
# RETENTION_PERIODS of the longest period: a runtime that fails for a few periods keeps its totals.
TOTALS_RETENTION_NS = 60 * 1_000_000_000
RETENTION_PERIODS = 3

_SeriesKey = tuple[str, frozenset[tuple[str, Any]]]


class _RunningTotal:
    """One series' cumulative value, when it began and when it was last reported (ns)."""

    __slots__ = ("last_seen", "start", "total")

    def __init__(self, total: PointValue, start: int, last_seen: int) -> None:
        self.total = total
        self.start = start
        self.last_seen = last_seen


@dataclass(slots=True)
class _ColumnSeries:
    """The series of one instrument's AttributeColumn, in its order, all begun at `start`."""

    column: AttributeColumn  # kept, so the id it is found by is not another column's meanwhile
    series: list[_RunningTotal]
    start: int
    last_seen: int


# Columns kept at most (a group that built a new column every period would otherwise fill the map
# until the retention sweep); past it the map starts again, the series themselves being kept apart.
MAX_COLUMNS = 4096


class RunningTotals:
    """Each series' total so far, when it began and when it was last reported."""

    def __init__(self) -> None:
        self._totals: dict[_SeriesKey, _RunningTotal] = {}
        self._columns: dict[tuple[str, int], _ColumnSeries] = {}
        # Per instrument: id(FrozenAttributes) -> (the object, its key in _totals).
        self._series_keys: dict[str, dict[int, tuple[Any, _SeriesKey]]] = {}
        self._retention_ns = TOTALS_RETENTION_NS
        self._next_sweep_ns: int | None = None

    def keep_for_periods_of(self, period_ns: int) -> None:
        """A group reports every `period_ns`: keep totals for RETENTION_PERIODS of its periods."""
        self._retention_ns = max(self._retention_ns, RETENTION_PERIODS * period_ns)

    def add(
        self, name: str, pairs: Sequence[Point], interval: tuple[int, int]
    ) -> list[tuple[int, Sequence[Point]]]:
        """Each point with its series' total so far, in blocks by the time each total began."""
        if type(pairs) is PointColumns:
            column = pairs.attributes
            if type(column) is AttributeColumn:
                return self._add_column(name, pairs, column, interval)
        return self._add_points(name, pairs, interval)

    def _add_column(
        self, name: str, points: PointColumns, column: AttributeColumn, interval: tuple[int, int]
    ) -> list[tuple[int, Sequence[Point]]]:
        kept = self._columns.get((name, id(column)))
        if kept is None or kept.column is not column:
            series: list[_RunningTotal] = []
            blocks = self._add_points(name, points, interval, series)
            if len(blocks) == 1 and len(series) == len(column):  # one start: kept as a column
                if len(self._columns) >= MAX_COLUMNS:
                    self._columns.clear()
                self._columns[name, id(column)] = _ColumnSeries(column, series, blocks[0][0], interval[1])
                return [(blocks[0][0], PointColumns(column, [each.total for each in series]))]
            return blocks
        values = points.values
        end = interval[1]
        totals: list[PointValue] = []
        for each, value in zip(kept.series, values.tolist() if type(values) is numpy.ndarray else values):
            each.total = _add(each.total, value)
            each.last_seen = end
            totals.append(each.total)
        kept.last_seen = end
        return [(kept.start, PointColumns(column, totals))]

    def _add_points(
        self,
        name: str,
        pairs: Sequence[Point],
        interval: tuple[int, int],
        series_found: list[_RunningTotal] | None = None,
    ) -> list[tuple[int, Sequence[Point]]]:
        """Each point with its series' total so far, in blocks by the time each total began; the
        series, in order, added to `series_found` when given.

        A series is its instrument and attribute values; a new one (or one that returns after it
        was forgotten) begins at the start of the period it first appears in, so a consumer sees a
        reset with a new start time rather than a counter that went down. The key is kept per
        FrozenAttributes object (which cannot change) instead of being made again for every point
        of every collection; the objects are kept with their keys (so an id cannot be another
        object's meanwhile), and the map is emptied when it holds far more than the instrument's
        points, so attribute sets made anew each period cannot make it grow."""
        keys = self._series_keys.get(name)
        if keys is None or len(keys) > 4 * len(pairs) + 1024:
            keys = self._series_keys[name] = {}
        totals = self._totals
        begin, end = interval
        result: list[Point] = []
        starts: list[int] = []
        for attributes, value in pairs:
            entry = keys.get(id(attributes))
            if entry is not None and entry[0] is attributes:
                key = entry[1]
            else:
                key = (name, frozenset(attributes.items()))
                if type(attributes) is FrozenAttributes:
                    keys[id(attributes)] = (attributes, key)
            series = totals.get(key)
            if series is None:
                series = totals[key] = _RunningTotal(value, begin, end)
            else:
                series.total = _add(series.total, value)
                series.last_seen = end
            result.append((attributes, series.total))
            starts.append(series.start)
            if series_found is not None:
                series_found.append(series)
        if not starts or starts.count(starts[0]) == len(starts):
            return [(starts[0] if starts else begin, result)]
        blocks: dict[int, list[Point]] = {}
        for since, point in zip(starts, result):
            blocks.setdefault(since, []).append(point)
        return [(since, points) for since, points in blocks.items()]

    def forget_absent(self, now: int) -> None:
        """Drop the totals of series no group has reported for the retention time (an application
        that exited, a model unloaded, a pod gone), so the map holds only the series of the
        recent past however many come and go. Checked every half retention, not every tick."""
        if self._next_sweep_ns is None:
            self._next_sweep_ns = now + self._retention_ns // 2
        if now < self._next_sweep_ns:
            return
        oldest = now - self._retention_ns
        absent = [key for key, series in self._totals.items() if series.last_seen < oldest]
        for key in absent:
            del self._totals[key]
        # A column is as recent as its series: one not used since is dropped with them.
        unused = [key for key, kept in self._columns.items() if kept.last_seen < oldest]
        for column_key in unused:
            del self._columns[column_key]
        self._next_sweep_ns = now + self._retention_ns // 2

    def __len__(self) -> int:
        return len(self._totals)


def _add(total: PointValue, delta: PointValue) -> PointValue:
    if isinstance(total, HistogramDelta) and isinstance(delta, HistogramDelta):
        if total.scale == delta.scale:
            return _add_same_scale(total, delta)
        merged = merge_histograms(total, delta)
        assert merged is not None  # both are histograms
        return merged
    return total + delta  # type: ignore[operator]


def _add_same_scale(total: HistogramDelta, delta: HistogramDelta) -> HistogramDelta:
    """`merge_histograms(total, delta)` for the usual case of a running total: the same scale, so the
    buckets add up index by index in whole-array passes (hundreds of buckets a histogram, every
    collection, for cumulative exporters). The result is laid out as merge_histograms lays it out:
    from the first to the last non-empty bucket, in a new read-only array (the total handed over
    with an earlier MetricsData may still be on its way)."""
    total_length, delta_length = len(total.bucket_counts), len(delta.bucket_counts)
    start = delta.offset - total.offset
    edges = total.bucket_counts
    if total_length and start >= 0 and start + delta_length <= total_length and edges[0] and edges[-1]:
        # The period's buckets fall within the total's, whose first and last are not empty: the sum
        # is laid out as the total is.
        offset = total.offset
        counts = numpy.array(total.bucket_counts, dtype=numpy.int64)
        counts[start : start + delta_length] += numpy.asarray(delta.bucket_counts, dtype=numpy.int64)
    else:
        offset, counts = _trimmed_sum(total, delta)
    counts.flags.writeable = False
    return HistogramDelta(
        scale=total.scale,
        zero_count=total.zero_count + delta.zero_count,
        offset=offset,
        bucket_counts=counts,
        count=total.count + delta.count,
        sum=total.sum + delta.sum,
        min=min(total.min, delta.min),
        max=max(total.max, delta.max),
    )


def _trimmed_sum(total: HistogramDelta, delta: HistogramDelta) -> tuple[int, numpy.ndarray[Any, Any]]:
    """(offset, counts) of both histograms' buckets added up, from the first to the last non-empty."""
    low = min(total.offset, delta.offset)
    high = max(total.offset + len(total.bucket_counts), delta.offset + len(delta.bucket_counts))
    counts = numpy.zeros(max(high - low, 0), dtype=numpy.int64)
    for part in (total, delta):
        if len(part.bucket_counts):
            start = part.offset - low
            part_counts = numpy.asarray(part.bucket_counts, dtype=numpy.int64)
            counts[start : start + len(part_counts)] += part_counts
    filled = numpy.flatnonzero(counts)
    if not len(filled):
        return 0, counts[:0]
    return low + int(filled[0]), counts[filled[0] : filled[-1] + 1]
