"""The bridge fed fixture streams through a pipe, like `neuron-monitor | otel-neuron-monitor --from-stdin`."""

from __future__ import annotations

import io
import itertools
import json
import logging
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from neuron_monitor_mutations import hostile_lines
from opentelemetry.sdk.resources import Resource

from otel_neuron.exporters.report_json import ReportJsonExporter
from otel_neuron.groups.base import GroupSample, HistogramDelta
from otel_neuron.groups.neuron_monitor import create_bridge_groups
from otel_neuron.groups.runtime import INFERENCE_COUNT
from otel_neuron.pipeline import MonitorPipeline, ScheduledGroup
from otel_neuron.report_schema import report_problem
from otel_neuron.sources import neuron_monitor_bridge
from otel_neuron.sources.neuron_monitor_bridge import (
    BridgeRegistry,
    generated_config,
    parse_bridge_address,
)

FIXTURES = Path(__file__).parents[1] / "fixtures" / "neuron-monitor"
ALL_GROUPS = [
    "neuroncore_counters",
    "inference_stats",
    "memory_used",
    "hw_counters",
    "neuron_runtime_vcpu_usage",
]


class Pipe:
    """A stdin stand-in: lines written by the test arrive at the bridge's reader thread."""

    def __init__(self) -> None:
        read_fd, self._write_fd = os.pipe()
        self.reader: IO[bytes] = os.fdopen(read_fd, "rb")

    def write_lines(self, lines: list[str]) -> None:
        os.write(self._write_fd, ("\n".join(lines) + "\n").encode())

    def close(self) -> None:
        os.close(self._write_fd)


@pytest.fixture
def pipe() -> Iterator[Pipe]:
    pipe = Pipe()
    yield pipe
    try:
        pipe.close()
    except OSError:
        pass


def lines(name: str) -> list[str]:
    return (FIXTURES / name).read_text().splitlines()


