"""The report schema accepts the guide's own examples and rejects what a consumer could not read."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from guide_example import GUIDE_REPORT

from otel_neuron.report_schema import report_problem

RUNTIME = ("neuron_runtime_data", 0, "report")
INFERENCE = (*RUNTIME, "inference_stats")
VCPU = ("system_data", "vcpu_usage")
MEMORY = ("system_data", "memory_info")
_DELETE = object()


def variant(path: tuple[Any, ...], value: Any = _DELETE) -> dict[str, Any]:
    report = copy.deepcopy(GUIDE_REPORT)
    *parents, last = path
    target = report
    for part in parents:
        target = target[part]
    if value is _DELETE:
        del target[last]
    else:
        target[last] = value
    return report


def test_the_guides_examples_assembled_into_one_report_validate() -> None:
    assert report_problem(GUIDE_REPORT) == ""


def test_null_latency_objects_are_valid_when_nothing_ran() -> None:
    report = variant((*INFERENCE, "latency_stats"), {"total_latency": None, "device_latency": None})
    assert report_problem(report) == ""


@pytest.mark.parametrize(
    "section",
    [
        VCPU,
        MEMORY,
        (*RUNTIME, "inference_stats"),
        (*RUNTIME, "hw_counters"),
        (*RUNTIME, "neuroncore_counters"),
    ],
    ids=lambda s: s[-1],
)
def test_a_failed_group_may_carry_only_period_and_error(section: tuple[Any, ...]) -> None:
    assert report_problem(variant(section, {"period": 1.0, "error": "cannot read /proc/stat"})) == ""


def test_a_report_of_a_monitor_without_runtimes_or_groups_yet_is_valid() -> None:
    report = {"neuron_runtime_data": [], "system_data": {}, "instance_data": GUIDE_REPORT["instance_data"]}
    assert report_problem(report) == ""


BROKEN = [
    # missing fields
    pytest.param(
        variant(("system_data",)), "(top level): 'system_data' is a required property", id="no-system_data"
    ),
    pytest.param(
        variant((*MEMORY, "memory_total_bytes")), "system_data.memory_info", id="no-memory_total_bytes"
    ),
    pytest.param(variant((*VCPU, "period")), "system_data.vcpu_usage", id="no-period"),
    pytest.param(variant((*VCPU, "error")), "system_data.vcpu_usage", id="no-error"),
    pytest.param(
        variant((*VCPU, "usage_data", "1", "soft_irq")),
        'system_data.vcpu_usage.usage_data["1"]',
        id="no-mode",
    ),
    pytest.param(variant(("instance_data", "instance_id")), "instance_data", id="no-instance_id"),
    pytest.param(
        variant(("neuron_runtime_data", 0, "neuron_runtime_index")), "neuron_runtime_data[0]", id="no-index"
    ),
    pytest.param(
        variant((*INFERENCE, "error_summary", "hardware")),
        "neuron_runtime_data[0].report.inference_stats.error_summary",
        id="no-hardware-count",
    ),
    # negative counts
    pytest.param(
        variant((*INFERENCE, "inference_summary", "completed"), -1),
        "neuron_runtime_data[0].report.inference_stats.inference_summary.completed",
        id="negative-completed",
    ),
    pytest.param(
        variant((*VCPU, "context_switch_count"), -5),
        "system_data.vcpu_usage.context_switch_count",
        id="negative-context-switches",
    ),
    pytest.param(
        variant((*RUNTIME, "hw_counters", "neuron_devices", 0, "mem_ecc_corrected"), -1),
        "neuron_runtime_data[0].report.hw_counters.neuron_devices[0].mem_ecc_corrected",
        id="negative-ecc",
    ),
    pytest.param(
        variant((*MEMORY, "swap_used_bytes"), -4096),
        "system_data.memory_info.swap_used_bytes",
        id="negative-bytes",
    ),
    pytest.param(variant((*VCPU, "period"), -1.0), "system_data.vcpu_usage.period", id="negative-period"),
    # percentages over 100
    pytest.param(
        variant((*VCPU, "usage_data", "0", "user"), 100.01),
        'system_data.vcpu_usage.usage_data["0"].user',
        id="user-over-100",
    ),
    pytest.param(
        variant((*VCPU, "average_usage", "idle"), 150),
        "system_data.vcpu_usage.average_usage.idle",
        id="average-over-100",
    ),
    pytest.param(
        variant(
            (*RUNTIME, "neuroncore_counters", "neuroncores_in_use", "2", "neuroncore_utilization"), 100.5
        ),
        'neuron_runtime_data[0].report.neuroncore_counters.neuroncores_in_use["2"].neuroncore_utilization',
        id="neuroncore-over-100",
    ),
    # latency objects
    pytest.param(
        variant((*INFERENCE, "latency_stats", "total_latency", "p99")),
        "neuron_runtime_data[0].report.inference_stats.latency_stats.total_latency",
        id="latency-without-p99",
    ),
    pytest.param(
        variant((*INFERENCE, "latency_stats", "device_latency"), {}),
        "neuron_runtime_data[0].report.inference_stats.latency_stats.device_latency",
        id="latency-empty-object",
    ),
    pytest.param(
        variant((*INFERENCE, "latency_stats", "device_latency")),
        "neuron_runtime_data[0].report.inference_stats.latency_stats",
        id="latency-key-missing",
    ),
    # wrong types
    pytest.param(
        variant((*MEMORY, "memory_total_bytes"), "49345835008"),
        "system_data.memory_info.memory_total_bytes",
        id="bytes-as-string",
    ),
    pytest.param(
        variant((*MEMORY, "memory_used_bytes"), 1.5),
        "system_data.memory_info.memory_used_bytes",
        id="bytes-fractional",
    ),
    pytest.param(variant((*VCPU, "period"), "1s"), "system_data.vcpu_usage.period", id="period-as-string"),
    pytest.param(variant((*VCPU, "error"), None), "system_data.vcpu_usage.error", id="error-null"),
    pytest.param(
        variant(("instance_data", "instance_type"), 1),
        "instance_data.instance_type",
        id="instance-type-number",
    ),
    pytest.param(variant(("neuron_runtime_data",), {}), "neuron_runtime_data", id="runtime-data-object"),
    pytest.param(
        variant((*RUNTIME, "memory_used", "loaded_models", 0, "is_running"), "yes"),
        "neuron_runtime_data[0].report.memory_used.loaded_models[0].is_running",
        id="is_running-string",
    ),
    # shapes a consumer would trip on
    pytest.param(
        variant(
            (*VCPU, "usage_data"), {"cpu0": GUIDE_REPORT["system_data"]["vcpu_usage"]["usage_data"]["0"]}
        ),
        "system_data.vcpu_usage.usage_data",
        id="vcpu-key-not-a-number",
    ),
    pytest.param(variant(("instance_data", "hostname"), "x"), "instance_data", id="unknown-instance-field"),
]


@pytest.mark.parametrize(("report", "where"), BROKEN)
def test_broken_variants_are_rejected_naming_where(report: dict[str, Any], where: str) -> None:
    problem = report_problem(report)
    assert problem.startswith(where), problem
    assert "\n" not in problem
