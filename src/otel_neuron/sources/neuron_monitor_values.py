"""Tolerant readers of the values in a neuron-monitor report: a malformed value reads as absent.

A value is malformed when it has the wrong type (a boolean or a string where a number goes, a group
that is not an object) or is out of range for its field:

- counts, amounts and ids: integers (or integral floats) from 0 to MAX_INTEGER;
- indexes (runtime, device, NeuronCore, the keys of `neuroncores_in_use`): 0 to MAX_INDEX;
- seconds (periods, latency percentiles): finite, 0 to MAX_SECONDS;
- percentages (utilization, vCPU usage): finite, 0 to 100; other numbers (flops): finite, >= 0
  (an integer stays an integer, as upstream wrote it);
- a device count: 0 to MAX_DEVICES;
- NaN, infinities (JSON's non-standard tokens) and integers past the float range are in no range.

Error messages and instance facts are cut to one line of MAX_MESSAGE characters (`one_line`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from otel_neuron.semconv import PERCENTILES
from otel_neuron.sources.neuron_monitor_types import Memory, Percentiles

# Past these a value is not one neuron-monitor could mean.
MAX_INTEGER = 2**53 - 1  # the largest integer every JSON reader keeps exactly
MAX_INDEX = 2**31 - 1  # a device or NeuronCore index is a 32-bit integer in the runtime's APIs
MAX_SECONDS = 1e9  # about 32 years: no period or latency is longer
MAX_PERCENT = 100.0
MAX_MESSAGE = 300
MAX_DEVICES = 4096  # far more Neuron devices than any host has
MAX_NAME = 64  # a v3d physical NeuronCore's name ("nc_v3.0")


def as_number(value: Any) -> float | None:
    """A finite number; booleans, NaN, infinities and integers past the float range read as absent."""
    if type(value) is float:  # most numbers of a report: one check rather than three
        return value if math.isfinite(value) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer of hundreds of digits
        return None
    return number if math.isfinite(number) else None


def as_bounded(value: Any, high: float) -> float | None:
    number = as_number(value)
    return number if number is not None and 0 <= number <= high else None


def as_integer(value: Any, high: int) -> int | None:
    """An integer from 0 to `high`; floats with an integral value are accepted."""
    if type(value) is int or (isinstance(value, int) and not isinstance(value, bool)):
        return value if 0 <= value <= high else None
    number = as_bounded(value, high)
    if number is None or number != int(number):
        return None
    return int(number)


def as_count(value: Any) -> int | None:
    """A count, an amount of bytes or an id."""
    return as_integer(value, MAX_INTEGER)


def as_index(value: Any) -> int | None:
    return as_integer(value, MAX_INDEX)


def as_seconds(value: Any) -> float | None:
    return as_bounded(value, MAX_SECONDS)


def as_percent(value: Any) -> float | None:
    return as_bounded(value, MAX_PERCENT)


def as_amount(value: Any) -> float | None:
    """A non-negative finite number (flops); an integer within MAX_INTEGER stays one, so it is
    written back as upstream wrote it."""
    if type(value) is int and 0 <= value <= MAX_INTEGER:
        return value
    return as_bounded(value, math.inf)


def as_text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def as_optional_text(value: Any) -> str | None:
    return one_line(value) if isinstance(value, str) else None


def one_line(text: str, limit: int = MAX_MESSAGE) -> str:
    """The first line of `text`, cut to `limit` characters: fit to be a group's error."""
    stripped = text.strip()
    line = stripped.splitlines()[0] if stripped else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


def as_message(value: Any) -> str:
    """An upstream error string, as one line."""
    return one_line(as_text(value))


def as_object(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def period_of(group: Mapping[str, Any]) -> float:
    period = as_seconds(group.get("period"))
    return period if period is not None else 0.0


def index_of_key(key: Any) -> int | None:
    """The index a key such as "3" names: ASCII digits only (int() would also take " 3", "+3", "٣")."""
    if not isinstance(key, str) or not key.isascii() or not key.isdigit() or len(key) > 10:
        return None
    return as_index(int(key))


def counts_of(group: Mapping[str, Any], names: tuple[str, ...] | None = None) -> dict[str, int]:
    result: dict[str, int] = {}
    for name, value in group.items():
        if names is not None and name not in names:
            continue
        if type(value) is int and 0 <= value <= MAX_INTEGER:  # the common case, without a call
            result[name] = value
            continue
        count = as_count(value)
        if count is not None and isinstance(name, str):
            result[name] = count
    return result


def memory_of(value: Any) -> Memory:
    body = as_object(value)
    return Memory(as_count(body.get("host")) or 0, as_count(body.get("neuron_device")) or 0)


def percentiles_of(value: Any) -> Percentiles | None:
    body = as_object(value)
    values = {}
    for name in PERCENTILES:
        seconds = as_seconds(body.get(name))
        if seconds is not None:
            values[name] = seconds
    return Percentiles(values) if values else None
