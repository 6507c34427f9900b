"""Host CPU and memory counters from procfs; the root is psutil.PROCFS_PATH, so a fake /proc drives both.

Both files are split here in one pass each: psutil builds a namedtuple per vCPU and reads
/proc/stat twice (times, then context switches), and its swap figures read /proc/vmstat too;
at 192 vCPUs that costs five times the parse itself.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import psutil

# The seven vCPU modes of the guide, in the order of /proc/stat's first seven columns.
CPU_MODES = ("user", "nice", "system", "idle", "io_wait", "irq", "soft_irq")
STEAL_COLUMN = 7


@dataclass(frozen=True)
class CpuTimes:
    """Cumulative clock ticks per vCPU, flat: vCPU n's columns are ticks[n * width:(n + 1) * width].

    The columns are /proc/stat's first eight: the guide's seven modes (CPU_MODES order), then
    steal. Guest time needs no column: the kernel already counts it inside user and nice.
    """

    ticks: list[int]
    width: int
    context_switches: int

    @property
    def cpu_count(self) -> int:
        return len(self.ticks) // self.width if self.width else 0


@dataclass(frozen=True)
class MemoryFacts:
    total_bytes: int
    available_bytes: int
    swap_total_bytes: int
    swap_used_bytes: int


def read_cpu_times() -> CpuTimes:
    path = f"{psutil.PROCFS_PATH}/stat"
    with open(path, "rb") as stat:
        text = stat.read()
    # The per-vCPU lines follow the aggregate "cpu " line as one block; slice it out whole.
    first = text.find(b"\ncpu") + 1
    last = text.rfind(b"\ncpu") + 1
    if first == 0:
        raise OSError(f"{path} has no per-vCPU lines")
    block = text[first : text.find(b"\n", last) if text.find(b"\n", last) >= 0 else len(text)]
    cpus = block.count(b"\n") + 1
    line_width = len(block[: block.find(b"\n")].split()) if cpus > 1 else len(block.split())
    tokens = block.split()
    if line_width < 1 + _COLUMNS or len(tokens) != line_width * cpus:
        raise OSError(f"{path}: per-vCPU lines are shorter than {_COLUMNS} columns or of unequal width")
    switches_at = text.find(b"\nctxt ")
    context_switches = (
        int(text[switches_at + 6 : text.find(b"\n", switches_at + 1)]) if switches_at >= 0 else 0
    )
    return CpuTimes(list(map(int, _pick_columns(line_width, cpus)(tokens))), _COLUMNS, context_switches)


_COLUMNS = STEAL_COLUMN + 1


@lru_cache(maxsize=4)
def _pick_columns(line_width: int, cpus: int) -> Callable[[list[bytes]], tuple[bytes, ...]]:
    """Selects the eight counters of every vCPU line (skipping its "cpuN" label and guest columns)."""
    return operator.itemgetter(
        *(cpu * line_width + 1 + column for cpu in range(cpus) for column in range(_COLUMNS))
    )


# /proc/meminfo keys -> MemoryFacts, in kB.
_MEMINFO_KEYS = (
    b"MemTotal:",
    b"MemAvailable:",
    b"MemFree:",
    b"Buffers:",
    b"Cached:",
    b"SwapTotal:",
    b"SwapFree:",
)


def read_memory() -> MemoryFacts:
    path = f"{psutil.PROCFS_PATH}/meminfo"
    with open(path, "rb") as meminfo:
        fields = {
            parts[0]: int(parts[1]) * 1024
            for parts in map(bytes.split, meminfo)
            if parts[:1] and parts[0] in _MEMINFO_KEYS
        }
    if b"MemTotal:" not in fields:
        raise OSError(f"{path} has no MemTotal")
    # Kernels before 3.14 have no MemAvailable; free + buffers + page cache is the usual estimate.
    available = fields.get(b"MemAvailable:")
    if available is None:
        available = fields.get(b"MemFree:", 0) + fields.get(b"Buffers:", 0) + fields.get(b"Cached:", 0)
    swap_total = fields.get(b"SwapTotal:", 0)
    return MemoryFacts(fields[b"MemTotal:"], available, swap_total, swap_total - fields.get(b"SwapFree:", 0))
