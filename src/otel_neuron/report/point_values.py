"""How the report reads points: an attribute across a column, an index, a count, a percent."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import repeat
from typing import Any

from otel_neuron.groups.base import Attributes, HistogramDelta, PointValue


def values_of(key: str, attributes: Sequence[Attributes]) -> list[Any]:
    """`attributes[i].get(key)` for every i, in one C-level pass when they are plain dicts (the
    report reads every point's runtime index and application every tick)."""
    try:
        return list(map(dict.get, attributes, repeat(key)))  # type: ignore[arg-type]
    except TypeError:  # not all plain dicts (an SDK reader's BoundedAttributes): Mapping.get
        return [mapping.get(key) for mapping in attributes]


def as_index(value: object) -> int:
    """An index attribute (a core, device or model id) as an int; 0 when it is not a number."""
    if type(value) is int:
        return value
    try:
        return int(value)  # type: ignore[call-overload, no-any-return]
    except (TypeError, ValueError):
        return 0


def whole(value: PointValue) -> int:
    """A count or byte amount as the report prints it (0 for a histogram)."""
    return 0 if isinstance(value, HistogramDelta) else int(value)


def number(value: PointValue) -> float:
    """A gauge's value as a Python float (0.0 for a histogram)."""
    return 0.0 if isinstance(value, HistogramDelta) else float(value)


def percent(fraction: PointValue) -> float:
    """OpenTelemetry's fractions as the guide prints them: percent, two decimals (0.0 for a histogram)."""
    return 0.0 if isinstance(fraction, HistogramDelta) else round(float(fraction) * 100.0, 2)
