"""--output-format none: a daemon that only exports writes nothing to stdout (its container log)."""

from __future__ import annotations

import signal
import time
import urllib.request
from pathlib import Path

from monitor_cli import run_monitor, start_monitor, write_config
from peers import free_port, wait_for_port

CONFIG = {
    "period": "200ms",
    "neuron_runtimes": [
        {"address": "sim:?cores=2&models=1&seed=3", "metrics": [{"type": "neuroncore_counters"}]}
    ],
    "system_metrics": [{"type": "memory_info"}],
}


def _scrape_until(port: int, name: str, deadline_s: float = 20.0) -> str:
    deadline = time.monotonic() + deadline_s
    text = ""
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            text = answer.read().decode()
        if name in text:
            return text
        time.sleep(0.2)
    return text


def test_an_export_only_daemon_serves_metrics_and_writes_no_report(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(tmp_path, CONFIG)
    process = start_monitor(
        ["-c", str(config), "--imds", "off", "--output-format", "none", "--prometheus", f"127.0.0.1:{port}"]
    )
    try:
        wait_for_port(port, process)
        text = _scrape_until(port, "neuron_core_utilization")
        assert "neuron_core_utilization{" in text
        assert "system_memory_limit_bytes" in text
    finally:
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=20)
    assert process.returncode == 0
    assert stdout == ""
    assert "Traceback" not in stderr


def test_no_report_and_no_exporter_is_refused_in_one_line(tmp_path: Path) -> None:
    config = write_config(tmp_path, CONFIG)
    result = run_monitor(["-c", str(config), "--output-format", "none"])
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and "--otlp or --prometheus" in result.stderr
