"""A deadline shared by several steps (the instance-metadata lookup's requests)."""

from __future__ import annotations

import time
from collections.abc import Callable


class Deadline:
    """The monotonic instant by which everything must be done; `clock` is injectable for tests."""

    def __init__(self, budget_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.at = clock() + budget_s

    def remaining(self) -> float:
        """Seconds left; TimeoutError once there are none."""
        left = self.at - self._clock()
        if left <= 0:
            raise TimeoutError("deadline passed")
        return left

    def passed(self) -> bool:
        return self._clock() >= self.at
