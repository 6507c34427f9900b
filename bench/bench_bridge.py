"""CPU cost of bridging a trn1.32xlarge-sized neuron-monitor 2.x stream at 1 s, against parsing it alone.

Each second neuron-monitor writes one report; the bridge parses it, folds it into the windows of
its groups, and at the tick every group is sampled. The stream is tests/fixtures/neuron-monitor's
trn1.32xlarge shape (two applications of 16 NeuronCores, 44 loaded models with per-subgraph memory
breakdowns, 16 devices, 128 vCPUs), each report with new counts so that every one is fresh.

  bridge    bridge.take(line) + sample the six bridge groups (all groups, neuron_hardware_info too)
  otel      bridge + build the OpenTelemetry MetricsData every exporter gets
  orjson    orjson.loads(line) alone: the floor

Printed: CPU seconds per report, the CPU % of one core at one report a second, and each against
the floor measured in the same run.
Run: .venv/bin/python bench/bench_bridge.py
"""

from __future__ import annotations

import importlib.util
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import orjson
from opentelemetry.sdk.resources import Resource

from otel_neuron.groups.neuron_monitor import create_bridge_groups
from otel_neuron.producer import Collected, MetricsDataProducer
from otel_neuron.sources.neuron_monitor_bridge import BridgeRegistry

FIXTURES = Path(__file__).parents[1] / "tests" / "fixtures" / "neuron-monitor"
GROUPS = ["neuroncore_counters", "inference_stats", "memory_used", "hw_counters", "neuron_runtime_vcpu_usage"]
REPORTS = 60


def trn1_lines(count: int) -> list[bytes]:
    spec = importlib.util.spec_from_file_location("make_fixtures", FIXTURES / "make_fixtures.py")
    assert spec is not None and spec.loader is not None
    fixtures = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fixtures)
    lines = []
    for step in range(count):
        report = fixtures.trn1_report(step % 2)
        for entry in report["neuron_runtime_data"]:  # new counts in every report
            entry["report"]["execution_stats"]["execution_summary"]["completed"] += step
            entry["report"]["neuroncore_counters"]["period"] += step * 1e-6
        lines.append(json.dumps(report, separators=(",", ":")).encode())
    return lines


def bridged(with_otel: bool) -> Callable[[bytes], object]:
    read_end, _ = os.pipe()  # a stdin that never ends; the lines are handed to the reader's step
    registry = BridgeRegistry(stdin=os.fdopen(read_end, "rb"))
    groups = create_bridge_groups(0, "stdin:", GROUPS, 0.8, registry=registry, hardware_info=True)
    bridge = registry.bridges()[0]
    for group in groups:
        group.prime()
    producer = MetricsDataProducer(Resource.get_empty())

    def second(line: bytes) -> object:
        bridge.take(line)
        samples = [Collected(group, group.sample()) for group in groups]
        failed = [sample.error for _, sample in samples if sample.error]
        if failed:
            raise RuntimeError(f"a group failed: {failed[0]}")
        return producer.produce(samples) if with_otel else samples

    return second


def cost_s(step: Callable[[bytes], object], lines: list[bytes], repeats: int = 5) -> float:
    """Median over `repeats` passes of the CPU seconds one report costs."""
    for line in lines[:3]:
        step(line)
    passes = []
    for _ in range(repeats):
        start = time.process_time()
        for line in lines:
            step(line)
        passes.append((time.process_time() - start) / len(lines))
    return statistics.median(passes)


def main() -> None:
    lines = trn1_lines(REPORTS)
    print(f"trn1.32xlarge-sized 2.x stream: {len(lines)} reports of {len(lines[0]) / 1024:.0f} KiB")
    floor = cost_s(orjson.loads, lines)
    results = {
        "orjson": floor,
        "bridge": cost_s(bridged(with_otel=False), lines),
        "otel": cost_s(bridged(with_otel=True), lines),
    }
    for name, seconds in results.items():
        print(
            f"{name:>7}: {seconds * 1e3:7.2f} ms/report = {seconds * 100:5.2f} % of one core at 1 s"
            f"   ({seconds / floor:5.1f} x orjson)"
        )


if __name__ == "__main__":
    main()
