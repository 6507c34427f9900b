"""The bridge running a (fake) neuron-monitor binary: argument list, generated config, restarts;
and the CLI reading hostile neuron-monitor lines from stdin."""

from __future__ import annotations

import json
import os
import random
import subprocess
import time
from pathlib import Path

import pytest
from monitor_cli import clean_environment, monitor_command
from neuron_monitor_mutations import fixture_documents, random_hostile_line

from otel_neuron.groups.base import GroupSample
from otel_neuron.groups.neuron_monitor import create_bridge_groups
from otel_neuron.sources.neuron_monitor_bridge import BridgeRegistry

FIXTURES = Path(__file__).parents[1] / "fixtures" / "neuron-monitor"
FAKE = FIXTURES / "fake-neuron-monitor"
CRASHING = FIXTURES / "crashing-neuron-monitor"
OUT_OF_RANGE = FIXTURES / "out-of-range.jsonl"


def wait_for(condition, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def running(pid: int) -> bool:
    """Whether a process `pid` exists (a child stopped and reaped no longer does)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def completed(sample: GroupSample) -> int:
    return sum(
        int(value)
        for attributes, value in sample.points.get("neuron.inference.count", ())
        if attributes["neuron.inference.outcome"] == "completed"
    )


def test_spawns_the_binary_with_a_generated_config_and_stops_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "starts.jsonl"
    monkeypatch.setenv("FAKE_NM_LOG", str(log))
    registry = BridgeRegistry()
    groups = create_bridge_groups(
        0,
        f"neuron-monitor:{FAKE}",
        ["inference_stats", "hw_counters"],
        0.8,
        periods={"inference_stats": 1.0, "hw_counters": 2.0},
        registry=registry,
    )
    for group in groups:
        group.prime()
    bridge = registry.bridges()[0]
    wait_for(lambda: bridge.parser.lines >= 5)
    stats = next(group for group in groups if group.report_key == "inference_stats")
    sample = stats.sample()
    assert sample.error == ""
    assert completed(sample) == 50 + 60 + 70 + 5 * 3  # both runtimes; repeats of the last line not recounted
    assert bridge.parser.malformed == 2

    (start,) = [json.loads(line) for line in log.read_text().splitlines()]
    binary, flag, config_path = start["argv"]
    assert (Path(binary).resolve(), flag) == (FAKE.resolve(), "-c")
    assert start["config"]["neuron_runtimes"] == [
        {"tag_filter": ".*", "metrics": [{"type": "execution_stats", "period": "1s"}]}
    ]
    assert start["config"]["system_metrics"] == [{"type": "neuron_hw_counters", "period": "2s"}]

    assert running(start["pid"])
    for group in groups:
        group.close()  # type: ignore[attr-defined]
    assert not running(start["pid"])  # the last group closed stopped neuron-monitor (and reaped it)
    assert not Path(config_path).exists()  # and removed the generated config


def test_a_dying_neuron_monitor_is_restarted_with_backoff(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "starts.log"
    monkeypatch.setenv("FAKE_NM_LOG", str(log))
    registry = BridgeRegistry()
    (group,) = create_bridge_groups(
        0, f"neuron-monitor:{CRASHING}", ["inference_stats"], 0.8, registry=registry
    )
    group.prime()
    wait_for(lambda: log.exists() and len(log.read_text().split()) >= 3, timeout=10.0)
    starts = [float(value) for value in log.read_text().split()]
    gaps = [later - earlier for earlier, later in zip(starts, starts[1:], strict=False)]
    assert gaps[0] >= 0.45 and gaps[1] >= 0.95  # 0.5 s, then 1 s
    bridge = registry.bridges()[0]
    wait_for(lambda: "exited" in bridge.status)  # the third run died; the next waits 2 s
    sample = group.sample()
    assert sample.points == {}
    assert (
        "crashing-neuron-monitor exited with status 3: fatal: lost the Neuron driver; restarting in"
        in sample.error
    )
    assert "exited with status 3" in group.runtime_error()
    group.close()  # type: ignore[attr-defined]
    count = len(log.read_text().split())
    time.sleep(1.5)
    assert len(log.read_text().split()) == count  # closed: no more restarts


def test_a_missing_binary_is_a_group_error_not_a_crash() -> None:
    registry = BridgeRegistry()
    (group,) = create_bridge_groups(
        0, "neuron-monitor:/nonexistent/neuron-monitor", ["memory_used"], 0.8, registry=registry
    )
    group.prime()
    bridge = registry.bridges()[0]
    wait_for(lambda: "cannot start" in bridge.status)
    sample = group.sample()
    assert sample.error.startswith(
        "cannot start /nonexistent/neuron-monitor: No such file or directory; restarting in"
    )
    group.close()  # type: ignore[attr-defined]


def test_the_fake_binary_is_executable() -> None:
    assert os.access(FAKE, os.X_OK) and os.access(CRASHING, os.X_OK)


def test_hostile_lines_from_a_spawned_neuron_monitor_never_stop_its_reader(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FAKE_NM_STREAM", str(OUT_OF_RANGE))
    registry = BridgeRegistry()
    groups = create_bridge_groups(
        0, f"neuron-monitor:{FAKE}", ["inference_stats", "memory_used"], 0.8, registry=registry
    )
    for group in groups:
        group.prime()
    bridge = registry.bridges()[0]
    wait_for(lambda: bridge.parser.lines >= 7)  # the five lines, then repeats of the last one
    stats = next(group for group in groups if group.report_key == "inference_stats")
    sample = stats.sample()
    assert sample.error == ""
    assert completed(sample) == 50 + 60 + 70 + 80  # a percentile of 400 digits, NaN, 1e999, ...
    assert bridge.parser.malformed == 1  # 20,000 nested arrays
    assert bridge.starts == 1  # read on, not restarted
    for group in groups:
        group.close()  # type: ignore[attr-defined]


def run_from_stdin(lines: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*monitor_command(), "--from-stdin", "--validate", "--imds", "off"],
        input="\n".join(lines) + "\n",
        env=clean_environment(),
        capture_output=True,
        text=True,
        timeout=30,  # before issue 15 the monitor never ended: it had stopped reading
        check=False,
    )


def test_the_cli_reads_on_after_a_line_of_400_digits_and_ends_at_end_of_input() -> None:
    hostile = OUT_OF_RANGE.read_text().splitlines()
    result = run_from_stdin([hostile[0], hostile[-1]])  # a percentile of 400 digits, then a good line
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no traceback, and --validate found every report as the schema says
    (line,) = result.stdout.splitlines()  # the end of input ended the monitor
    entry = json.loads(line)["neuron_runtime_data"][0]
    assert entry["error"] == "stdin closed: no more neuron-monitor reports"
    stats = entry["report"]["inference_stats"]
    assert stats["error"] == ""
    assert stats["inference_summary"]["completed"] == 50 + 80


def test_the_cli_reads_a_fuzzed_stream_to_its_end_and_reports_within_the_schema() -> None:
    documents = fixture_documents()
    rng = random.Random(15)
    lines = [random_hostile_line(rng, documents) for _ in range(300)]
    good = json.loads((FIXTURES / "v1.jsonl").read_text().splitlines()[0])
    good["neuron_runtime_data"][0]["report"]["memory_used"]["neuron_runtime_used_bytes"]["host"] = 123456789
    result = run_from_stdin([*lines, json.dumps(good)])
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    (line,) = result.stdout.splitlines()
    memory = json.loads(line)["neuron_runtime_data"][0]["report"]["memory_used"]
    assert memory["error"] == ""
    assert memory["neuron_runtime_used_bytes"]["host"] == 123456789  # the last line was read and used


def test_a_spawned_neuron_monitor_with_two_applications_gives_two(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_NM_STREAM", str(FIXTURES / "trn1-32xlarge.jsonl"))
    registry = BridgeRegistry()
    groups = create_bridge_groups(
        0, f"neuron-monitor:{FAKE}", ["memory_used", "neuron_runtime_vcpu_usage"], 0.8, registry=registry
    )
    for group in groups:
        group.prime()
    bridge = registry.bridges()[0]
    wait_for(lambda: bridge.parser.reports >= 2)
    memory, vcpu = (group.sample() for group in groups)
    assert memory.error == "" and vcpu.error == ""
    applications = {
        (attributes["process.pid"], attributes["neuron.runtime.tag"])
        for attributes, _ in memory.points["neuron.runtime.memory.usage"]
    }
    assert applications == {(457402, "367"), (461023, "llama_b")}
    failed = [
        attributes["error.message"]
        for attributes, value in vcpu.points["neuron.monitor.application.error"]
        if value == 1
    ]
    assert failed == ["open/proc/457402/stat:nosuchfileordirectory"]
    for group in groups:
        group.close()  # type: ignore[attr-defined]
