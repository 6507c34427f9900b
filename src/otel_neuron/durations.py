"""Durations as the guide writes them: "500ms", "1s", "2m", "1h"."""

from __future__ import annotations

import json
import math
import re

_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")


def parse_duration(text: str) -> float:
    """Seconds in `text`; ValueError for zero, negative, unknown units or garbage."""
    match = _DURATION.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f'{_quoted(text)} is not a duration like "500ms", "2s", "1m", "1h"')
    seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds <= 0:
        raise ValueError(f"{_quoted(text)} must be longer than zero")
    if not math.isfinite(seconds):
        raise ValueError(f"{_quoted(text)} is too long")
    return seconds


def _quoted(text: object) -> str:
    """As the value appears in the JSON file, like the schema's messages; cut short, so that the
    error stays a readable line whatever the file holds."""
    quoted = json.dumps(text) if isinstance(text, str) else repr(text)
    return quoted if len(quoted) <= 40 else quoted[:37] + "..."


def format_duration(seconds: float) -> str:
    """The shortest exact spelling of `seconds` in the guide's units."""
    for unit, size in (("h", 3600.0), ("m", 60.0), ("s", 1.0)):
        if seconds >= size and (seconds / size).is_integer():
            return f"{int(seconds / size)}{unit}"
    milliseconds = seconds * 1000
    return f"{milliseconds:g}ms" if milliseconds >= 1 else f"{seconds:g}s"
