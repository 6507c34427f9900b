"""AWS's neuron-monitor-prometheus.py reads every `--output-format 2` report, from every source.

Each source the CLI can run here writes a few 2.x reports; all of them go, in order, through the
script's reads (tests/aws_neuron_monitor_prometheus.py), which raise where the script would die.
Also: an application that leaves the neuron-monitor stream leaves the 2.x report.
"""

from __future__ import annotations

import json
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aws_neuron_monitor_prometheus import NeuronMonitorPrometheus
from monitor_cli import FIXTURES, clean_environment, monitor_command, reports, run_monitor, write_config

RUNTIME_GROUPS = [
    {"type": group}
    for group in (
        "neuroncore_counters",
        "inference_stats",
        "memory_used",
        "neuron_runtime_vcpu_usage",
        "hw_counters",
    )
]
SYSTEM_GROUPS = [{"type": "vcpu_usage"}, {"type": "memory_info"}]
SYSFS_GROUPS = [
    {"type": group}
    for group in ("memory_used", "hw_counters", "neuron_hardware_info", "neuron_power", "neuroncore_status")
]
STREAM = FIXTURES / "neuron-monitor" / "v2.jsonl"
SIMULATOR = [sys.executable, "-m", "otel_neuron.runtime.simulator_cli"]


def config_of(*runtimes: dict[str, Any]) -> dict[str, Any]:
    return {"period": "200ms", "neuron_runtimes": list(runtimes), "system_metrics": SYSTEM_GROUPS}


def read_all(lines: list[dict[str, Any]]) -> NeuronMonitorPrometheus:
    """Every report through the script's reads, as one running script would take them."""
    assert lines, "no report"
    script = NeuronMonitorPrometheus()
    for report in lines:
        script.read(report)
    return script


def monitor_v2(config: dict[str, Any], directory: Path, reports_wanted: int = 3) -> list[dict[str, Any]]:
    path = write_config(directory, config)
    result = run_monitor(
        ["-c", str(path), "--imds", "off", "--output-format", "2", "--max-reports", str(reports_wanted)]
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return reports(result.stdout)


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="aws-reads-", dir="/tmp"))  # short: unix socket paths are
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def test_sim_runtime(tmp_path: Path) -> None:
    lines = monitor_v2(config_of({"address": "sim:", "metrics": RUNTIME_GROUPS}), tmp_path)
    script = read_all(lines)
    exposition = script.exposition()
    assert "neuroncore_utilization_ratio{" in exposition and "execution_status_total{" in exposition
    assert "hardware_ecc_events_total{" in exposition and "system_vcpu_count{" in exposition
    assert script.errors == []


def test_runtime_protocol_simulator_on_a_unix_socket(tmp_path: Path, socket_dir: Path) -> None:
    address = f"unix:{socket_dir}/runtime.sock"
    simulator = subprocess.Popen([*SIMULATOR, "--address", address], stderr=subprocess.PIPE, text=True)
    try:
        line = simulator.stderr.readline() if simulator.stderr else ""
        assert "serving" in line, line
        lines = monitor_v2(
            config_of({"address": address, "metrics": RUNTIME_GROUPS}), tmp_path, reports_wanted=4
        )
    finally:
        simulator.terminate()
        simulator.wait(timeout=10)
    script = read_all(lines)
    assert "neuron_runtime_memory_used_bytes{" in script.exposition()
    # The first report can carry the baseline's "per-period values start next period"; the last none.
    assert all(group["error"] == "" for group in lines[-1]["neuron_runtime_data"][0]["report"].values())


def test_sysfs_tree(tmp_path: Path) -> None:
    config = config_of({"address": f"sysfs:{FIXTURES / 'sysfs' / 'trn1'}", "metrics": SYSFS_GROUPS})
    script = read_all(monitor_v2(config, tmp_path))
    exposition = script.exposition()
    assert "neuroncore_memory_usage_tensors{" in exposition
    assert "neuron_hardware_info{" in exposition and "hardware_ecc_events_total{" in exposition


@pytest.mark.parametrize("form", ["1.x config", "2.x config"])
def test_bridge_from_stdin(tmp_path: Path, form: str) -> None:
    if form == "1.x config":
        config = config_of({"address": "stdin:", "metrics": RUNTIME_GROUPS})
    else:
        config = {
            "period": "200ms",
            "neuron_runtimes": [
                {
                    "tag_filter": ".*",
                    "metrics": [
                        {"type": group}
                        for group in (
                            "neuroncore_counters",
                            "memory_used",
                            "neuron_runtime_vcpu_usage",
                            "execution_stats",
                        )
                    ],
                }
            ],
            "system_metrics": [*SYSTEM_GROUPS, {"type": "neuron_hw_counters"}],
        }
    path = write_config(tmp_path, config)
    result = subprocess.run(
        [*monitor_command(), "-c", str(path), "--from-stdin", "--imds", "off", "--output-format", "2"],
        input=STREAM.read_bytes(),
        capture_output=True,
        timeout=30,
        check=False,
        env=clean_environment(),
    )
    assert result.returncode == 0, result.stderr.decode()
    lines = reports(result.stdout.decode())
    read_all(lines)
    assert lines[-1]["system_data"]["neuron_hw_counters"]["error"] == ""


def test_bridge_from_a_spawned_neuron_monitor(tmp_path: Path) -> None:
    fake = FIXTURES / "neuron-monitor" / "fake-neuron-monitor"
    config = config_of({"address": f"neuron-monitor:{fake}", "metrics": RUNTIME_GROUPS})
    read_all(monitor_v2(config, tmp_path))


# --- an application that exits


def stream_line(*tags: str) -> bytes:
    """The fixture's first report with only the applications of `tags`."""
    document = json.loads(STREAM.read_text().splitlines()[0])
    document["neuron_runtime_data"] = [
        r for r in document["neuron_runtime_data"] if r["neuron_runtime_tag"] in tags
    ]
    return (json.dumps(document) + "\n").encode()


def test_an_application_that_leaves_the_stream_leaves_the_2x_report_within_two_periods(
    tmp_path: Path,
) -> None:
    config = write_config(tmp_path, config_of({"address": "stdin:", "metrics": RUNTIME_GROUPS}))
    process = subprocess.Popen(
        [
            *monitor_command(),
            "-c",
            str(config),
            "--imds",
            "off",
            "--output-format",
            "2",
            "--max-reports",
            "12",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=clean_environment(),
    )
    got: queue.Queue[dict[str, Any]] = queue.Queue()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            got.put(json.loads(line))

    threading.Thread(target=read, daemon=True).start()
    assert process.stdin is not None
    tags_seen: list[list[str]] = []
    try:
        # Lock-step: one upstream report, then one of ours. Both applications twice, then app_a alone.
        for both in (True, True, False, False, False, False):
            process.stdin.write(stream_line("app_a", "app_b") if both else stream_line("app_a"))
            process.stdin.flush()
            report = got.get(timeout=20)
            tags_seen.append([entry["neuron_runtime_tag"] for entry in report["neuron_runtime_data"]])
    finally:
        process.kill()
        process.wait(timeout=10)
    assert "app_b" in tags_seen[1]
    after_leaving = tags_seen[2:]
    gone_at = next(i for i, tags in enumerate(after_leaving) if "app_b" not in tags)
    assert gone_at <= 1, tags_seen  # within two periods
    assert all(tags == ["app_a"] for tags in after_leaving[gone_at:]), tags_seen
