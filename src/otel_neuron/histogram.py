"""Base-2 exponential histograms (OTLP's layout): bucket index, per-period deltas, percentiles.

Pure functions, no I/O. A value v > 0 falls in bucket ``index(v)`` which covers
``(base**i, base**(i+1)]`` with ``base = 2 ** (2 ** -scale)``; values <= 0 are counted in the
zero bucket. At the runtime protocol's fixed scale 6 a bucket is 1.09 % wide, so a percentile
estimated at a bucket's geometric midpoint is within 0.55 % of the exact value.

Percentiles follow the nearest-rank definition: ``p(q)`` is the value of rank ``ceil(q/100 * n)``
(1-based) among the n sorted values; ``p0`` is the minimum and ``p100`` the maximum, both exact.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Mapping, Sequence
from itertools import accumulate
from typing import Any

import numpy

from otel_neuron.groups.base import BucketCounts, HistogramDelta, bucket_list

SCALE = 6
PERCENTILES = (0, 1, 25, 50, 75, 99, 100)

_LN2 = math.log(2.0)


def bucket_index(value: float, scale: int = SCALE) -> int:
    """The index of the bucket holding ``value`` (> 0): base**i < value <= base**(i+1)."""
    mantissa, exponent = math.frexp(value)  # value = mantissa * 2**exponent, 0.5 <= mantissa < 1
    if mantissa == 0.5:  # an exact power of two is the upper bound of its bucket
        return ((exponent - 1) << scale) - 1
    return math.ceil(math.log2(value) * (1 << scale)) - 1


def bucket_bounds(index: int, scale: int = SCALE) -> tuple[float, float]:
    """(lower, upper] bounds of bucket ``index``."""
    factor = _LN2 / (1 << scale)
    return math.exp(index * factor), math.exp((index + 1) * factor)


def bounds_from_buckets(
    offset: int, buckets: BucketCounts, scale: int, zero_count: int, floor: float, ceiling: float
) -> tuple[float, float]:
    """(min, max) of the values in the buckets when their exact ones are unknown: the outer bounds of
    the first and last non-empty buckets, within [floor, ceiling] (the values' lifetime min and max)."""
    first = next((i for i, count in enumerate(buckets) if count), None)
    last = next((i for i in range(len(buckets) - 1, -1, -1) if buckets[i]), None)
    low = 0.0 if zero_count or first is None else max(bucket_bounds(offset + first, scale)[0], floor)
    high = 0.0 if last is None else min(bucket_bounds(offset + last, scale)[1], ceiling)
    return low, max(high, low)


def dense_buckets(counts: Mapping[int, int]) -> tuple[int, list[int]]:
    """(offset, dense counts) of a sparse {index: count} mapping; (0, []) when empty."""
    if not counts:
        return 0, []
    low, high = min(counts), max(counts)
    dense = [0] * (high - low + 1)
    for index, bucket_count in counts.items():
        dense[index - low] += bucket_count
    return low, dense


Buckets = numpy.ndarray[Any, numpy.dtype[numpy.int64]]


def as_buckets(counts: BucketCounts) -> Buckets:
    """Bucket counts as an int64 array (a protobuf repeated field converts in C); counts past 2**63
    (uint64 allows them) as an array of Python ints, slower but exact."""
    try:
        return numpy.asarray(counts, dtype=numpy.int64)
    except OverflowError:
        return numpy.asarray(list(counts), dtype=object)


def subtract_buckets(
    offset: int, counts: BucketCounts, previous_offset: int, previous_counts: BucketCounts
) -> tuple[int, Buckets] | None:
    """Bucket-wise ``counts - previous_counts``, trimmed of zero ends, as a read-only array; None if
    any bucket went down.

    numpy, and an array kept as the result: a warm histogram has hundreds of buckets, two per
    runtime and period, and a Python int per bucket would cost more than all the rest of the math.
    """
    now, before = as_buckets(counts), as_buckets(previous_counts)
    if before.size == 0:
        previous_offset = offset
    if offset == previous_offset and now.size == before.size:  # the usual period: nothing to align
        low, differences = offset, now - before
    else:
        low = min(offset, previous_offset)
        width = max(offset + now.size, previous_offset + before.size) - low
        differences = numpy.zeros(width, numpy.result_type(now, before))
        differences[offset - low : offset - low + now.size] = now
        differences[previous_offset - low : previous_offset - low + before.size] -= before
    changed = numpy.flatnonzero(differences)
    if changed.size == 0:
        return 0, _NO_BUCKETS
    first, last = int(changed[0]), int(changed[-1])
    window = differences[first : last + 1]
    if window.min() < 0:
        return None
    window.flags.writeable = False  # a HistogramDelta's counts: immutable like the rest of it
    return low + first, window


_NO_BUCKETS: Buckets = numpy.zeros(0, numpy.int64)
_NO_BUCKETS.flags.writeable = False


def holds_values(histogram: HistogramDelta) -> bool:
    """True when the buckets hold at least one value. A runtime counts a value before it fills the
    value's bucket, so a snapshot taken between the two has a count and no bucket for it: that
    period has no percentile, and the value is in the next period's buckets."""
    return histogram.count > 0 and (histogram.zero_count > 0 or any(histogram.bucket_counts))


def percentile(histogram: HistogramDelta, q: float) -> float:
    """The nearest-rank q-th percentile (0 <= q <= 100) estimated from the histogram.

    p0 and p100 are the exact minimum and maximum; other percentiles are the geometric midpoint of
    the bucket holding the rank, clamped to [min, max]. Raises ValueError for an empty histogram.
    """
    (value,) = percentiles(histogram, (q,)).values()
    return value


def percentiles(histogram: HistogramDelta, points: Sequence[float] = PERCENTILES) -> dict[str, float]:
    """{"p0": ..., "p1": ..., ...} as the guide's latency objects hold them (see `percentile`): one
    running sum over the buckets, and a binary search per rank (Python ints: exact past int64 too;
    a period's hundred-odd buckets take less than one numpy call's dispatch)."""
    counts = histogram.bucket_counts
    # A slice copies a runtime's repeated field into a list in one call, not item by item.
    cumulative = list(accumulate(counts.tolist() if type(counts) is numpy.ndarray else counts[:]))
    zero_count = histogram.zero_count
    total = zero_count + (cumulative[-1] if cumulative else 0)
    if total <= 0 or histogram.count <= 0:
        raise ValueError("percentile of an empty histogram")
    low, high, size = histogram.min, histogram.max, len(cumulative)
    midpoints = _midpoints_of(histogram.scale)
    offset = histogram.offset
    result = {}
    for key, q, fraction in _keyed(points):
        if q <= 0:
            result[key] = low
        elif q >= 100:
            result[key] = high
        else:
            # The nearest rank past the zero bucket's, in the first bucket whose running count reaches it.
            rank = max(1, math.ceil(fraction * total - 1e-9)) - zero_count
            if rank <= 0:  # a value of the zero bucket
                result[key] = min(max(0.0, low), high)
                continue
            position = bisect_left(cumulative, rank)
            if position >= size:
                result[key] = high
                continue
            result[key] = min(max(midpoints[offset + position], low), high)
    return result


def _keyed(points: Sequence[float]) -> tuple[tuple[str, float, float], ...]:
    """("p50", 50, 0.5) for each percentile asked for: the guide's set made once, others' each time."""
    if points is PERCENTILES:
        return _GUIDE_KEYED
    return tuple((f"p{q:g}", q, q / 100.0) for q in points)


_GUIDE_KEYED = tuple((f"p{q:g}", q, q / 100.0) for q in PERCENTILES)


class _Midpoints(dict[int, float]):
    """The geometric midpoint of each bucket of one scale, computed on first use (as the instrumentor
    computes it: sqrt(lower * upper)). A few hundred buckets are in use at a time."""

    def __init__(self, scale: int) -> None:
        super().__init__()
        self._scale = scale

    def __missing__(self, index: int) -> float:
        if len(self) > 100_000:  # latencies spread over more octaves than any runtime has
            self.clear()
        lower, upper = bucket_bounds(index, self._scale)
        midpoint = self[index] = math.sqrt(lower * upper)
        return midpoint


_MIDPOINTS: dict[int, _Midpoints] = {}


def _midpoints_of(scale: int) -> _Midpoints:
    found = _MIDPOINTS.get(scale)
    if found is None:
        found = _MIDPOINTS[scale] = _Midpoints(scale)
    return found


def merge_histograms(first: HistogramDelta | None, second: HistogramDelta | None) -> HistogramDelta | None:
    """The histogram of both periods' values, at the coarser scale of the two (None: no values)."""
    if first is None:
        return second
    if second is None:
        return first
    scale = min(first.scale, second.scale)
    buckets: dict[int, int] = {}
    for histogram in (first, second):
        shift = histogram.scale - scale
        for position, bucket_count in enumerate(bucket_list(histogram.bucket_counts)):
            if bucket_count:
                index = (histogram.offset + position) >> shift
                buckets[index] = buckets.get(index, 0) + bucket_count
    if buckets:
        offset = min(buckets)
        counts = tuple(buckets.get(index, 0) for index in range(offset, max(buckets) + 1))
    else:
        offset, counts = 0, ()
    return HistogramDelta(
        scale=scale,
        zero_count=first.zero_count + second.zero_count,
        offset=offset,
        bucket_counts=counts,
        count=first.count + second.count,
        sum=first.sum + second.sum,
        min=min(first.min, second.min),
        max=max(first.max, second.max),
    )
