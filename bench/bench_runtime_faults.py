"""A hung runtime beside a healthy one, and a runtime killed and restarted (issue 15, points 4 and 5).

  hung      the real CLI at 0.5 s with `sim:` and a unix socket that accepts and never answers; the
            baseline is the same run without the hung socket. Printed: reports more than 0.6 s apart,
            the range of the healthy runtime's `period`, how many are off 0.5 s by more than 5 %.
  restart   the real CLI at 0.5 s reading a simulator process on a unix socket, which is killed
            (SIGKILL, its socket file left behind) and started again, over and over. Printed: how many
            reports still carried the error once the new simulator was serving (0: recovered at the
            first tick after it was back, i.e. within one period) and the time from "serving" to the
            first report without the error.

Run: .venv/bin/python bench/bench_runtime_faults.py [--restarts N] [--reports N] [--src DIR]
(`--src` runs the monitor from another checkout's src/, e.g. an older revision, for a before/after.)
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

PERIOD = 0.5
LATE_GAP_S = 0.6
TOLERANCE = 0.05


def environment(src: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "AWS_"))}
    if src:
        env["PYTHONPATH"] = src
    return env


@contextmanager
def hung_socket(path: str) -> Iterator[None]:
    """Accepts every connection and never answers."""
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
    try:
        yield
    finally:
        server.close()
        for connection in held:
            connection.close()


class Monitor:
    """The CLI as a subprocess; each stdout line kept with the monotonic time it arrived."""

    def __init__(self, config: dict[str, Any], directory: Path, src: str | None, *arguments: str) -> None:
        path = directory / "monitor.conf"
        path.write_text(json.dumps(config))
        command = [sys.executable, "-m", "otel_neuron", "-c", str(path), "--imds", "off", *arguments]
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=environment(src)
        )
        self.lines: queue.Queue[tuple[float, dict[str, Any]] | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put((time.monotonic(), json.loads(line)))
        self.lines.put(None)

    def all_reports(self, timeout: float) -> list[tuple[float, dict[str, Any]]]:
        reports = []
        while (item := self.lines.get(timeout=timeout)) is not None:
            reports.append(item)
        return reports

    def next_report(self, timeout: float = 10.0) -> tuple[float, dict[str, Any]]:
        item = self.lines.get(timeout=timeout)
        if item is None:
            raise RuntimeError("the monitor stopped")
        return item

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=10)


def hung_scenario(directory: Path, src: str | None, reports: int, with_hung: bool) -> dict[str, Any]:
    hung_path = str(directory / "hung.sock")
    metrics = [{"type": "inference_stats"}, {"type": "neuroncore_counters"}]
    runtimes = [{"address": "sim:?seed=1", "metrics": metrics}]
    if with_hung:
        runtimes.append({"address": f"unix:{hung_path}", "metrics": metrics})
    config = {"period": "500ms", "neuron_runtimes": runtimes, "system_metrics": [{"type": "memory_info"}]}
    with hung_socket(hung_path):
        monitor = Monitor(config, directory, src, "--max-reports", str(reports))
        got = monitor.all_reports(timeout=30)
        monitor.stop()
    os.unlink(hung_path)
    arrivals = [at for at, _ in got]
    gaps = [later - earlier for earlier, later in zip(arrivals, arrivals[1:])]
    periods = [r["neuron_runtime_data"][0]["report"]["inference_stats"]["period"] for _, r in got]
    hung_errors = [
        all(g["error"] for g in r["neuron_runtime_data"][1]["report"].values()) for _, r in got if with_hung
    ]
    return {
        "reports": len(got),
        "late": sum(gap > LATE_GAP_S for gap in gaps),
        "gaps": len(gaps),
        "min": min(periods),
        "max": max(periods),
        "off": sum(abs(p - PERIOD) > TOLERANCE * PERIOD for p in periods),
        "periods": len(periods),
        "hung_errors": f"{sum(hung_errors)}/{len(hung_errors)}" if with_hung else "-",
    }


def restart_scenario(directory: Path, src: str | None, restarts: int) -> tuple[list[int], list[float]]:
    address = f"unix:{directory}/runtime.sock"
    simulator_command = [sys.executable, "-m", "otel_neuron.runtime.simulator_cli", "--address", address]

    def start_simulator(seed: int) -> tuple[subprocess.Popen[str], float]:
        process = subprocess.Popen(
            [*simulator_command, "--seed", str(seed)],
            stderr=subprocess.PIPE,
            text=True,
            env=environment(src),
        )
        assert process.stderr is not None
        line = process.stderr.readline()
        if "serving" not in line:
            raise RuntimeError(f"the simulator did not start: {line}")
        return process, time.monotonic()

    config = {
        "period": "500ms",
        "neuron_runtimes": [{"address": address, "metrics": [{"type": "inference_stats"}]}],
    }
    simulator, _ = start_simulator(0)
    monitor = Monitor(config, directory, src)

    def runtime_error(report: dict[str, Any]) -> str:
        return str(report["neuron_runtime_data"][0]["error"])

    late_reports: list[int] = []
    seconds: list[float] = []
    try:
        for attempt in range(1, restarts + 1):
            while runtime_error(monitor.next_report()[1]):  # up and read before it is killed
                pass
            simulator.kill()
            simulator.wait()
            while not runtime_error(monitor.next_report()[1]):  # the monitor saw it go
                pass
            simulator, serving_at = start_simulator(attempt)
            errors = 0
            while True:
                arrived, report = monitor.next_report()
                if arrived < serving_at:
                    continue  # a report of before the socket was back
                if not runtime_error(report):
                    break
                errors += 1
            late_reports.append(errors)
            seconds.append(arrived - serving_at)
    finally:
        monitor.stop()
        simulator.kill()
        simulator.wait()
    return late_reports, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=int, default=38)
    parser.add_argument("--restarts", type=int, default=20)
    parser.add_argument("--src", help="a src/ directory to run the monitor from (default: installed)")
    arguments = parser.parse_args()
    src = str(Path(arguments.src).resolve()) if arguments.src else None
    with tempfile.TemporaryDirectory(prefix="bench-faults-", dir="/tmp") as name:
        directory = Path(name)
        print(f"hung runtime beside sim: at {PERIOD} s, {arguments.reports} reports")
        for label, with_hung in (("without (baseline)", False), ("with a hung socket", True)):
            r = hung_scenario(directory, src, arguments.reports, with_hung)
            print(
                f"  {label:<19} reports >{LATE_GAP_S} s apart {r['late']:3d}/{r['gaps']}  "
                f"sim: period {r['min']:.3f}-{r['max']:.3f} s, off by >5 % {r['off']}/{r['periods']}  "
                f"hung runtime's groups in error {r['hung_errors']}"
            )
        late, seconds = restart_scenario(directory, src, arguments.restarts)
        within_one = sum(count == 0 for count in late)
        print(f"runtime killed and restarted {len(late)} times at {PERIOD} s")
        print(
            f"  error cleared at the first tick after the socket was back (within one period) "
            f"{within_one}/{len(late)}; reports still in error after it: "
            f"max {max(late)}, mean {statistics.fmean(late):.2f}"
        )
        print(
            f"  serving -> first clean report: median {statistics.median(seconds):.3f} s, "
            f"max {max(seconds):.3f} s ({max(seconds) / PERIOD:.1f} periods)"
        )


if __name__ == "__main__":
    main()
