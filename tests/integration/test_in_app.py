"""An instrumented application as a real process: opentelemetry-instrument, and a daemon polling it."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from otel_neuron.report_schema import report_problem
from otel_neuron.semconv import OUTCOMES

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "examples" / "inference_app.py")
BIN = Path(sys.executable).parent
QUIET_SDK = {
    "OTEL_METRICS_EXPORTER": "none",
    "OTEL_TRACES_EXPORTER": "none",
    "OTEL_LOGS_EXPORTER": "none",
    "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",  # never anything but loopback
}


def environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "NEURON_RT"))}
    env.update(QUIET_SDK)
    env.update(extra)
    return env


@pytest.fixture
def socket_dir(tmp_path: Path) -> Iterator[Path]:
    """tmp_path, or a shorter directory when tmp_path would overflow a unix socket path."""
    if len(str(tmp_path)) < 80:
        yield tmp_path
        return
    with tempfile.TemporaryDirectory(prefix="on-", dir="/tmp") as short:
        yield Path(short)


class Lines:
    """A process's stream, read by a thread, so tests can wait for lines with a timeout."""

    def __init__(self, stream: Any) -> None:
        self._queue: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream: Any) -> None:
        for line in stream:
            self._queue.put(line)

    def next(self, timeout: float) -> str | None:
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None


def test_opentelemetry_instrument_discovers_the_neuron_entry_point() -> None:
    probe = "import otel_neuron; print(otel_neuron.NeuronInstrumentor().is_instrumented_by_opentelemetry)"
    instrument = [str(BIN / "opentelemetry-instrument"), sys.executable, "-c", probe]
    found = subprocess.run(instrument, env=environment(), capture_output=True, text=True, timeout=60)
    assert found.stdout.strip() == "True", found.stderr
    disabled = environment(OTEL_PYTHON_DISABLED_INSTRUMENTATIONS="neuron")
    skipped = subprocess.run(instrument, env=disabled, capture_output=True, text=True, timeout=60)
    assert skipped.stdout.strip() == "False", skipped.stderr


def test_the_auto_instrumented_example_app_reports_the_groups_its_environment_selects() -> None:
    command = [str(BIN / "opentelemetry-instrument"), sys.executable, APP, "--inferences", "300"]
    command += ["--report-interval", "0.3"]
    env = environment(OTEL_NEURON_SYSTEM_METRICS="memory_info", OTEL_NEURON_RUNTIME_METRICS="inference_stats")
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    tally = json.loads(done.stderr.split("done ", 1)[1].splitlines()[0])
    reports = [json.loads(line) for line in done.stdout.splitlines()]
    assert reports and all(report_problem(report) == "" for report in reports)
    assert set(reports[-1]["system_data"]) == {"memory_info"}
    assert set(reports[-1]["neuron_runtime_data"][0]["report"]) == {"inference_stats"}
    summed = dict.fromkeys(OUTCOMES, 0)
    for report in reports:  # in-app every export is a new period of every group
        stats = report["neuron_runtime_data"][0]["report"]["inference_stats"]
        for name in OUTCOMES:
            summed[name] += stats["inference_summary"][name]
    assert summed == {name: tally.get(name, 0) for name in OUTCOMES}


def test_a_daemon_monitors_the_instrumented_app_over_a_unix_socket(socket_dir: Path) -> None:
    path = socket_dir / "app.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))  # a socket file nobody listens on, as a crashed app leaves behind
    stale.close()
    config = socket_dir / "monitor.conf"
    config.write_text(
        json.dumps(
            {
                "period": "500ms",
                "neuron_runtimes": [
                    {
                        "address": f"unix:{path}",
                        "metrics": [
                            {"type": t} for t in ("inference_stats", "memory_used", "neuroncore_counters")
                        ],
                    }
                ],
                "system_metrics": [],
            }
        )
    )
    daemon = subprocess.Popen(
        [str(BIN / "otel-neuron-monitor"), "-c", str(config), "--validate", "--imds", "off"],
        env=environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    app = subprocess.Popen(
        [sys.executable, APP, "--address", f"unix:{path}", "--inferences", "1500", "--threads", "6"]
        + ["--delay", "2", "--duration", "60", "--error-rate", "0.1"],
        env=environment(),
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        reports, app_lines = Lines(daemon.stdout), Lines(app.stderr)
        summed = dict.fromkeys(OUTCOMES, 0)
        tally: dict[str, int] | None = None
        models: list[str] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            # Generous: start-up on a loaded machine can take seconds; a daemon that stops reporting
            # at a 0.5 s period still fails here long before the 60 s run ends.
            line = reports.next(timeout=10)
            assert line is not None, "the daemon stopped reporting"
            report = json.loads(line)
            entry = report["neuron_runtime_data"][0]
            stats = entry["report"].get("inference_stats", {})
            if entry["error"] == "" and stats.get("error") == "":
                for name in OUTCOMES:
                    summed[name] += stats["inference_summary"][name]
                models = [m["name"] for m in entry["report"]["memory_used"]["loaded_models"]]
            if tally is None:
                said = app_lines.next(timeout=0)
                tally = json.loads(said.split("done ", 1)[1]) if said and said.startswith("done ") else None
            if tally is not None and summed == {name: tally.get(name, 0) for name in OUTCOMES}:
                break
        assert tally is not None, "the app never finished its workload"
        assert summed == {name: tally.get(name, 0) for name in OUTCOMES}
        assert sum(tally.values()) == 1500 and tally["completed"] < 1500
        assert models == ["resnet50"]
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600

        app.send_signal(signal.SIGTERM)
        assert app.wait(timeout=10) == 0
        assert not path.exists(), "the app left its socket file behind"
        for _ in range(10):  # the daemon notices within a period or two
            entry = json.loads(reports.next(timeout=2) or "{}")["neuron_runtime_data"][0]
            if entry["error"]:
                break
        assert "cannot connect" in entry["error"] or "no such file" in entry["error"], entry["error"]
    finally:
        for process in (app, daemon):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=10)
    assert "does not match" not in (daemon.stderr.read() if daemon.stderr else "")
