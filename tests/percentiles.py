"""The exact percentiles of raw values: the reference the monitor's histogram estimates are held to."""

from __future__ import annotations

import math
from collections.abc import Sequence


def exact_percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank percentile `q` (0..100) of `values`."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("percentile of no values")
    if q <= 0:
        return ordered[0]
    rank = max(1, math.ceil(q / 100.0 * len(ordered) - 1e-9))
    return ordered[min(rank, len(ordered)) - 1]
