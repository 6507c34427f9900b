"""Carry a neuron-monitor latency summary (count + p0..p100) as an exponential histogram.

AWS's neuron-monitor reports, per period, the number of executions and up to seven latency
percentiles (p0 p1 p25 p50 p75 p99 p100; real inf2 captures give p0 p50 p99 p100), not the
latencies. otel-neuron's latency
instrument is a histogram (OTLP's base-2 exponential layout), so the bridge synthesizes one:

- the n = count latencies x_1 <= ... <= x_n are placed so that each given percentile is the
  value at its nearest rank: x_1 = p0, x_ceil(q*n) = p_q for q in 1, 25, 50, 75, 99 %, x_n =
  p100, and the values between two such ranks are spread linearly;
- those n values are bucketed exactly (from the inverse of that piecewise-linear function,
  never materialised, so a period with a million executions costs the same as one with ten);
- `min` = p0 and `max` = p100 exactly; `sum` is the exact sum of the x_r.

The nearest-rank estimator of `otel_neuron.histogram.percentile` therefore lands in the bucket
holding each given percentile: within half a bucket (0.55 % at scale 6) of it, and p0 and p100
exactly (min/max). With fewer than 100 executions several percentiles share a rank, as they do
in the data neuron-monitor summarised. Percentiles between the given ones (say p90) are linear
interpolations: the honest reading of a seven-point summary.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping

from otel_neuron.groups.base import HistogramDelta
from otel_neuron.histogram import SCALE, bucket_bounds, bucket_index
from otel_neuron.semconv import PERCENTILE_FRACTIONS as _FRACTIONS

DEFAULT_SCALE = SCALE
MAX_BUCKETS = 4096


def _upper_bound(index: int, scale: int) -> float:
    try:
        return bucket_bounds(index, scale)[1]
    except OverflowError:
        return math.inf


class _RankedValues:
    """The n latencies as a piecewise-linear function of their rank, through the given percentiles.

    Percentile q sits at rank ceil(q * n) (1-based, nearest-rank), p0 at rank 1 and p100 at
    rank n; the values between two such ranks are spread linearly.
    """

    def __init__(self, percentiles: Mapping[str, float], n: int) -> None:
        points = sorted(
            (_FRACTIONS[name], value) for name, value in percentiles.items() if name in _FRACTIONS
        )
        if not points:
            raise ValueError("no percentiles")
        knots: dict[int, float] = {}
        floor = 0.0
        for fraction, value in points:
            # Percentiles must not decrease with the fraction; repair garbage rather than fail.
            floor = max(floor, value, 0.0)
            rank = min(n, max(1, math.ceil(fraction * n - 1e-9)))
            if rank == 1 and 1 in knots:
                continue  # the minimum keeps rank 1 when a small n folds p1 onto it
            knots[rank] = floor
        # Without p0 or p100 the nearest given value stands for the missing extreme.
        knots.setdefault(1, knots[min(knots)])
        knots.setdefault(n, knots[max(knots)])
        self.knots = sorted(knots.items())
        self.n = n

    @property
    def low(self) -> float:
        return self.knots[0][1]

    @property
    def high(self) -> float:
        return self.knots[-1][1]

    def _segments(self) -> Iterator[tuple[int, float, int, float]]:
        for (rank_a, value_a), (rank_b, value_b) in zip(self.knots, self.knots[1:], strict=False):
            yield rank_a, value_a, rank_b, value_b

    def value(self, rank: int) -> float:
        for rank_a, value_a, rank_b, value_b in self._segments():
            if rank <= rank_b:
                return value_a + (value_b - value_a) * (rank - rank_a) / (rank_b - rank_a)
        return self.high

    def at_most(self, value: float) -> int:
        """How many of the n values are <= value."""
        if value < self.low:
            return 0
        best = 1
        for rank_a, value_a, rank_b, value_b in self._segments():
            if value_b <= value:
                best = max(best, rank_b)
            elif value_a <= value:
                step = (value - value_a) / (value_b - value_a) * (rank_b - rank_a)
                best = max(best, rank_a + math.floor(step + 1e-9))
        return min(best, self.n)

    def total(self) -> float:
        """The exact sum of the n values."""
        result = self.low
        for rank_a, value_a, rank_b, value_b in self._segments():
            steps = rank_b - rank_a
            result += steps * value_a + (value_b - value_a) * (steps + 1) / 2.0
        return result


def histogram_from_percentiles(
    percentiles: Mapping[str, float], count: int, scale: int = DEFAULT_SCALE
) -> HistogramDelta | None:
    """The histogram of `count` latencies whose percentiles are `percentiles` (None if empty)."""
    usable = {
        name: value for name, value in percentiles.items() if name in _FRACTIONS and math.isfinite(value)
    }
    if count <= 0 or not usable:
        return None
    n = count
    ranked = _RankedValues(usable, n)
    low, high = ranked.low, ranked.high
    zero_count = ranked.at_most(0.0)
    sum_ = min(max(ranked.total(), low * n), high * n)
    if zero_count >= n:
        return HistogramDelta(scale, n, 0, (), n, 0.0, low, high)
    smallest_positive = ranked.value(zero_count + 1)
    if smallest_positive <= 0.0:  # rounding at the end of a stretch of zeros; step past it
        smallest_positive = min(value for _, value in ranked.knots if value > 0.0)
    while True:
        first = bucket_index(smallest_positive, scale)
        last = bucket_index(high, scale)
        if last - first < MAX_BUCKETS or scale <= -10:
            break
        scale -= 1
    counts = []
    previous = zero_count
    for index in range(first, last + 1):
        cumulative = n if index == last else ranked.at_most(_upper_bound(index, scale))
        counts.append(max(cumulative - previous, 0))
        previous = max(previous, cumulative)
    return HistogramDelta(
        scale=scale,
        zero_count=zero_count,
        offset=first,
        bucket_counts=tuple(counts),
        count=n,
        sum=sum_,
        min=low,
        max=high,
    )
