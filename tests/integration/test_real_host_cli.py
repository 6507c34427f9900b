"""The CLI with a sysfs: runtime and a stdin: runtime fed a piped neuron-monitor 2.x stream."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

FIXTURES = Path(__file__).parents[1] / "fixtures"


def test_piped_neuron_monitor_and_sysfs_reach_the_json_report(tmp_path: Path) -> None:
    config = tmp_path / "monitor.conf"
    config.write_text(
        json.dumps(
            {
                "period": "1s",
                "neuron_runtimes": [
                    {"address": f"sysfs:{FIXTURES / 'sysfs' / 'trn1'}", "metrics": [{"type": "memory_used"}]},
                    {"address": "stdin:", "metrics": [{"type": "inference_stats"}]},
                ],
                "system_metrics": [],
            }
        )
    )
    stream = (FIXTURES / "neuron-monitor" / "v2.jsonl").read_bytes()
    read_end, write_end = os.pipe()
    os.write(write_end, stream)  # and keep it open, as a live neuron-monitor does
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "otel_neuron", "-c", str(config), "--max-reports", "1"],
            stdin=read_end,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        out, err = process.communicate(timeout=20)
    finally:
        os.close(read_end)
        os.close(write_end)
    assert process.returncode == 0, err.decode()
    report = json.loads(out.decode().splitlines()[0])
    sysfs, bridged = report["neuron_runtime_data"]
    # The trees' `total` files (tests/fixtures/sysfs/make_trees.py), not `present` (the last allocation).
    assert sysfs["report"]["memory_used"]["neuron_runtime_used_bytes"] == {
        "host": 108_000,
        "neuron_device": 396_000_000,
    }
    stats = bridged["report"]["inference_stats"]
    assert stats["error"] == ""
    assert stats["inference_summary"]["completed"] == 50 + 60 + 70 + 5 * 3
    assert b"Fatal Python error" not in err


def test_from_stdin_writes_a_last_report_when_the_stream_ends_and_exits_0() -> None:
    stream = (FIXTURES / "neuron-monitor" / "v2.jsonl").read_bytes()
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "otel_neuron", "--from-stdin", "--validate"],
        input=stream,
        capture_output=True,
        timeout=20,
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr.decode()
    assert result.stderr == b""
    # The default period is 5 s: the end of the stream, not the schedule, ended the run.
    assert elapsed < 4.0
    (line,) = result.stdout.decode().splitlines()
    entry = json.loads(line)["neuron_runtime_data"][0]
    assert entry["error"] == "stdin closed: no more neuron-monitor reports"
    stats = entry["report"]["inference_stats"]
    assert stats["error"] == ""
    assert stats["inference_summary"]["completed"] == 50 + 60 + 70 + 5 * 3
