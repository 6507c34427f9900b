"""The system groups' sections (vcpu_usage, memory_info), rendered from their points.

The same in both report formats. The points come from `groups.system`; the renderers read only the
points, so the report needs neither /proc nor the group that read it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy

from otel_neuron.groups.base import (
    Attributes,
    Point,
    PointColumns,
    PointsByMetric,
    derived_from,
)
from otel_neuron.report.point_values import number, percent, values_of, whole
from otel_neuron.semconv import (
    CONTEXT_SWITCHES,
    CPU_AVERAGE_UTILIZATION,
    CPU_LOGICAL_NUMBER,
    CPU_MODE,
    CPU_MODES,
    CPU_UTILIZATION,
    MEMORY_LIMIT,
    MEMORY_STATE,
    MEMORY_USAGE,
    PAGING_STATE,
    PAGING_USAGE,
    SEMCONV_CPU_MODE,
)

_GUIDE_CPU_MODE = {semconv: guide for guide, semconv in SEMCONV_CPU_MODE.items()}


def render_vcpu_usage(points: PointsByMetric) -> dict[str, Any]:
    """vcpu_usage: each vCPU's mode percentages, their average (neuron-monitor's own when a bridged
    stream gave it, else the mean over the vCPUs), and the context switches."""
    utilization = points.get(CPU_UTILIZATION.name, ())
    usage = _usage_by_columns(utilization) or _usage_point_by_point(utilization)
    average = _given_average(points.get(CPU_AVERAGE_UTILIZATION.name, ())) or {
        mode: percent(total / usage.cpus) if usage.cpus else 0.0 for mode, total in usage.mode_sums.items()
    }
    switches = sum(whole(value) for _, value in points.get(CONTEXT_SWITCHES.name, ()))
    return {"average_usage": average, "usage_data": usage.by_cpu, "context_switch_count": switches}


def render_memory_info(points: PointsByMetric) -> dict[str, Any]:
    """memory_info: host memory and swap, total and used."""

    def value(metric: str, key: str = "", state: str = "") -> int:
        return sum(whole(v) for a, v in points.get(metric, ()) if not key or a.get(key) == state)

    swap_used = value(PAGING_USAGE.name, PAGING_STATE, "used")
    return {
        "memory_total_bytes": value(MEMORY_LIMIT.name),
        "memory_used_bytes": value(MEMORY_USAGE.name, MEMORY_STATE, "used"),
        "swap_total_bytes": swap_used + value(PAGING_USAGE.name, PAGING_STATE, "free"),
        "swap_used_bytes": swap_used,
    }


def _given_average(points: Iterable[Point]) -> dict[str, float]:
    """average_usage as upstream gave it: every mode (0 for one not given) once any is given."""
    given = {}
    for attributes, value in points:
        mode = _GUIDE_CPU_MODE.get(str(attributes.get(CPU_MODE)))
        if mode is not None and isinstance(value, (int, float)):
            given[mode] = percent(value)
    return {mode: given.get(mode, 0.0) for mode in CPU_MODES} if given else {}


@dataclass(frozen=True, slots=True)
class _VcpuUsage:
    """The utilization points read, either way: usage_data and what the mean over the vCPUs needs."""

    by_cpu: dict[str, dict[str, float]]  # usage_data: each vCPU's row of percentages, in vCPU order
    mode_sums: dict[str, float]  # each mode's fractions added up over the vCPUs, in vCPU order
    cpus: int


def _usage_point_by_point(points: Iterable[Point]) -> _VcpuUsage:
    usage: dict[Any, dict[str, float]] = {}
    sums = dict.fromkeys(CPU_MODES, 0.0)
    for attributes, value in points:
        mode = _GUIDE_CPU_MODE.get(str(attributes.get(CPU_MODE)))
        if mode is None:
            continue
        cpu = attributes.get(CPU_LOGICAL_NUMBER)
        row = usage.get(cpu)
        if row is None:
            row = usage[cpu] = dict.fromkeys(CPU_MODES, 0.0)
        row[mode] = percent(value)
        sums[mode] += number(value)
    by_cpu = {str(cpu): usage[cpu] for cpu in sorted(usage, key=_cpu_order)}
    return _VcpuUsage(by_cpu, sums, len(usage))


def _usage_by_columns(points: Sequence[Point]) -> _VcpuUsage | None:
    """The same result when the points are laid out as VcpuUsageGroup samples them: mode-major (every
    vCPU's user share in vCPU order, then nice...); None when they are not. At 192 vCPUs these are
    most of a tick's points: read in whole-array passes rather than point by point, as the Cost
    section of docs/architecture.md measures."""
    if type(points) is not PointColumns:
        return None
    attributes, values = points.attributes, points.values
    labels = derived_from(attributes, _row_labels)  # the group's own layout: checked once
    cpus, modes = len(labels or ()), len(CPU_MODES)
    if labels is None or len(values) != cpus * modes:
        return None
    shares = numpy.asarray(values, dtype=numpy.float64).reshape(modes, cpus)
    # Each mode's sum added up in vCPU order, one after the other, as += does point by point.
    sums = dict(zip(CPU_MODES, numpy.add.accumulate(shares, axis=1)[:, -1].tolist()))
    percents = percents_of(shares.ravel())
    rows = map(_usage_row, *(percents[mode * cpus : (mode + 1) * cpus] for mode in range(modes)))
    return _VcpuUsage(dict(zip(labels, rows)), sums, cpus)


def _row_labels(attributes: Sequence[Attributes]) -> tuple[str, ...] | None:
    """The "usage_data" key of each vCPU when the attributes are laid out mode-major, else None.

    A key is str() of the number first seen for its vCPU, as in the point-by-point path.
    """
    cpus = len(attributes) // len(CPU_MODES)
    if cpus == 0 or cpus * len(CPU_MODES) != len(attributes):
        return None
    expected_modes, expected_cpus = _mode_major_layout(cpus)
    if values_of(CPU_MODE, attributes) != expected_modes:
        return None
    cpu_numbers = values_of(CPU_LOGICAL_NUMBER, attributes)
    if cpu_numbers != expected_cpus:  # numbers equal as dict keys are: the rows are the same
        return None
    return tuple(map(str, cpu_numbers[:cpus]))


def _usage_row(
    user: float, nice: float, system: float, idle: float, io_wait: float, irq: float, soft_irq: float
) -> dict[str, float]:
    """One vCPU's row, in CPU_MODES order."""
    return {
        "user": user,
        "nice": nice,
        "system": system,
        "idle": idle,
        "io_wait": io_wait,
        "irq": irq,
        "soft_irq": soft_irq,
    }


def percents_of(fractions: Sequence[Any] | numpy.ndarray[Any, Any]) -> list[float]:
    """percent() of each fraction, the very doubles round(x * 100.0, 2) gives, in whole-array passes.

    numpy rounds y = x * 100 to two decimals as rint(y * 100) / 100: the double nearest to k / 100,
    as round() returns, with the same k unless y * 100 lies within its own rounding error of a half.
    Those few (ties such as 0.125) are left to round(), which decides from y's exact value.
    """
    percents = numpy.asarray(fractions, dtype=numpy.float64) * 100.0
    hundredths = percents * 100.0
    nearest = numpy.rint(hundredths)
    rounded: list[float] = (nearest / 100.0).tolist()
    # Within 1e-6 of a half: |h - rint(h)| is the distance to the nearest whole number, exactly.
    nearest -= hundredths
    for position in numpy.flatnonzero(numpy.abs(nearest, out=nearest) > 0.5 - 1e-6).tolist():
        rounded[position] = round(float(percents[position]), 2)
    return rounded


@lru_cache(maxsize=4)
def _mode_major_layout(cpus: int) -> tuple[list[str], list[int]]:
    """The cpu.mode and cpu.logical_number of each point, in the order VcpuUsageGroup samples them."""
    modes = [SEMCONV_CPU_MODE[mode] for mode in CPU_MODES for _ in range(cpus)]
    return modes, list(range(cpus)) * len(CPU_MODES)


def _cpu_order(cpu: Any) -> int:
    try:
        return int(cpu)
    except (TypeError, ValueError):
        return 0