def wait_for(condition, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def sample_all(groups) -> dict[str, GroupSample]:  # type: ignore[no-untyped-def]
    return {group.report_key: group.sample() for group in groups}


def rendered(groups, samples: dict[str, GroupSample]) -> dict[str, dict]:  # type: ignore[no-untyped-def]
    return {group.report_key: group.render(samples[group.report_key].points) for group in groups}


def test_v1_stream_feeds_all_five_groups(pipe: Pipe) -> None:
    registry = BridgeRegistry(stdin=pipe.reader)
    groups = create_bridge_groups(0, "stdin:", ALL_GROUPS, 0.8, registry=registry)
    for group in groups:
        group.prime()
    before = sample_all(groups)
    assert all("waiting for the first report from stdin" in s.error for s in before.values())

    pipe.write_lines(lines("v1.jsonl"))
    bridge = registry.bridges()[0]
    wait_for(lambda: bridge.parser.lines == 5)
    assert bridge.parser.malformed == 1
    samples = sample_all(groups)
    assert all(sample.error == "" for sample in samples.values()), samples
    report = rendered(groups, samples)
    stats = report["inference_stats"]
    assert stats["inference_summary"]["completed"] == 330
    assert stats["inference_summary"]["completed_with_err"] == 2
    assert stats["error_summary"]["generic"] == 2
    assert stats["latency_stats"]["total_latency"]["p50"] == pytest.approx(0.013, rel=0.01)
    assert stats["latency_stats"]["total_latency"]["p100"] == 0.02
    # hw_counters repeats its 2 s group on every line: each distinct body counts once (1 + 3)
    assert report["hw_counters"]["neuron_devices"] == [
        {
            "neuron_device_index": 0,
            "mem_ecc_corrected": 4,
            "mem_ecc_uncorrected": 0,
            "sram_ecc_uncorrected": 0,
        }
    ]
    cores = report["neuroncore_counters"]["neuroncores_in_use"]
    assert cores["0"]["neuroncore_utilization"] == pytest.approx(41.5, abs=0.01)  # 40..43 time-weighted
    assert cores["1"] == {"neuroncore_utilization": 10.0, "loaded_models": ["my_model:sg01"]}
    memory = report["memory_used"]
    assert memory["neuron_runtime_used_bytes"] == {"host": 1000003, "neuron_device": 2000000}
    assert memory["loaded_models"][0]["subgraphs"]["sg00"]["neuroncore_index"] == 0
    assert report["neuron_runtime_vcpu_usage"]["vcpu_usage"] == {"user": 42.01, "system": 12.34}

    # Nothing new arrived: counts of the next period are zero, amounts and utilization stay.
    again = rendered(groups, sample_all(groups))
    assert again["inference_stats"]["inference_summary"]["completed"] == 0
    assert again["inference_stats"]["latency_stats"]["total_latency"] is None
    assert again["neuroncore_counters"]["neuroncores_in_use"]["0"]["neuroncore_utilization"] == 43.0
    assert again["memory_used"]["neuron_runtime_used_bytes"]["host"] == 1000003

    pipe.close()
    wait_for(bridge.finished.is_set)
    closed = sample_all(groups)
    assert all(s.error == "stdin closed: no more neuron-monitor reports" for s in closed.values())
    for group in groups:
        group.close()  # type: ignore[attr-defined]


def test_v2_runtimes_are_selected_by_tag_and_survive_a_restart(pipe: Pipe) -> None:
    registry = BridgeRegistry(stdin=pipe.reader)
    app_a = create_bridge_groups(0, "stdin:?tag_filter=^app_a$", ALL_GROUPS, 0.8, registry=registry)
    app_b = create_bridge_groups(1, "stdin:?tag_filter=app_b", ALL_GROUPS, 0.8, registry=registry)
    assert len(registry.bridges()) == 1  # one stream shared by both configured runtimes
    for group in [*app_a, *app_b]:
        group.prime()
    stream = lines("v2.jsonl")
    bridge = registry.bridges()[0]

    pipe.write_lines(stream[:2])
    wait_for(lambda: bridge.parser.lines == 2)
    first = {group.report_key: group.sample() for group in app_a}
    pipe.write_lines(stream[2:])  # a truncated line, garbage, then app_a restarted as pid 1300
    wait_for(lambda: bridge.parser.lines == 5)
    second = {group.report_key: group.sample() for group in app_a}

    def completed(sample: GroupSample) -> int:
        points = sample.points[INFERENCE_COUNT.name]
        return sum(
            int(value)
            for attributes, value in points
            if attributes["neuron.inference.outcome"] == "completed"
        )

    assert completed(first["inference_stats"]) == 110
    assert completed(second["inference_stats"]) == 70  # the restarted runtime's counts add on, no reset
    errors = {a["error.type"]: v for a, v in first["inference_stats"].points["neuron.inference.errors"]}
    assert errors["model"] == 2  # 2.x model errors travel through OTel
    report_a = rendered(app_a, second)
    # Memory is the restarted runtime's alone: the old pid left the stream.
    assert report_a["memory_used"]["neuron_runtime_used_bytes"] == {
        "host": 6997643264,
        "neuron_device": 12519788544,
    }
    assert set(report_a["neuroncore_counters"]["neuroncores_in_use"]) == {"0", "1"}
    categories = {
        a["neuron.memory.category"]: v
        for a, v in second["memory_used"].points["neuron.runtime.host_memory.usage"]
    }
    assert categories["dma_buffers"] == 1048576
    flops = dict(
        (a["neuron.core.index"], v)
        for a, v in second["neuroncore_counters"].points["neuron.core.effective_flops"]
    )
    assert flops == {0: 1.2e12, 1: 1.1e12}

    samples_b = {group.report_key: group.sample() for group in app_b}
    report_b = rendered(app_b, samples_b)
    assert report_b["inference_stats"]["inference_summary"]["completed"] == 15
    assert set(report_b["neuroncore_counters"]["neuroncores_in_use"]) == {"2", "3"}
    # 2.x ECC is a system group: each configured runtime sees every device, counted once per body
    ecc = {
        (a["neuron.device.index"], a["hw.error.type"]): v
        for a, v in samples_b["hw_counters"].points["neuron.device.ecc.errors"]
    }
    assert ecc[(0, "sram_ecc_corrected")] == 3
    assert ecc[(1, "mem_ecc_uncorrected")] == 0
    for group in [*app_a, *app_b]:
        group.close()  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("stdin:/path", "takes no path"),
        ("stdin:?config=x.json", "config= applies to neuron-monitor"),
        ("neuron-monitor:?colour=red", "unknown option 'colour'"),
        ("neuron-monitor:?tag_filter=(", "is not a regular expression"),
        ("neuron-monitor:?index=first", "index must be a runtime index"),
        ("unix:/run/neuron.sock", "is not a neuron-monitor: or stdin: address"),
    ],
)
def test_bad_addresses_are_rejected_with_the_reason(address: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_bridge_address(address)


def test_addresses() -> None:
    default = parse_bridge_address("neuron-monitor:")
    assert default.binary == "/opt/aws/neuron/bin/neuron-monitor" and default.config is None
    custom = parse_bridge_address("neuron-monitor:/usr/bin/nm?config=/etc/nm.json&tag_filter=a.*&index=2")
    assert (custom.binary, custom.config, custom.tag_filter, custom.index) == (
        "/usr/bin/nm",
        "/etc/nm.json",
        "a.*",
        2,
    )


def test_generated_config_is_a_2x_config_for_the_requested_groups() -> None:
    config = generated_config({"inference_stats": 1.0, "hw_counters": 2.0, "memory_used": 0.5})
    assert config["period"] == "500ms"
    assert config["neuron_runtimes"] == [
        {
            "tag_filter": ".*",
            "metrics": [
                {"type": "execution_stats", "period": "1s"},
                {"type": "memory_used", "period": "500ms"},
            ],
        }
    ]
    assert config["system_metrics"] == [{"type": "neuron_hw_counters", "period": "2s"}]


def test_unknown_group_is_refused() -> None:
    with pytest.raises(ValueError, match="does not provide the group 'vcpu_usage'"):
        create_bridge_groups(0, "stdin:", ["vcpu_usage"], 0.8, registry=BridgeRegistry())


# --------------------------------------------------------------------------- one line never ends the bridge


def completed(sample: GroupSample) -> int:
    return sum(
        int(value)  # type: ignore[arg-type]
        for attributes, value in sample.points[INFERENCE_COUNT.name]
        if attributes["neuron.inference.outcome"] == "completed"
    )


def test_a_line_of_400_digits_is_survived_and_the_next_line_bridged(pipe: Pipe) -> None:
    registry = BridgeRegistry(stdin=pipe.reader)
    (stats,) = create_bridge_groups(0, "stdin:", ["inference_stats"], 0.8, registry=registry)
    stats.prime()
    hostile = lines("out-of-range.jsonl")
    pipe.write_lines([hostile[0], hostile[-1]])  # a percentile of 400 digits, then a good line
    pipe.close()
    bridge = registry.bridges()[0]
    wait_for(bridge.finished.is_set)  # the reader went on to the end of the stream
    assert (bridge.parser.lines, bridge.parser.reports, bridge.parser.malformed) == (2, 2, 0)
    sample = stats.sample()
    assert sample.error == ""
    assert completed(sample) == 50 + 80
    stats.close()  # type: ignore[attr-defined]


def test_every_hostile_line_is_used_or_skipped_and_the_reader_goes_on(pipe: Pipe) -> None:
    registry = BridgeRegistry(stdin=pipe.reader)
    groups = create_bridge_groups(0, "stdin:", ALL_GROUPS, 0.8, registry=registry)
    for group in groups:
        group.prime()
    pipe.write_lines(lines("out-of-range.jsonl"))
    pipe.close()
    bridge = registry.bridges()[0]
    wait_for(bridge.finished.is_set)
    assert (bridge.parser.lines, bridge.parser.reports, bridge.parser.malformed) == (5, 4, 1)
    assert "line 4: not JSON" in bridge.parser.last_problem  # 20,000 nested arrays
    samples = sample_all(groups)
    assert all(sample.error == "" for sample in samples.values()), samples
    assert completed(samples["inference_stats"]) == 50 + 60 + 70 + 80
    for group in groups:
        group.close()  # type: ignore[attr-defined]


class FailingStream:
    """A stream whose reading fails once after its first line; read again, it gives the rest."""

    def __init__(self, first: list[bytes], rest: list[bytes]) -> None:
        self._reads = [first, rest]
        self.drained = False

    def __iter__(self) -> Iterator[bytes]:
        first = not self.drained
        lines = self._reads[0] if first else self._reads[1]
        self.drained = True
        yield from lines
        if first:
            raise RuntimeError("the stream broke")


def test_a_reader_that_fails_says_so_in_the_groups_error_and_the_end_of_input_ends_it() -> None:
    good = [line.encode() for line in lines("v2.jsonl")]
    stream = FailingStream(good[:1], good[1:])
    registry = BridgeRegistry(stdin=stream)  # type: ignore[arg-type]
    groups = create_bridge_groups(0, "stdin:", ["inference_stats", "memory_used"], 0.8, registry=registry)
    for group in groups:
        group.prime()
    bridge = registry.bridges()[0]
    wait_for(bridge.finished.is_set)
    assert stream.drained  # read to its end, so a writer never blocks on it
    for group in groups:
        assert group.sample().error == "reading stdin failed: the stream broke"
        assert group.source_finished()  # the monitor ends, as at the end of its input
        group.close()  # type: ignore[attr-defined]


def test_a_report_that_cannot_be_folded_is_skipped_counted_and_the_next_one_used(
    pipe: Pipe, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real = neuron_monitor_bridge.histogram_from_percentiles

    def fails_for_a_single_execution(percentiles: Mapping[str, float], count: int) -> HistogramDelta:
        if count == 1:  # a fault nobody foresaw, in folding rather than parsing
            raise ArithmeticError("cannot place the percentiles")
        return real(percentiles, count)

    monkeypatch.setattr(neuron_monitor_bridge, "histogram_from_percentiles", fails_for_a_single_execution)
    registry = BridgeRegistry(stdin=pipe.reader)
    (stats,) = create_bridge_groups(0, "stdin:", ["inference_stats"], 0.8, registry=registry)
    stats.prime()
    document = json.loads(lines("v1.jsonl")[0])
    document["neuron_runtime_data"][0]["report"]["inference_stats"]["inference_summary"]["completed"] = 1
    with caplog.at_level(logging.WARNING):
        pipe.write_lines([json.dumps(document), lines("v1.jsonl")[1]])
        pipe.close()
        bridge = registry.bridges()[0]
        wait_for(bridge.finished.is_set)
    assert (bridge.parser.lines, bridge.parser.reports, bridge.parser.malformed) == (2, 1, 1)
    assert (
        "line 1: could not be used: ArithmeticError: cannot place the percentiles"
        in bridge.parser.last_problem
    )
    assert any("skipped malformed report line 1" in record.message for record in caplog.records)
    assert completed(stats.sample()) == 110  # the second line's
    stats.close()  # type: ignore[attr-defined]


class BridgedReports:
    """The monitor's JSON report (schema-checked) of the five bridge groups, made after each line the
    bridge's reader takes."""

    def __init__(self) -> None:
        self._pipe = Pipe()  # stays empty: lines are handed to the reader's per-line step
        registry = BridgeRegistry(stdin=self._pipe.reader)
        self.groups = create_bridge_groups(0, "stdin:", ALL_GROUPS, 0.8, registry=registry)
        self.bridge = registry.bridges()[0]
        self._out, self.problems = io.StringIO(), io.StringIO()
        exporter = ReportJsonExporter(1, out=self._out, validate=report_problem, problems=self.problems)
        scheduled = [ScheduledGroup(group, 1.0) for group in self.groups]
        self.pipeline = MonitorPipeline(scheduled, [exporter], Resource.create({}))
        for group in self.groups:
            group.prime()

    def after(self, line: str) -> dict:  # type: ignore[type-arg]
        self.bridge.take(line)
        self._out.seek(0)
        self._out.truncate()
        self.pipeline.tick([1.0])
        return json.loads(self._out.getvalue())

    def close(self) -> None:
        self.pipeline.shutdown()
        self._pipe.close()


@pytest.fixture(scope="module")
def bridged_reports() -> Iterator[BridgedReports]:
    reports = BridgedReports()
    yield reports
    reports.close()


_sentinels = itertools.count(1_000_001)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(hostile_lines(), min_size=1, max_size=3))
def test_fuzz_every_report_written_matches_the_schema_and_the_reader_goes_on(
    bridged_reports: BridgedReports, hostile: list[str]
) -> None:
    parser = bridged_reports.bridge.parser
    lines_before = parser.lines
    for line in hostile:
        bridged_reports.after(line)
        assert bridged_reports.problems.getvalue() == ""  # --validate's complaint, had there been one
    assert parser.lines == lines_before + len(hostile)
    assert parser.reports + parser.malformed == parser.lines
    # A good line after them is bridged as if nothing had happened.
    good = json.loads(lines("v1.jsonl")[0])
    count = next(_sentinels)
    good["neuron_runtime_data"][0]["report"]["inference_stats"]["inference_summary"]["completed"] = count
    report = bridged_reports.after(json.dumps(good))
    assert bridged_reports.problems.getvalue() == ""
    stats = report["neuron_runtime_data"][0]["report"]["inference_stats"]
    assert stats["error"] == "" and stats["inference_summary"]["completed"] == count
