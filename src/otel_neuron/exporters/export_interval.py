"""OTEL_METRIC_EXPORT_INTERVAL: how often a push exporter sends, as a subset of the collections.

The monitor collects on its own fixed-rate schedule and every exporter is offered each collection.
A push exporter (OTLP) may send less often: `ExportInterval` says which collections to send so that
sends are `interval` apart on average, each at the collection nearest its due time.

otel-neuron's default, when the variable is unset, is to send every collection, not the
specification's 60 s: the configuration's period is the resolution the user asked for, and what the
OTLP consumer sees is then what the JSON report says, collection for collection (as before the
variable was honoured). A longer interval loses nothing with cumulative temporality (the default):
each send carries the running totals. With delta temporality every collection is sent whatever the
interval: skipping one would drop its increases (the pipeline's delta points cover one collection
each, as the report's counts do).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping

VARIABLE = "OTEL_METRIC_EXPORT_INTERVAL"


def export_interval_millis(environ: Mapping[str, str] | None = None) -> float | None:
    """OTEL_METRIC_EXPORT_INTERVAL in milliseconds; None when unset or empty (every collection).
    Raises ValueError, naming the variable and value, for anything but a non-negative number."""
    env = os.environ if environ is None else environ
    text = env.get(VARIABLE, "").strip()
    if not text:
        return None
    try:
        millis = float(text)
    except ValueError:
        millis = math.nan
    if not (math.isfinite(millis) and millis >= 0):
        raise ValueError(f'{VARIABLE}: "{text}" is not a number of milliseconds (like 60000)')
    return millis


class ExportInterval:
    """Which collections to send for one send per `interval_s` (0: every one).

    The first collection is sent; then the sends are due on a grid `interval_s` apart, and a
    collection is sent when its due time is nearer than the next collection probably is (half the
    spacing of the last two offers), so the send rate is exactly 1/interval however the two periods
    divide. After a gap longer than the interval (a stalled host) the grid restarts from the send.
    """

    def __init__(self, interval_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        if interval_s < 0 or not math.isfinite(interval_s):
            raise ValueError(f"the export interval must be a finite number >= 0, not {interval_s}")
        self._interval = interval_s
        self._clock = clock
        self._due: float | None = None
        self._last_offer = 0.0

    def offer(self) -> bool:
        """True when the collection offered now is to be sent."""
        now = self._clock()
        spacing, self._last_offer = now - self._last_offer, now
        if self._due is None:
            self._due = now + self._interval
            return True
        if now < self._due - spacing / 2:
            return False
        self._due += self._interval
        if self._due <= now:
            self._due = now + self._interval
        return True
