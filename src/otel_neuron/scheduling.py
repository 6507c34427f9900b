"""A fixed-rate schedule: each period's k-th collection is due at start + k * period, so nothing drifts."""

from __future__ import annotations

import math
from collections.abc import Iterable

# Groups due within this many seconds of each other are collected together, in one report.
COINCIDENCE_S = 0.002


class FixedRateSchedule:
    def __init__(self, periods: Iterable[float], start: float) -> None:
        self._start = start
        self._count = {period: 1 for period in periods}
        self.last_due_at = start  # when the collection that pop_due last returned was due

    def next_due(self) -> float:
        return min(self._due(period) for period in self._count)

    def pop_due(self, now: float) -> list[float]:
        """The periods due at `now`; each is advanced past `now` (a missed tick is skipped, not bunched)."""
        due = [period for period in self._count if self._due(period) <= now + COINCIDENCE_S]
        slots = []
        for period in due:
            self._count[period] += math.floor((now + COINCIDENCE_S - self._due(period)) / period)
            slots.append(self._due(period))  # the latest of its times not after now
            self._count[period] += 1
        if slots:
            self.last_due_at = max(slots)
        return due

    def _due(self, period: float) -> float:
        return self._start + self._count[period] * period
