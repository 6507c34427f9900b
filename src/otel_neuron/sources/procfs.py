"""Host CPU and memory counters from procfs; the root is psutil.PROCFS_PATH, so a fake /proc drives both.

Both files are split here in one pass each: psutil builds a namedtuple per vCPU and reads
/proc/stat twice (times, then context switches), and its swap figures read /proc/vmstat too;
at 192 vCPUs that costs five times the parse itself.

A reader that runs every period keeps its file open (`ProcfsFile`, one per reader: the monitor's
system groups get theirs from `pipeline.SYSTEM_GROUP_FACTORIES`); without one, each call opens the
file and closes it again.
"""

from __future__ import annotations

import os
import weakref
from dataclasses import dataclass
from typing import Any

import numpy
import psutil

# The seven vCPU modes of the guide, in the order of /proc/stat's first seven columns.
CPU_MODES = ("user", "nice", "system", "idle", "io_wait", "irq", "soft_irq")
STEAL_COLUMN = 7


@dataclass(frozen=True)
class CpuTimes:
    """Cumulative clock ticks, one row per vCPU in /proc/stat's order.

    The columns are /proc/stat's first eight: the guide's seven modes (CPU_MODES order), then
    steal. Guest time needs no column: the kernel already counts it inside user and nice.
    """

    ticks: CpuTicks  # shape (vCPUs, 8)
    context_switches: int

    @property
    def cpu_count(self) -> int:
        return int(self.ticks.shape[0])


CpuTicks = numpy.ndarray[Any, numpy.dtype[numpy.int64]]


@dataclass(frozen=True)
class MemoryFacts:
    total_bytes: int
    available_bytes: int
    swap_total_bytes: int
    swap_used_bytes: int


def read_cpu_times(stat: ProcfsFile | None = None) -> CpuTimes:
    """/proc/stat's per-vCPU ticks and context switches, read through `stat` (None: opened for this call)."""
    stat = ProcfsFile("stat") if stat is None else stat
    text = stat.read()
    path = stat.path
    # The per-vCPU lines follow the aggregate "cpu " line as one block; slice it out whole.
    first = text.find(b"\ncpu") + 1
    last = text.rfind(b"\ncpu") + 1
    if first == 0:
        raise OSError(f"{path} has no per-vCPU lines")
    block_end = text.find(b"\n", last)
    block = text[first : block_end if block_end >= 0 else len(text)]
    cpus = block.count(b"\n") + 1
    line_width = len(block[: block.find(b"\n")].split()) if cpus > 1 else len(block.split())
    # "cpu12 4705 356..." -> "   12 4705 356...": every line numbers only, parsed in one C call
    # rather than split and int() per number (a host has up to 192 vCPUs). It would clip a number
    # past 2**63 - 1: at USER_HZ 100 no counter gets there. The block holds no other letters, so a
    # byte-for-byte translation blanks the prefixes in one pass.
    try:
        numbers = numpy.fromstring(block.translate(_CPU_PREFIX_TO_BLANKS), dtype=numpy.int64, sep=" ")
    except ValueError:  # newer numpy: text that is not all numbers
        numbers = numpy.empty(0, numpy.int64)
    if line_width < 1 + _COLUMNS or numbers.size != line_width * cpus:
        raise OSError(f"{path}: per-vCPU lines are not {_COLUMNS} or more numbers each, all of one width")
    switches_at = text.find(b"\nctxt ")
    context_switches = (
        int(text[switches_at + 6 : text.find(b"\n", switches_at + 1)]) if switches_at >= 0 else 0
    )
    return CpuTimes(numbers.reshape(cpus, line_width)[:, 1 : 1 + _COLUMNS], context_switches)


_COLUMNS = STEAL_COLUMN + 1
_CPU_PREFIX_TO_BLANKS = bytes.maketrans(b"cpu", b"   ")


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


def read_memory(meminfo: ProcfsFile | None = None) -> MemoryFacts:
    """/proc/meminfo's memory and swap, read through `meminfo` (None: opened for this call)."""
    meminfo = ProcfsFile("meminfo") if meminfo is None else meminfo
    text = meminfo.read()
    path = meminfo.path
    fields = {
        parts[0]: int(parts[1]) * 1024
        for parts in map(bytes.split, text.splitlines())
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


class ProcfsFile:
    """A file of the procfs root (`name` under psutil.PROCFS_PATH), opened once and read from its
    start at each `read()`.

    Reading /proc/stat again from offset 0 makes the kernel generate it afresh, so a period costs an
    fstat and a pread instead of open, fstat, ioctl, lseek, read and close: after an idle second
    each system call costs tens of microseconds. When the procfs root changes (a test's fake) the
    file there is opened instead. A file renamed over (a fake /proc rewritten atomically) is noticed
    by its link count and opened again; a fake swapped any other way (a symlinked directory) is not.
    One reader at a time: each group that reads procfs has its own. The descriptor is closed with
    `close()` or when the object is collected.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._open = _OpenDescriptor()
        weakref.finalize(self, self._open.close)

    @property
    def path(self) -> str:
        """Where the file is now: under the current procfs root."""
        return f"{psutil.PROCFS_PATH}/{self.name}"

    def read(self) -> bytes:
        """The whole file as it is now; OSError when it cannot be read."""
        opened, path = self._open, self.path
        if opened.path != path:  # another procfs root: let the old file go
            opened.close()
        try:
            if opened.descriptor >= 0 and os.fstat(opened.descriptor).st_nlink == 0:
                opened.close()
            if opened.descriptor < 0:
                opened.descriptor, opened.path = os.open(path, os.O_RDONLY | os.O_CLOEXEC), path
            data = _read_whole(opened.descriptor, max(2 * opened.size, 16 << 10))
        except OSError:
            opened.close()
            raise
        opened.size = len(data)
        return data

    def close(self) -> None:
        self._open.close()


@dataclass
class _OpenDescriptor:
    """What a ProcfsFile holds open, apart from it so that a finalizer can close it."""

    path: str = ""
    descriptor: int = -1
    size: int = 0  # of the last read: the next one asks for twice as much at once

    def close(self) -> None:
        descriptor, self.descriptor, self.path = self.descriptor, -1, ""
        if descriptor >= 0:
            os.close(descriptor)


def _read_whole(descriptor: int, chunk: int) -> bytes:
    data = os.pread(descriptor, chunk, 0)
    if len(data) < chunk:  # a short read is the end of the file
        return data
    parts = [data]
    while part := os.pread(descriptor, chunk, sum(map(len, parts))):
        parts.append(part)
    return b"".join(parts)
