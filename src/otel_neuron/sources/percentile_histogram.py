"""Carry a neuron-monitor latency summary (count + p0..p100) as an exponential histogram.

AWS's neuron-monitor reports, per period, the number of executions and seven latency
percentiles (p0 p1 p25 p50 p75 p99 p100), not the latencies. otel-neuron's latency
instrument is a histogram (OTLP's base-2 exponential layout), so the bridge synthesizes one:

- the n = count latencies are taken to be x_r = Q(r / n), r = 1 .. n, where Q is the
  piecewise-linear quantile function through the given (fraction, value) points
  (0, p0), (0.01, p1), (0.25, p25), (0.5, p50), (0.75, p75), (0.99, p99), (1, p100);
- those n values are bucketed exactly (computed from Q's inverse, never materialised, so a
  period with a million executions costs the same as one with ten);
- `min` = p0 and `max` = p100 exactly; `sum` is the sum of the x_r (n times the mean of Q for
  large n).

The nearest-rank estimator of `otel_neuron.histogram.percentile` (rank ceil(q * n)) therefore
lands in the bucket holding the given percentile: within half a bucket (0.55 % at scale 6) of
it, and p0 and p100 exactly (min/max). Percentiles between the given ones (say p90) are
linear interpolations, which is the honest reading of a seven-point summary.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from otel_neuron.groups.base import HistogramDelta
from otel_neuron.histogram import SCALE, bucket_bounds, bucket_index

DEFAULT_SCALE = SCALE
MAX_BUCKETS = 4096

_FRACTIONS = {"p0": 0.0, "p1": 0.01, "p25": 0.25, "p50": 0.50, "p75": 0.75, "p99": 0.99, "p100": 1.0}


def _upper_bound(index: int, scale: int) -> float:
    try:
        return bucket_bounds(index, scale)[1]
    except OverflowError:
        return math.inf


class _Quantiles:
    """The piecewise-linear quantile function through the given percentile points."""

    def __init__(self, percentiles: Mapping[str, float]) -> None:
        points = sorted(
            (_FRACTIONS[name], value) for name, value in percentiles.items() if name in _FRACTIONS
        )
        if not points:
            raise ValueError("no percentiles")
        # Percentiles must not decrease with the fraction; repair garbage rather than fail.
        monotone: list[tuple[float, float]] = []
        for fraction, value in points:
            value = max(value, 0.0)
            if monotone and value < monotone[-1][1]:
                value = monotone[-1][1]
            monotone.append((fraction, value))
        # Stretch to cover [0, 1]: without p0 the smallest given value stands for it, and so on.
        if monotone[0][0] > 0.0:
            monotone.insert(0, (0.0, monotone[0][1]))
        if monotone[-1][0] < 1.0:
            monotone.append((1.0, monotone[-1][1]))
        self.points = monotone

    @property
    def low(self) -> float:
        return self.points[0][1]

    @property
    def high(self) -> float:
        return self.points[-1][1]

    def value(self, fraction: float) -> float:
        for (q0, v0), (q1, v1) in zip(self.points, self.points[1:], strict=False):
            if fraction <= q1:
                return v0 if q1 == q0 else v0 + (v1 - v0) * (fraction - q0) / (q1 - q0)
        return self.high

    def fraction_at_most(self, value: float) -> float:
        """The largest fraction q with Q(q) <= value (right-continuous inverse); -1 below p0."""
        if value < self.low:
            return -1.0
        best = 0.0
        for (q0, v0), (q1, v1) in zip(self.points, self.points[1:], strict=False):
            if v1 <= value:
                best = max(best, q1)
            elif v0 <= value:
                best = max(best, q0 + (q1 - q0) * (value - v0) / (v1 - v0))
        return best

    def mean(self) -> float:
        return sum(
            (q1 - q0) * (v0 + v1) / 2.0
            for (q0, v0), (q1, v1) in zip(self.points, self.points[1:], strict=False)
        )


def histogram_from_percentiles(
    percentiles: Mapping[str, float], count: int, scale: int = DEFAULT_SCALE
) -> HistogramDelta | None:
    """The histogram of `count` latencies whose percentiles are `percentiles` (None if empty)."""
    usable = {
        name: value for name, value in percentiles.items() if name in _FRACTIONS and math.isfinite(value)
    }
    if count <= 0 or not usable:
        return None
    quantiles = _Quantiles(usable)
    n = count
    low, high = quantiles.low, quantiles.high

    def at_most(value: float) -> int:
        """How many of the x_r = Q(r / n) are <= value."""
        fraction = quantiles.fraction_at_most(value)
        if fraction < 0.0:
            return 0
        return min(n, math.floor(fraction * n + 1e-9))

    zero_count = at_most(0.0) if low <= 0.0 else 0
    if n <= 1000:
        sum_ = math.fsum(quantiles.value(r / n) for r in range(1, n + 1))
    else:
        sum_ = quantiles.mean() * n
    sum_ = min(max(sum_, low * n), high * n)
    if zero_count >= n:
        return HistogramDelta(scale, n, 0, (), n, 0.0, low, high)

    smallest_positive = quantiles.value((zero_count + 1) / n)
    if smallest_positive <= 0.0:  # rounding at the end of a stretch of zeros; step past it
        smallest_positive = min(value for _, value in quantiles.points if value > 0.0)
    while True:
        first = bucket_index(smallest_positive, scale)
        last = bucket_index(high, scale)
        if last - first < MAX_BUCKETS or scale <= -10:
            break
        scale -= 1
    counts = []
    previous = zero_count
    for index in range(first, last + 1):
        upper = _upper_bound(index, scale)
        cumulative = n if index == last else at_most(upper)
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


def merge_histograms(first: HistogramDelta | None, second: HistogramDelta | None) -> HistogramDelta | None:
    """The histogram of both periods' values (the coarser scale of the two)."""
    if first is None:
        return second
    if second is None:
        return first
    scale = min(first.scale, second.scale)
    buckets: dict[int, int] = {}
    for histogram in (first, second):
        shift = histogram.scale - scale
        for position, bucket_count in enumerate(histogram.bucket_counts):
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
