"""The guide's system-level groups: vcpu_usage and memory_info."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from otel_neuron.groups.base import InstrumentSpec, Kind, MetricGroup, Point, PointsByMetric
from otel_neuron.sources.procfs import CPU_MODES, CpuTimes, MemoryFacts, read_cpu_times, read_memory

CPU_UTILIZATION = InstrumentSpec(
    "system.cpu.utilization", "1", "Fraction of the period each vCPU spent in each mode", Kind.GAUGE
)
CONTEXT_SWITCHES = InstrumentSpec(
    "system.cpu.context_switches", "{context_switch}", "Context switches of all vCPUs", Kind.COUNTER
)
CPU_COUNT = InstrumentSpec("system.cpu.logical.count", "{cpu}", "Number of logical vCPUs", Kind.UPDOWN)
MEMORY_USAGE = InstrumentSpec(
    "system.memory.usage", "By", "Host memory in use (MemTotal - MemAvailable)", Kind.UPDOWN
)
MEMORY_LIMIT = InstrumentSpec("system.memory.limit", "By", "Total host memory (MemTotal)", Kind.UPDOWN)
PAGING_USAGE = InstrumentSpec("system.paging.usage", "By", "Swap space by state (used, free)", Kind.UPDOWN)

# OpenTelemetry's cpu.mode values for the guide's seven mode names.
SEMCONV_CPU_MODE = {
    "user": "user",
    "nice": "nice",
    "system": "system",
    "idle": "idle",
    "io_wait": "iowait",
    "irq": "interrupt",
    "soft_irq": "softirq",
}
_GUIDE_CPU_MODE = {semconv: guide for guide, semconv in SEMCONV_CPU_MODE.items()}


def percent(fraction: float) -> float:
    """The guide prints percentages with two decimals."""
    return round(fraction * 100.0, 2)


class VcpuUsageGroup(MetricGroup):
    """Per-vCPU mode percentages and context switches over the period, from /proc/stat."""

    report_key = "vcpu_usage"
    instruments = (CPU_UTILIZATION, CONTEXT_SWITCHES, CPU_COUNT)

    def __init__(self, read: Callable[[], CpuTimes] = read_cpu_times) -> None:
        super().__init__()
        self._read = read
        self._previous: CpuTimes | None = None
        # Attribute dicts are built once per (cpu, mode) and shared by every sample.
        self._attributes: list[tuple[dict[str, Any], ...]] = []

    def _take_baseline(self) -> None:
        self._previous = self._read()

    def _sample_points(self, period: float) -> PointsByMetric:
        current = self._read()
        previous, self._previous = self._previous, current
        if previous is None or len(previous.per_cpu) != len(current.per_cpu):
            previous = current  # no usable baseline: report zeros rather than % since boot
        utilization: list[Point] = []
        for cpu, (now, before) in enumerate(zip(current.per_cpu, previous.per_cpu)):
            elapsed = current.per_cpu_total[cpu] - previous.per_cpu_total[cpu]
            for attributes, value_now, value_before in zip(self._attributes_of(cpu), now, before):
                share = (value_now - value_before) / elapsed if elapsed > 0 else 0.0
                utilization.append((attributes, min(max(share, 0.0), 1.0)))
        switches = max(current.context_switches - previous.context_switches, 0)
        return {
            CPU_UTILIZATION.name: utilization,
            CONTEXT_SWITCHES.name: [({}, switches)],
            CPU_COUNT.name: [({}, len(current.per_cpu))],
        }

    def _attributes_of(self, cpu: int) -> tuple[dict[str, Any], ...]:
        while len(self._attributes) <= cpu:
            number = len(self._attributes)
            self._attributes.append(
                tuple({"cpu.logical_number": number, "cpu.mode": SEMCONV_CPU_MODE[mode]} for mode in CPU_MODES)
            )
        return self._attributes[cpu]

    @staticmethod
    def render(points: PointsByMetric) -> dict[str, Any]:
        usage: dict[str, dict[str, float]] = {}
        fractions: dict[str, list[float]] = {mode: [] for mode in CPU_MODES}
        for attributes, value in points.get(CPU_UTILIZATION.name, ()):
            mode = _GUIDE_CPU_MODE.get(str(attributes.get("cpu.mode")))
            if mode is None:
                continue
            cpu = str(attributes.get("cpu.logical_number"))
            usage.setdefault(cpu, dict.fromkeys(CPU_MODES, 0.0))[mode] = percent(float(value))
            fractions[mode].append(float(value))
        average = {mode: percent(sum(values) / len(values)) if values else 0.0 for mode, values in fractions.items()}
        switches = sum(int(value) for _, value in points.get(CONTEXT_SWITCHES.name, ()))  # type: ignore[arg-type]
        ordered = dict(sorted(usage.items(), key=lambda item: int(item[0]) if item[0].isdigit() else 0))
        return {"average_usage": average, "usage_data": ordered, "context_switch_count": switches}


class MemoryInfoGroup(MetricGroup):
    """Host memory and swap from /proc/meminfo; used = MemTotal - MemAvailable (OTel's definition)."""

    report_key = "memory_info"
    instruments = (MEMORY_LIMIT, MEMORY_USAGE, PAGING_USAGE)

    _USED = {"system.memory.state": "used"}
    _SWAP_USED = {"system.paging.state": "used"}
    _SWAP_FREE = {"system.paging.state": "free"}

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

    @staticmethod
    def render(points: PointsByMetric) -> dict[str, Any]:
        def value(metric: str, key: str = "", state: str = "") -> int:
            return sum(int(v) for a, v in points.get(metric, ()) if not key or a.get(key) == state)  # type: ignore[arg-type]

        swap_used = value(PAGING_USAGE.name, "system.paging.state", "used")
        return {
            "memory_total_bytes": value(MEMORY_LIMIT.name),
            "memory_used_bytes": value(MEMORY_USAGE.name, "system.memory.state", "used"),
            "swap_total_bytes": swap_used + value(PAGING_USAGE.name, "system.paging.state", "free"),
            "swap_used_bytes": swap_used,
        }
