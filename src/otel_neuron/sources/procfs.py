"""Host CPU and memory counters from procfs; the root is psutil.PROCFS_PATH, so a fake /proc drives both.

Both files are split here in one pass each: psutil builds a namedtuple per vCPU and reads
/proc/stat twice (times, then context switches), and its swap figures read /proc/vmstat too;
at 192 vCPUs that costs five times the parse itself.
"""

from __future__ import annotations

import os
import threading
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


def read_cpu_times() -> CpuTimes:
    path = f"{psutil.PROCFS_PATH}/stat"
    text = _KEPT_OPEN.read(path)
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
    # (192 vCPUs: 40 us, where splitting and int() per number took 150). It would clip a number
    # past 2**63 - 1: at USER_HZ 100 no counter gets there. The block holds no other letters, so a
    # byte-for-byte translation blanks the prefixes (a third of what replace() costs).
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


def read_memory() -> MemoryFacts:
    path = f"{psutil.PROCFS_PATH}/meminfo"
    fields = {
        parts[0]: int(parts[1]) * 1024
        for parts in map(bytes.split, _KEPT_OPEN.read(path).splitlines())
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


class _KeptOpenFiles:
    """procfs files opened once and read from their start each period.

    Reading /proc/stat again from offset 0 makes the kernel generate it afresh, so a period costs an
    fstat and a pread instead of open, fstat, ioctl, lseek, read and close: after an idle second
    each system call costs tens of microseconds. Only the files of the current procfs root stay
    open. A file renamed over (a fake /proc rewritten atomically) is noticed by its link count and
    opened again; a fake swapped any other way (a symlinked directory) is not.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[str, tuple[int, int]] = {}  # path -> (descriptor, size last read)
        self._root = ""

    def read(self, path: str) -> bytes:
        with self._lock:
            root = os.path.dirname(path)
            if root != self._root:  # another procfs root (a test's fake): let the old files go
                self._close_all()
                self._root = root
            descriptor, size = self._open.pop(path, (-1, 0))
            try:
                if descriptor >= 0 and os.fstat(descriptor).st_nlink == 0:
                    os.close(descriptor)
                    descriptor = -1
                if descriptor < 0:
                    descriptor = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                data = _read_whole(descriptor, max(2 * size, 16 << 10))
            except OSError:
                if descriptor >= 0:
                    os.close(descriptor)
                raise
            self._open[path] = (descriptor, len(data))
            return data

    def _close_all(self) -> None:
        for descriptor, _ in self._open.values():
            os.close(descriptor)
        self._open.clear()

    def after_fork_in_child(self) -> None:
        # pread needs no file offset, so the inherited descriptors can be shared; the lock cannot.
        self._lock = threading.Lock()


def _read_whole(descriptor: int, chunk: int) -> bytes:
    data = os.pread(descriptor, chunk, 0)
    if len(data) < chunk:  # a short read is the end of the file
        return data
    parts = [data]
    while part := os.pread(descriptor, chunk, sum(map(len, parts))):
        parts.append(part)
    return b"".join(parts)


_KEPT_OPEN = _KeptOpenFiles()
os.register_at_fork(after_in_child=_KEPT_OPEN.after_fork_in_child)
