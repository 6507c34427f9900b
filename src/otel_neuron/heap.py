"""Keep glibc's malloc from handing each period's big buffers back to the kernel.

A monitor that exports over the network builds a few buffers of about a megabyte every period
(at trn2 scale, an OTLP request and gRPC's copy of it). With glibc's default thresholds such
blocks are mapped and unmapped, or trimmed off the top of the heap, so every period faults some
500 fresh pages back in and has the kernel zero them: more CPU than encoding the request. Raising
the mmap threshold to 4 MiB and the trim threshold to 8 MiB keeps them in the heap, reused from
one period to the next; the process then stays at its peak (a few MB more between periods)
instead of dipping after each one.

A no-op where the C library has no `mallopt` (musl, macOS).
"""

from __future__ import annotations

import ctypes
import logging

_logger = logging.getLogger(__name__)

# glibc's malloc.h.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 4 * 1024 * 1024
TRIM_THRESHOLD = 8 * 1024 * 1024


def keep_period_buffers() -> bool:
    """For a monitor process with network exporters (the CLI calls it once); True when applied."""
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library the interpreter runs on
    except (OSError, AttributeError):
        return False
    applied = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
    _logger.debug("malloc thresholds: mmap %d, trim %d bytes (%s)", MMAP_THRESHOLD, TRIM_THRESHOLD, applied)
    return applied
