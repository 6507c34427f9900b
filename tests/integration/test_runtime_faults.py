"""The monitor as a subprocess beside runtimes that misbehave: one that hangs must not move another's
period, and one that restarts is read again at the first tick after its socket is back."""

from __future__ import annotations

import json
import queue
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from monitor_cli import reports, run_monitor, start_monitor, write_config

PERIOD = 0.5
SIMULATOR = [sys.executable, "-m", "otel_neuron.runtime.simulator_cli"]


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    """A directory short enough for unix socket paths."""
    with tempfile.TemporaryDirectory(prefix="on-", dir="/tmp") as short:
        yield Path(short)


@pytest.fixture
def hung_socket(socket_dir: Path) -> Iterator[str]:
    """A unix socket that accepts every connection and never answers."""
    path = str(socket_dir / "hung.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(64)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    yield path
    server.close()
    for connection in held:
        connection.close()


def test_a_hung_runtime_leaves_a_healthy_runtimes_period_alone(socket_dir: Path, hung_socket: str) -> None:
    metrics = [{"type": "inference_stats"}, {"type": "neuroncore_counters"}, {"type": "memory_used"}]
    config = write_config(
        socket_dir,
        {
            "period": "500ms",
            "neuron_runtimes": [
                {"address": "sim:?seed=1", "metrics": metrics},
                {"address": f"unix:{hung_socket}", "metrics": metrics},
            ],
            "system_metrics": [{"type": "memory_info"}],
        },
    )
    finished = run_monitor(["-c", str(config), "--imds", "off", "--max-reports", "12"], timeout=60)
    assert finished.returncode == 0, finished.stderr
    assert "Traceback" not in finished.stderr
    got = reports(finished.stdout)
    assert len(got) == 12
    healthy_periods = [
        group["period"] for report in got for group in report["neuron_runtime_data"][0]["report"].values()
    ]
    # Every collection of the healthy runtime, the first one included, within 5 % of its period.
    assert all(abs(period - PERIOD) <= 0.05 * PERIOD for period in healthy_periods), healthy_periods
    assert all(group["error"] == "" for r in got for group in r["neuron_runtime_data"][0]["report"].values())
    for report in got:
        hung = report["neuron_runtime_data"][1]
        assert hung["error"].startswith(f"no answer from unix:{hung_socket} within 0.4 s"), hung["error"]
        assert all(group["error"] for group in hung["report"].values())


class _Simulator:
    """otel-neuron-simulator on a unix socket; `serving_at` is when it said it serves."""

    def __init__(self, address: str, seed: int) -> None:
        self.process = subprocess.Popen(
            [*SIMULATOR, "--address", address, "--seed", str(seed)], stderr=subprocess.PIPE, text=True
        )
        line = self.process.stderr.readline() if self.process.stderr else ""
        assert "serving" in line, line
        self.serving_at = time.monotonic()

    def kill(self) -> None:
        self.process.kill()  # SIGKILL: its socket files stay behind, refusing connections
        self.process.wait(timeout=10)


class _Reports:
    """Reports from a running monitor, each with the monotonic time it arrived."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self._lines: queue.Queue[tuple[float, dict[str, Any]]] = queue.Queue()
        self._process = process
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            self._lines.put((time.monotonic(), json.loads(line)))

    def next(self) -> tuple[float, str]:
        """The next report's arrival time and its runtime's error."""
        arrived, report = self._lines.get(timeout=10)
        return arrived, report["neuron_runtime_data"][0]["error"]


def test_a_restarted_runtime_is_read_again_at_the_first_tick_after_its_socket_is_back(
    socket_dir: Path,
) -> None:
    address = f"unix:{socket_dir}/runtime.sock"
    config = write_config(
        socket_dir,
        {
            "period": "500ms",
            "neuron_runtimes": [{"address": address, "metrics": [{"type": "inference_stats"}]}],
        },
    )
    simulator = _Simulator(address, seed=0)
    monitor = start_monitor(["-c", str(config), "--imds", "off", "--max-reports", "200"])
    stream = _Reports(monitor)
    still_in_error: list[int] = []
    try:
        for seed in range(1, 5):
            while stream.next()[1]:  # read before it is killed
                pass
            simulator.kill()
            down_since = time.monotonic()
            while not stream.next()[1]:  # the monitor saw it go
                pass
            # Down for long enough that a connection kept retrying would be at its longest backoff.
            time.sleep(max(0.0, down_since + 3.0 - time.monotonic()))
            simulator = _Simulator(address, seed)
            # Reports arriving just after "serving" may come from a tick that fetched before it.
            back = simulator.serving_at + 0.1
            errors = 0
            while True:
                arrived, error = stream.next()
                if arrived < back:
                    continue
                if not error:
                    break
                errors += 1
            still_in_error.append(errors)
    finally:
        monitor.send_signal(signal.SIGTERM)
        monitor.wait(timeout=10)
        simulator.kill()
    # 0: the first report collected after the socket was back had the runtime again (one period).
    assert still_in_error == [0, 0, 0, 0]
