"""Lines from a pipe or a file descriptor, bounded in length; a child process stopped in time.

What the neuron-monitor bridge reads its reports with: a line never holds more than `MAX_LINE`
bytes in memory, whatever the writer sends, and a long line costs its length once.
"""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Iterable, Iterator
from typing import IO

from otel_neuron.sources.neuron_monitor_values import one_line

_logger = logging.getLogger(__name__)

MAX_LINE = 64 * 1024 * 1024  # a report of thousands of loaded models is tens of MiB


class FdLines:
    """Lines of a file descriptor, read with os.read (no buffered-reader lock).

    A line longer than `max_line` is given as its first KiB (counted as a malformed line) and the
    rest of it skipped, so memory stays within `max_line` whatever the writer sends.
    """

    def __init__(self, fd: int, max_line: int = MAX_LINE, chunk: int = 1 << 20) -> None:
        self._fd = fd
        self._max_line = max_line
        self._chunk = chunk

    def __iter__(self) -> Iterator[bytes]:
        pending = bytearray()
        skipping = False  # within a line that was too long
        while True:
            try:
                chunk = os.read(self._fd, self._chunk)
            except OSError:
                break
            if not chunk:
                break
            start = 0
            end = chunk.find(b"\n")
            while end >= 0:  # only the new bytes are searched: a long line costs its length once
                if not skipping:
                    pending += chunk[start:end]
                    yield bytes(pending)
                pending.clear()
                skipping = False
                start = end + 1
                end = chunk.find(b"\n", start)
            if not skipping:
                pending += chunk[start:]
                if len(pending) > self._max_line:
                    yield bytes(pending[:1024])
                    pending.clear()
                    skipping = True
        if pending and not skipping:
            yield bytes(pending)


def pipe_lines(pipe: IO[bytes]) -> Iterator[bytes]:
    """The lines of a child's pipe; a line longer than MAX_LINE comes in pieces (each malformed)."""
    return iter(lambda: pipe.readline(MAX_LINE), b"")


def tail_stderr(stream: Iterable[bytes], tail: list[str]) -> None:
    for raw in stream:
        line = raw.decode("utf-8", "replace").rstrip()
        if line:
            _logger.debug("neuron-monitor: %s", one_line(line))
            tail.append(one_line(line))
            del tail[:-5]


def drain(stream: Iterable[bytes]) -> None:
    """Read a stream to its end, unused: its writer must not block on a reader that failed."""
    try:
        for _ in stream:
            pass
    except Exception:  # noqa: BLE001, S110 - the failure that brought us here is already reported
        pass


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it has not exited within 0.3 s."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=0.3)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=1.0)
