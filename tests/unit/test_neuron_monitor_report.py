"""The neuron-monitor report parser: both formats, and never a crash on bad input."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from neuron_monitor_mutations import (
    HOSTILE_KEYS,
    HOSTILE_VALUES,
    encode,
    hostile_lines,
    paths,
    renamed,
    replaced,
)

from otel_neuron.sources.neuron_monitor_report import (
    ReportParseError,
    ReportParser,
    parse_report,
    parse_report_line,
)
from otel_neuron.sources.neuron_monitor_types import MonitorReport
from otel_neuron.sources.neuron_monitor_values import MAX_INDEX, MAX_INTEGER, MAX_MESSAGE, MAX_SECONDS

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


# --------------------------------------------------------------------------- values out of range


def test_a_percentile_of_400_digits_reads_as_absent_and_the_rest_of_the_line_is_used() -> None:
    parser = ReportParser()
    report = parser.feed(fixture_lines("out-of-range.jsonl")[0])  # issue 15: it killed the reader
    assert report is not None and (parser.reports, parser.malformed) == (1, 0)
    stats = report.runtimes[0].execution_stats
    assert stats is not None and stats.outcomes["completed"] == 50
    assert stats.total_latency is not None and "p50" not in stats.total_latency.values
    assert stats.total_latency.values["p99"] == 0.018
    assert report.hw_counters is not None
    assert "mem_ecc_corrected" not in report.hw_counters.devices[0].counters  # also 400 digits


def test_nan_infinities_negative_indexes_and_booleans_read_as_absent() -> None:
    report = parse_report_line(fixture_lines("out-of-range.jsonl")[1])
    (runtime,) = report.runtimes
    assert runtime.neuroncore_counters is not None
    cores = runtime.neuroncore_counters.cores
    assert sorted(cores) == [0, 1] and cores[0].utilization is None  # NaN; the core "-1" is gone
    assert runtime.vcpu_usage is not None and runtime.vcpu_usage.period == 0.0  # Infinity
    stats = runtime.execution_stats
    assert stats is not None and "completed_with_err" not in stats.outcomes  # true
    assert stats.device_latency is not None and "p99" not in stats.device_latency.values  # -Infinity
    memory = runtime.memory_used
    assert memory is not None
    kept, gone = memory.loaded_models
    assert kept.model_id == 7 and gone.model_id is None
    assert {sub.name: sub.neuroncore_index for sub in kept.subgraphs} == {"sg_kept": 0, "sg_gone": None}
    assert report.hw_counters is not None
    assert [device.neuron_device_index for device in report.hw_counters.devices] == [0]
    past_float = parse_report_line(fixture_lines("out-of-range.jsonl")[2]).runtimes[0].execution_stats
    assert past_float is not None and "timed_out" not in past_float.outcomes  # 1e999


def test_an_upstream_error_becomes_one_short_line() -> None:
    document = json.loads(fixture_lines("v2.jsonl")[0])
    document["neuron_runtime_data"][0]["error"] = "first line\n" + "x" * 10_000
    document["neuron_runtime_data"][1]["error"] = "y" * 10_000
    first, second = parse_report(document).runtimes
    assert first.error == "first line"
    assert len(second.error) == MAX_MESSAGE and second.error.endswith("...")


def _numbers_in_range(value: object, field: str = "") -> list[str]:
    """Where a parsed report holds a number out of its field's range (see the module docstring)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        found = []
        for item in dataclasses.fields(value):
            found += _numbers_in_range(getattr(value, item.name), item.name)
        return found
    if isinstance(value, dict):
        found = []
        for key, item in value.items():
            if isinstance(key, int) and not 0 <= key <= MAX_INDEX:
                found.append(f"{field}: index {key}")
            found += _numbers_in_range(item, field if field in ("values", "system_data") else str(key))
        return found
    if isinstance(value, (list, tuple)):
        return [problem for item in value for problem in _numbers_in_range(item, field)]
    if isinstance(value, bool):
        return [] if field == "is_running" else [f"{field}: {value}"]
    if isinstance(value, int):
        high = MAX_INDEX if field.endswith("index") or field.endswith("_count") else MAX_INTEGER
        return [] if 0 <= value <= high else [f"{field}: {value}"]
    if isinstance(value, float):
        high = {"utilization": 100.0, "user": 100.0, "system": 100.0, "period": MAX_SECONDS}.get(field)
        high = MAX_SECONDS if field == "values" else high  # latency percentiles
        ok = math.isfinite(value) and value >= 0 and (high is None or value <= high)
        return [] if ok else [f"{field}: {value}"]
    if isinstance(value, str) and field == "error":
        return [] if "\n" not in value and len(value) <= MAX_MESSAGE else [f"error: {value[:20]}..."]
    return []


def _without_system_data(report: MonitorReport) -> MonitorReport:
    # instance is kept as given (nothing reads its text as numbers)
    return dataclasses.replace(report, instance={})


