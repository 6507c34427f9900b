"""The bridge running a (fake) neuron-monitor binary: argument list, generated config, restarts."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from otel_neuron.groups.base import GroupSample
from otel_neuron.groups.neuron_monitor import create_bridge_groups
from otel_neuron.sources.neuron_monitor_bridge import BridgeRegistry

FIXTURES = Path(__file__).parents[1] / "fixtures" / "neuron-monitor"
FAKE = FIXTURES / "fake-neuron-monitor"
CRASHING = FIXTURES / "crashing-neuron-monitor"


def wait_for(condition, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


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

    process = bridge._process
    assert process is not None and process.poll() is None
    for group in groups:
        group.close()  # type: ignore[attr-defined]
    assert process.poll() is not None  # the last group closed stopped neuron-monitor
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
