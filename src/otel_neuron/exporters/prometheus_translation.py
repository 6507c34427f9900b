"""OpenTelemetry names, units, attribute values and histograms as Prometheus has them.

The rules of OpenTelemetry's Prometheus compatibility specification, as opentelemetry-exporter-
prometheus (0.66b2) applies them: names and label names with the characters Prometheus does not
allow as `_`, the unit mapped and appended, non-string values as JSON; exponential histograms served
as classic ones with the fixed bounds SERVED_BOUNDS.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from opentelemetry.sdk.metrics.export import ExponentialHistogramDataPoint, HistogramDataPoint

from otel_neuron.groups.base import HistogramDelta

SeriesKey = frozenset[tuple[str, Any]]  # a series' attributes, hashable

# The `le` bounds served for every latency histogram: 0, then powers of two from 2^-13 s (122 us)
# to 2^4 s (16 s). Fixed, so a series' buckets never change between scrapes (histogram_quantile
# needs that), and few: 20 series per histogram instead of one per exponential bucket.
SERVED_BOUNDS = [0.0] + [2.0**power for power in range(-13, 5)]
_LOWEST_POWER = -13


# --------------------------------------------------------------------------- names and units
# The rules of OpenTelemetry's Prometheus compatibility specification, as the exporter applies them.

_NAME_OUTSIDE = re.compile(r"[^a-zA-Z0-9:]+")
_LABEL_OUTSIDE = re.compile(r"[^a-zA-Z0-9]+")
_UNIT_ANNOTATION = re.compile(r"{.*}")
_UNITS = {
    "d": "days",
    "h": "hours",
    "min": "minutes",
    "s": "seconds",
    "ms": "milliseconds",
    "us": "microseconds",
    "ns": "nanoseconds",
    "By": "bytes",
    "KiBy": "kibibytes",
    "MiBy": "mebibytes",
    "GiBy": "gibibytes",
    "TiBy": "tibibytes",
    "KBy": "kilobytes",
    "MBy": "megabytes",
    "GBy": "gigabytes",
    "TBy": "terabytes",
    "m": "meters",
    "V": "volts",
    "A": "amperes",
    "J": "joules",
    "W": "watts",
    "g": "grams",
    "Cel": "celsius",
    "Hz": "hertz",
    "1": "",
    "%": "percent",
}
_PER_UNITS = {"s": "second", "m": "minute", "h": "hour", "d": "day", "w": "week", "mo": "month", "y": "year"}


def metric_name(name: str) -> str:
    """`system.cpu.utilization` -> `system_cpu_utilization` (before the unit is appended)."""
    if name and name[0].isdigit():
        name = "_" + name[1:]
    return _NAME_OUTSIDE.sub("_", name)


def label_name(key: str) -> str:
    """`cpu.logical_number` -> `cpu_logical_number`."""
    if key and key[0].isdigit():
        key = "_" + key[1:]
    return _LABEL_OUTSIDE.sub("_", key)


def unit_suffix(unit: str) -> str:
    """The UCUM unit as the name's suffix: `By` -> `bytes`, `By/s` -> `bytes_per_second`, `1` -> ``."""
    unit = _UNIT_ANNOTATION.sub("", unit)
    if unit in _UNITS:
        return _UNITS[unit]
    top, slash, bottom = unit.partition("/")
    if slash:
        bottom = _NAME_OUTSIDE.sub("_", bottom)
        if bottom:
            top = _NAME_OUTSIDE.sub("_", top)
            top = _UNITS.get(top, top)
            bottom = _PER_UNITS.get(bottom, bottom)
            return f"{top}_per_{bottom}" if top else f"per_{bottom}"
    return _NAME_OUTSIDE.sub("_", unit).strip("_")


def label_value(value: Any) -> str:
    """A string as it is; anything else as JSON (`true`, `3`, `["a", "b"]`)."""
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str)


# --------------------------------------------------------------------------- histograms


def explicit_histogram_point(point: ExponentialHistogramDataPoint) -> HistogramDataPoint:
    """The same distribution counted into SERVED_BOUNDS, exactly (see `served_bucket_counts`)."""
    return HistogramDataPoint(
        attributes=point.attributes,
        start_time_unix_nano=point.start_time_unix_nano,
        time_unix_nano=point.time_unix_nano,
        count=point.count,
        sum=point.sum,
        bucket_counts=served_bucket_counts(
            point.scale,
            point.zero_count + sum(point.negative.bucket_counts),
            point.positive.offset,
            point.positive.bucket_counts,
        ),
        explicit_bounds=list(SERVED_BOUNDS),
        min=point.min,
        max=point.max,
        exemplars=list(getattr(point, "exemplars", []) or []),
    )


def served_bucket_counts(scale: int, lowest_count: int, offset: int, counts: Iterable[int]) -> list[int]:
    """Base-2 exponential buckets counted into SERVED_BOUNDS and +Inf.

    A bucket of scale s >= 0 lies inside one power-of-two range (its index shifted right by s), so
    each count lands in the bucket of its true upper bound; values below the first bound count
    there, above the last in +Inf. `lowest_count` (zero and negative values, which this monitor
    never produces) counts in the first bucket.
    """
    served = [0] * (len(SERVED_BOUNDS) + 1)
    served[0] = lowest_count
    for index, count in enumerate(counts, start=offset):
        if count:
            power = index >> scale if scale >= 0 else index << -scale
            # Values of this bucket are <= 2^(power + 1): that bound's position, clamped to the range.
            position = min(max(power + 1 - _LOWEST_POWER + 1, 1), len(SERVED_BOUNDS))
            served[position] += int(count)
    return served


class ServedBuckets(NamedTuple):
    """A histogram point as the exposition reads it: counts per bucket (+Inf's last), each bucket's
    `le`, the sum."""

    counts: Sequence[int]
    le: tuple[str, ...]
    sum: float | None


_SERVED_LE = (*(f"{bound}" for bound in SERVED_BOUNDS), "+Inf")


def served_buckets(value: Any) -> ServedBuckets:
    if type(value) is HistogramDelta:
        counts = served_bucket_counts(value.scale, value.zero_count, value.offset, value.bucket_counts)
        return ServedBuckets(counts, _SERVED_LE, value.sum)
    if isinstance(value, ExponentialHistogramDataPoint):
        value = explicit_histogram_point(value)
    le = _SERVED_LE if value.explicit_bounds == SERVED_BOUNDS else _le_of(value.explicit_bounds)
    return ServedBuckets(value.bucket_counts, le, value.sum)


def _le_of(bounds: Sequence[float]) -> tuple[str, ...]:
    return (*(f"{bound}" for bound in bounds), "+Inf")


def le_for(value: Any) -> tuple[str, ...]:
    """The `le` values of a histogram point's buckets."""
    if type(value) is HistogramDelta or isinstance(value, ExponentialHistogramDataPoint):
        return _SERVED_LE
    return _SERVED_LE if value.explicit_bounds == SERVED_BOUNDS else _le_of(value.explicit_bounds)


def series_key(attributes: Mapping[str, Any]) -> SeriesKey:
    return frozenset((key, hashable(value)) for key, value in attributes.items())


def hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, (list, tuple)) else value
