"""The guide's system-level groups: vcpu_usage and memory_info."""

from __future__ import annotations

from collections.abc import Callable

import numpy

from otel_neuron.groups.base import AttributeColumn, MetricGroup, PointColumns, PointsByMetric
from otel_neuron.semconv import (
    CONTEXT_SWITCHES,
    CPU_COUNT,
    CPU_LOGICAL_NUMBER,
    CPU_MODE,
    CPU_UTILIZATION,
    MEMORY_INFO,
    MEMORY_LIMIT,
    MEMORY_STATE,
    MEMORY_USAGE,
    PAGING_STATE,
    PAGING_USAGE,
    SEMCONV_CPU_MODE,
    VCPU_USAGE,
    measured_instruments,
)
from otel_neuron.sources.procfs import (
    CPU_MODES,
    STEAL_COLUMN,
    CpuTimes,
    MemoryFacts,
    read_cpu_times,
    read_memory,
)


class VcpuUsageGroup(MetricGroup):
    """Per-vCPU mode percentages and context switches over the period, from /proc/stat."""

    report_key = VCPU_USAGE
    instruments = measured_instruments(VCPU_USAGE)

    def __init__(self, read: Callable[[], CpuTimes] = read_cpu_times) -> None:
        super().__init__()
        self._read = read
        self._previous: CpuTimes | None = None
        self._attributes = AttributeColumn(())

    def _take_baseline(self) -> None:
        self._previous = self._read()

    def _sample_points(self, period: float) -> PointsByMetric:
        current = self._read()
        previous, self._previous = self._previous, current
        if previous is None or previous.ticks.shape != current.ticks.shape:
            previous = current  # no usable baseline: report zeros rather than % since boot
        # Whole-array arithmetic: 192 vCPUs x 8 columns would be a Python loop per number otherwise;
        # as few passes as will do, since each numpy call touches pages of its own after an idle second.
        deltas = current.ticks - previous.ticks
        numpy.maximum(deltas, 0, out=deltas)  # iowait steps backwards on some kernels
        # A vCPU's elapsed ticks: its seven modes and steal (guest is already inside user and nice);
        # at least 1, so a vCPU with no ticks shows 0 in every mode.
        elapsed = deltas.sum(axis=1)
        numpy.maximum(elapsed, 1, out=elapsed)
        # Mode-major (every vCPU's user share, then nice...), as the attributes are laid out; kept as
        # a read-only array (its values are floats to every reader) and rendered as one.
        shares = numpy.divide(deltas[:, :STEAL_COLUMN].T, elapsed, order="C").ravel()
        shares.flags.writeable = False
        switches = max(current.context_switches - previous.context_switches, 0)
        return {
            CPU_UTILIZATION.name: PointColumns(self._attributes_for(current.cpu_count), shares),
            CONTEXT_SWITCHES.name: [({}, switches)],
            CPU_COUNT.name: [({}, current.cpu_count)],
        }

    def _attributes_for(self, cpus: int) -> AttributeColumn:
        """One attribute set per (mode, vCPU), mode-major like the shares; built once per vCPU count."""
        if len(self._attributes) != cpus * len(CPU_MODES):
            self._attributes = AttributeColumn(
                {CPU_LOGICAL_NUMBER: cpu, CPU_MODE: SEMCONV_CPU_MODE[mode]}
                for mode in CPU_MODES
                for cpu in range(cpus)
            )
        return self._attributes


class MemoryInfoGroup(MetricGroup):
    """Host memory and swap from /proc/meminfo; used = MemTotal - MemAvailable (OTel's definition)."""

    report_key = MEMORY_INFO
    instruments = measured_instruments(MEMORY_INFO)

    _USED = {MEMORY_STATE: "used"}
    _SWAP_USED = {PAGING_STATE: "used"}
    _SWAP_FREE = {PAGING_STATE: "free"}

    def __init__(self, read: Callable[[], MemoryFacts] = read_memory) -> None:
        super().__init__()
        self._read = read

    def _sample_points(self, period: float) -> PointsByMetric:
        facts = self._read()
        return {
            MEMORY_LIMIT.name: [({}, facts.total_bytes)],
            MEMORY_USAGE.name: [(self._USED, facts.total_bytes - facts.available_bytes)],
            PAGING_USAGE.name: [
                (self._SWAP_USED, facts.swap_used_bytes),
                (self._SWAP_FREE, facts.swap_total_bytes - facts.swap_used_bytes),
            ],
        }
