"""/proc/stat and /proc/meminfo are kept open between periods and still read afresh every time."""

from __future__ import annotations

import gc
import os
from pathlib import Path

import psutil
import pytest

from otel_neuron.sources.procfs import ProcfsFile, read_cpu_times, read_memory


def write_stat(proc: Path, user: int, name: str = "stat") -> None:
    lines = ["cpu  0 0 0 0 0 0 0 0 0 0"]
    lines += [f"cpu{n} {user + n} 0 0 100 0 0 0 0 0 0" for n in range(3)]
    (proc / name).write_text("\n".join([*lines, "ctxt 42", ""]))


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("kept_open", [True, False])
def test_every_read_sees_the_file_as_it_is_now(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kept_open: bool
) -> None:
    monkeypatch.setattr(psutil, "PROCFS_PATH", str(tmp_path))
    stat = ProcfsFile("stat") if kept_open else None
    write_stat(tmp_path, 10)
    assert read_cpu_times(stat).ticks[:, 0].tolist() == [10, 11, 12]

    write_stat(tmp_path, 20)  # rewritten in place, as the kernel regenerates /proc/stat
    assert read_cpu_times(stat).ticks[:, 0].tolist() == [20, 21, 22]

    write_stat(tmp_path, 30, "stat.next")
    os.replace(tmp_path / "stat.next", tmp_path / "stat")  # renamed over the open file
    assert read_cpu_times(stat).ticks[:, 0].tolist() == [30, 31, 32]

    (tmp_path / "stat").unlink()
    with pytest.raises(FileNotFoundError):
        read_cpu_times(stat)
    write_stat(tmp_path, 40)  # back again
    assert read_cpu_times(stat).ticks[:, 0].tolist() == [40, 41, 42]


def test_a_new_procfs_root_is_read_from_the_next_read_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    for root, user in ((first, 10), (second, 50)):
        root.mkdir()
        write_stat(root, user)
    stat = ProcfsFile("stat")
    monkeypatch.setattr(psutil, "PROCFS_PATH", str(first))
    assert read_cpu_times(stat).ticks[:, 0].tolist() == [10, 11, 12]
    monkeypatch.setattr(psutil, "PROCFS_PATH", str(second))
    assert read_cpu_times(stat).ticks[:, 0].tolist() == [50, 51, 52]


def test_a_kept_file_holds_one_descriptor_until_closed_or_dropped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(psutil, "PROCFS_PATH", str(tmp_path))
    write_stat(tmp_path, 10)
    before = open_descriptors()
    stat = ProcfsFile("stat")
    for _ in range(5):
        read_cpu_times(stat)
        read_cpu_times()  # opened and closed again
    assert open_descriptors() == before + 1
    stat.close()
    assert open_descriptors() == before
    files = [ProcfsFile("stat") for _ in range(20)]
    for file in files:
        file.read()
    assert open_descriptors() == before + 20
    del files, file
    gc.collect()
    assert open_descriptors() == before


def test_a_file_longer_than_one_read_is_read_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(psutil, "PROCFS_PATH", str(tmp_path))
    filler = "".join(f"Filler{n}: {n} kB\n" for n in range(5_000))  # about 100 kB before the last key
    (tmp_path / "meminfo").write_text(f"MemTotal: 8 kB\n{filler}MemAvailable: 2 kB\n")
    for meminfo in (ProcfsFile("meminfo"), None):
        memory = read_memory(meminfo)
        assert (memory.total_bytes, memory.available_bytes) == (8 * 1024, 2 * 1024)
