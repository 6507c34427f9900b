"""A runtime's sockets are never connectable by others, not even for a moment, whatever the umask."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from otel_neuron.runtime import runtime_pb2, runtime_pb2_grpc

SIMULATOR = [sys.executable, "-m", "otel_neuron.runtime.simulator_cli"]
START_TIMEOUT_S = 20.0


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    """A short directory (a unix socket path holds 107 bytes), open to all as /tmp is."""
    with tempfile.TemporaryDirectory(prefix="on-", dir="/tmp") as directory:
        os.chmod(directory, 0o777)
        yield Path(directory)


def watch_modes(paths: list[Path], process: subprocess.Popen[str]) -> dict[Path, set[int]]:
    """Every mode each path showed from before it existed until the simulator said it serves."""
    serving = threading.Event()

    def read_stderr() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            if "serving" in line:
                serving.set()

    threading.Thread(target=read_stderr, daemon=True).start()
    seen: dict[Path, set[int]] = {path: set() for path in paths}
    deadline = time.monotonic() + START_TIMEOUT_S
    while not (serving.is_set() and all(seen.values())):
        assert process.poll() is None, f"the simulator exited with {process.returncode}"
        assert time.monotonic() < deadline, f"not serving within {START_TIMEOUT_S} s: {seen}"
        for _ in range(1000):  # as tightly as we can: a moment of another mode must not slip by
            for path in paths:
                try:
                    seen[path].add(stat.S_IMODE(os.lstat(path).st_mode))
                except FileNotFoundError:
                    pass
    return seen


@pytest.mark.parametrize("start", range(3))  # the moment is short: look at several starts
def test_the_simulators_sockets_are_never_open_to_others_under_umask_0(socket_dir: Path, start: int) -> None:
    path = socket_dir / "neuron.sock"
    address = f"unix:{path}"
    process = subprocess.Popen(
        [*SIMULATOR, "--address", address, "--seed", "1"], stderr=subprocess.PIPE, text=True, umask=0
    )
    try:
        seen = watch_modes([path, Path(f"{path}.snapshot")], process)
        assert seen == {path: {0o600}, Path(f"{path}.snapshot"): {0o600}}
        with grpc.insecure_channel(address, options=[("grpc.enable_http_proxy", 0)]) as channel:
            snapshot = runtime_pb2_grpc.RuntimeMetricsStub(channel).GetSnapshot(
                runtime_pb2.SnapshotRequest(), timeout=5
            )
        assert snapshot.snapshot_socket == f"{path}.snapshot"
        assert sorted(os.listdir(socket_dir)) == ["neuron.sock", "neuron.sock.snapshot"]
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)
    assert os.listdir(socket_dir) == []