def test_a_hostile_value_at_any_path_never_reaches_the_parsed_report() -> None:
    documents = [json.loads(fixture_lines("v1.jsonl")[0]), json.loads(fixture_lines("v2.jsonl")[0])]
    parser = ReportParser()
    for document in documents:
        for path in paths(document):
            numbers = HOSTILE_VALUES[:11]  # every kind of number out of range, and true
            variants = [replaced(document, path, value) for value in numbers]
            variants += [renamed(document, path, key) for key in HOSTILE_KEYS[:2]]
            for variant in variants:
                report = parser.feed(encode(variant))
                if report is not None:
                    assert _numbers_in_range(_without_system_data(report)) == [], (path, variant)
    assert parser.reports + parser.malformed == parser.lines


@settings(max_examples=150, deadline=None)
@given(st.lists(hostile_lines(), min_size=1, max_size=4))
def test_fuzz_hostile_lines_give_in_range_reports_or_counted_skips(lines: list[str]) -> None:
    parser = ReportParser()
    for line in lines:
        report = parser.feed(line)
        if report is not None:
            assert _numbers_in_range(_without_system_data(report)) == []
    assert parser.reports + parser.malformed == parser.lines == len(lines)


# --------------------------------------------------------------------------- shapes of real 2.x captures


def test_an_inf2_capture_keeps_exactly_the_keys_it_gave() -> None:
    report = parse_report_line(fixture_lines("inf2-xlarge.jsonl")[0])
    (runtime,) = report.runtimes
    assert (runtime.pid, runtime.tag) == (7685, "7685")
    assert runtime.neuroncore_counters is not None
    core = runtime.neuroncore_counters.cores[0]
    assert (core.flops, core.effective_flops) == (None, 3617392064)
    stats = runtime.execution_stats
    assert stats is not None and "generic" not in stats.errors and stats.errors["model"] == 4
    assert stats.total_latency is not None and list(stats.total_latency.values) == [
        "p0",
        "p50",
        "p99",
        "p100",
    ]
    assert runtime.memory_used is not None and runtime.memory_used.loaded_models == ()
    assert report.hardware is not None
    assert report.hardware.neuron_device_version is None  # not given
    assert report.hardware.neuron_device_type == "inferentia2"
    assert report.hardware.neuron_device_memory_size == 34359738368
    assert report.hardware.logical_neuroncore_config is None
    assert set(report.instance) == {
        "instance_id",
        "instance_type",
        "instance_availability_zone",
        "instance_region",
        "ami_id",
        "error",
    }


def test_a_trn1_capture_with_two_applications_and_subgraph_breakdowns() -> None:
    report = parse_report_line(fixture_lines("trn1-32xlarge.jsonl")[0])
    training, serving = report.runtimes
    assert (training.pid, training.tag, serving.pid, serving.tag) == (457402, "367", 461023, "llama_b")
    assert training.vcpu_usage is not None
    assert training.vcpu_usage.error == "open/proc/457402/stat:nosuchfileordirectory"
    assert (training.vcpu_usage.user, training.vcpu_usage.system) == (0, 0)
    stats = training.execution_stats
    assert stats is not None and stats.total_latency is None and stats.errors["generic"] == 2
    memory = serving.memory_used
    assert memory is not None and len(memory.loaded_models) == 24
    model = memory.loaded_models[0]
    assert model.memory is None  # 2.x gives memory per subgraph only
    subgraph = model.subgraphs[1]
    assert subgraph.name == "sg_01" and subgraph.neuron_device_index == 8
    assert set(subgraph.host_breakdown) == {"application_memory", "constants", "dma_buffers", "tensors"}
    assert set(subgraph.device_breakdown) == {"constants", "model_code", "runtime_memory", "tensors"}
    assert sum(subgraph.device_breakdown.values()) == subgraph.memory.neuron_device
    assert sorted(memory.core_breakdown) == list(range(16, 32))
    assert report.hw_counters is not None and len(report.hw_counters.devices) == 16
    hardware = report.hardware
    assert hardware is not None and (hardware.neuron_device_type, hardware.neuron_device_count) == (None, 16)


def test_v3d_physical_cores_out_of_range_or_misnamed_read_as_absent() -> None:
    document = json.loads(fixture_lines("inf2-xlarge.jsonl")[0])
    core = document["neuron_runtime_data"][0]["report"]["neuroncore_counters"]["neuroncores_in_use"]["0"]
    core["v3d"] = {
        "nc_v3.0": {"neuroncore_utilization": 21.01},
        "nc_v3.1": {"neuroncore_utilization": 163.0},
        "x" * 65: {"neuroncore_utilization": 1.0},
        "nc_v3.2": 5,
    }
    parsed = parse_report(document).runtimes[0].neuroncore_counters
    assert parsed is not None and parsed.cores[0].physical == {"nc_v3.0": 21.01}


def test_instance_facts_are_the_guides_fields_each_one_short_line() -> None:
    document = json.loads(fixture_lines("inf2-xlarge.jsonl")[0])
    document["instance_info"]["instance_type"] = "inf2.xlarge\nsecond line"
    document["instance_info"]["colour"] = "red"
    document["instance_info"]["ami_id"] = 7
    instance = parse_report(document).instance
    assert instance["instance_type"] == "inf2.xlarge"
    assert "colour" not in instance and "ami_id" not in instance
