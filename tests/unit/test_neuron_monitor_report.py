"""The neuron-monitor report parser: both formats, and never a crash on bad input."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otel_neuron.sources.neuron_monitor_report import (
    ReportParseError,
    ReportParser,
    parse_report,
    parse_report_line,
)

FIXTURES = Path(__file__).parents[1] / "fixtures" / "neuron-monitor"


def fixture_lines(name: str) -> list[str]:
    return (FIXTURES / name).read_text().splitlines()


def test_v1_report_reads_every_group_of_the_guide() -> None:
    report = parse_report_line(fixture_lines("v1.jsonl")[0])
    assert report.format_version == 1
    (runtime,) = report.runtimes
    assert runtime.index == 0 and runtime.pid is None and runtime.key == "index:0"
    assert runtime.neuroncore_counters is not None
    assert runtime.neuroncore_counters.cores[0].utilization == 40.0
    assert runtime.neuroncore_counters.cores[1].loaded_models == ("my_model:sg01",)
    stats = runtime.execution_stats
    assert stats is not None and stats.outcomes["completed"] == 100
    assert stats.total_latency is not None and stats.total_latency.values["p100"] == 0.02
    memory = runtime.memory_used
    assert memory is not None and memory.runtime.host == 1000000 and memory.runtime.neuron_device == 2000000
    model = memory.loaded_models[0]
    assert model.model_id == 10234 and model.is_running
    assert {sub.name: sub.neuroncore_index for sub in model.subgraphs} == {"sg00": 0, "sg01": 1}
    assert (
        runtime.hw_counters is not None and runtime.hw_counters.devices[0].counters["mem_ecc_corrected"] == 1
    )
    assert runtime.vcpu_usage is not None and runtime.vcpu_usage.user == 42.01
    assert report.instance["instance_id"] == "i-0011223344556677a"
    assert report.hardware is None


def test_v2_report_reads_the_2x_fields() -> None:
    report = parse_report_line(fixture_lines("v2.jsonl")[0])
    assert report.format_version == 2
    app_a, app_b = report.runtimes
    assert (app_a.pid, app_a.tag, app_a.key) == (1234, "app_a", "pid:1234")
    stats = app_a.execution_stats
    assert stats is not None and stats.errors["model"] == 1 and stats.outcomes["completed"] == 50
    memory = app_a.memory_used
    assert memory is not None
    assert memory.host_breakdown["dma_buffers"] == 1048576
    assert memory.core_breakdown[1]["model_code"] == 176285056
    cores = app_b.neuroncore_counters
    assert cores is not None and cores.cores[2].effective_flops == 1.2e12
    assert report.hw_counters is not None
    assert report.hw_counters.devices[0].counters["sram_ecc_corrected"] == 2
    assert report.hardware is not None and report.hardware.neuron_device_type == "trainium"
    assert report.hardware.neuroncore_per_device_count == 2
    assert report.instance["instance_type"] == "trn1.32xlarge"


def test_null_latency_objects_read_as_absent() -> None:
    report = parse_report_line(fixture_lines("v1.jsonl")[3])
    stats = report.runtimes[0].execution_stats
    assert stats is not None and stats.total_latency is None and stats.device_latency is None


@pytest.mark.parametrize(
    "line",
    [
        "",
        "   ",
        "not json",
        '{"neuron_runtime_data": [',
        "[1, 2]",
        '"text"',
        "{}",
        '{"other": 1}',
        b"\xff\xfe",
    ],
)
def test_lines_that_are_not_reports_are_rejected(line: str | bytes) -> None:
    with pytest.raises(ReportParseError):
        parse_report_line(line)


def test_wrong_types_inside_a_report_are_dropped_not_fatal() -> None:
    document = {
        "neuron_runtime_data": [
            "garbage",
            {"neuron_runtime_index": "zero", "report": {"neuroncore_counters": []}},
            {
                "pid": -3,
                "neuron_runtime_tag": 7,
                "report": {
                    "execution_stats": {
                        "period": "1s",
                        "execution_summary": {"completed": "12", "timed_out": 1.5, "failed_to_queue": 2.0},
                        "latency_stats": {"total_latency": {"p0": "x", "p50": float("nan")}},
                    },
                    "neuroncore_counters": {
                        "neuroncores_in_use": {"x": {}, "-1": {}, "3": {"loaded_models": "a"}}
                    },
                    "memory_used": {"loaded_models": [1, {"subgraphs": {"s": None}}]},
                },
            },
        ],
        "system_data": {"neuron_hw_counters": {"neuron_devices": [{"neuron_device_index": True}, {}]}},
    }
    report = parse_report(document)
    assert len(report.runtimes) == 2
    broken = report.runtimes[1]
    assert broken.pid is None and broken.tag == ""
    stats = broken.execution_stats
    assert stats is not None and stats.period == 0.0
    assert stats.outcomes == {"failed_to_queue": 2}
    assert stats.total_latency is None
    assert broken.neuroncore_counters is not None and list(broken.neuroncore_counters.cores) == [3]
    assert broken.memory_used is not None and len(broken.memory_used.loaded_models) == 1
    assert report.hw_counters is not None and report.hw_counters.devices == ()


def test_parser_counts_and_logs_bad_lines(caplog: pytest.LogCaptureFixture) -> None:
    parser = ReportParser("test stream")
    with caplog.at_level(logging.WARNING):
        reports = [parser.feed(line) for line in fixture_lines("v2.jsonl")]
    assert [report is not None for report in reports] == [True, True, False, False, True]
    assert (parser.lines, parser.reports, parser.malformed) == (5, 3, 2)
    assert "line 4" in parser.last_problem
    assert sum("skipped malformed report line" in record.message for record in caplog.records) == 2


def test_every_prefix_of_a_real_line_is_either_a_report_or_a_counted_skip() -> None:
    line = fixture_lines("v2.jsonl")[0]
    parser = ReportParser()
    for end in range(0, len(line), 97):
        parser.feed(line[:end])
    assert parser.reports + parser.malformed == parser.lines


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=30,
)
report_keys = st.sampled_from(
    [
        "neuron_runtime_data",
        "system_data",
        "instance_info",
        "neuron_hardware_info",
        "report",
        "execution_stats",
        "inference_stats",
        "neuroncore_counters",
        "neuroncores_in_use",
        "memory_used",
        "neuron_runtime_used_bytes",
        "usage_breakdown",
        "neuron_hw_counters",
        "neuron_devices",
        "latency_stats",
        "total_latency",
        "p50",
        "pid",
        "0",
    ]
)
report_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(report_keys, children, max_size=5),
    max_leaves=40,
)


@settings(max_examples=400, deadline=None)
@given(st.one_of(json_values, report_like))
def test_fuzz_any_json_gives_a_report_or_a_parse_error(document: object) -> None:
    text = json.dumps(document)
    parser = ReportParser()
    parser.feed(text)
    assert parser.reports + parser.malformed == parser.lines


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200) | st.text(max_size=200))
def test_fuzz_arbitrary_bytes_never_crash(line: bytes | str) -> None:
    ReportParser().feed(line)


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=None).map(lambda n: n), st.data())
def test_fuzz_truncated_real_lines(seed: int, data: st.DataObject) -> None:
    lines = fixture_lines("v1.jsonl") + fixture_lines("v2.jsonl")
    line = lines[seed % len(lines)]
    cut = data.draw(st.integers(min_value=0, max_value=len(line)))
    parser = ReportParser()
    parser.feed(line[:cut])
    assert parser.reports + parser.malformed == parser.lines
