"""Host CPU and memory counters, read through psutil (which honours psutil.PROCFS_PATH)."""

from __future__ import annotations

from dataclasses import dataclass

import psutil

# The seven vCPU modes of the guide, in its order, with the psutil field each comes from.
CPU_MODES = ("user", "nice", "system", "idle", "io_wait", "irq", "soft_irq")
_PSUTIL_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq")


@dataclass(frozen=True)
class CpuTimes:
    """Cumulative seconds per vCPU and mode, plus the context switches since boot."""

    per_cpu: tuple[tuple[float, ...], ...]  # [cpu][mode in CPU_MODES order]
    per_cpu_total: tuple[float, ...]  # every jiffy the kernel counted, steal included
    context_switches: int


@dataclass(frozen=True)
class MemoryFacts:
    total_bytes: int
    available_bytes: int
    swap_total_bytes: int
    swap_used_bytes: int


def read_cpu_times() -> CpuTimes:
    per_cpu = []
    totals = []
    for times in psutil.cpu_times(percpu=True):
        modes = tuple(float(getattr(times, name, 0.0)) for name in _PSUTIL_FIELDS)
        per_cpu.append(modes)
        # Guest time is already inside user/nice in /proc/stat; steal is time the vCPU
        # did not get, so it belongs in the denominator but in none of the seven modes.
        totals.append(sum(modes) + float(getattr(times, "steal", 0.0)))
    return CpuTimes(tuple(per_cpu), tuple(totals), int(psutil.cpu_stats().ctx_switches))


def read_memory() -> MemoryFacts:
    memory = psutil.virtual_memory()
    swap = psutil.swap_memory()
    return MemoryFacts(int(memory.total), int(memory.available), int(swap.total), int(swap.used))
