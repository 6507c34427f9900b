"""The port of AWS's neuron-monitor-prometheus.py reads (tests/aws_neuron_monitor_prometheus.py) dies
where the script would: it is only a check of our reports if it is as strict as the script."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from aws_neuron_monitor_prometheus import NeuronMonitorPrometheus

CORE_MEMORY = {
    "constants": 1,
    "model_code": 2,
    "model_shared_scratchpad": 0,
    "runtime_memory": 0,
    "tensors": 3,
}
USAGE = {"user": 1.0, "nice": 0.0, "system": 2.0, "idle": 97.0, "io_wait": 0.0, "irq": 0.0, "soft_irq": 0.0}

# The user guide's 2.x example, abridged.
GUIDE_V2: dict[str, Any] = {
    "neuron_runtime_data": [
        {
            "pid": 0,
            "neuron_runtime_tag": "my_app_1",
            "error": "",
            "report": {
                "neuroncore_counters": {
                    "period": 1.0,
                    "neuroncores_in_use": {"0": {"neuroncore_utilization": 42.01, "flops": 1234567891011}},
                    "error": "",
                },
                "execution_stats": {
                    "period": 1.0,
                    "error_summary": {
                        "generic": 0,
                        "numerical": 0,
                        "transient": 0,
                        "model": 0,
                        "runtime": 0,
                        "hardware": 0,
                    },
                    "execution_summary": {"completed": 123, "completed_with_err": 0},
                    "latency_stats": {"total_latency": {"p0": 0.011, "p100": 0.012}, "device_latency": None},
                    "error": "",
                },
                "memory_used": {
                    "period": 1.0,
                    "neuron_runtime_used_bytes": {
                        "host": 6997643264,
                        "neuron_device": 12519788544,
                        "usage_breakdown": {"host": {}, "neuroncore_memory_usage": {"0": CORE_MEMORY}},
                    },
                    "loaded_models": [],
                    "error": "",
                },
                "neuron_runtime_vcpu_usage": {
                    "period": 1.0,
                    "vcpu_usage": {"user": 42.01, "system": 12.34},
                    "error": "",
                },
            },
        }
    ],
    "system_data": {
        "neuron_hw_counters": {
            "period": 1.0,
            "neuron_devices": [
                {
                    "neuron_device_index": 0,
                    "mem_ecc_corrected": 0,
                    "mem_ecc_uncorrected": 0,
                    "sram_ecc_uncorrected": 0,
                    "sram_ecc_corrected": 6,
                }
            ],
            "error": "",
        },
        "vcpu_usage": {"period": 1.0, "average_usage": USAGE, "usage_data": {"0": USAGE}, "error": ""},
        "memory_info": {
            "period": 1.0,
            "memory_total_bytes": 10,
            "memory_used_bytes": 5,
            "swap_total_bytes": 0,
            "swap_used_bytes": 0,
            "error": "",
        },
    },
    "instance_info": {
        "instance_name": "",
        "instance_id": "i-0011223344556677a",
        "instance_type": "trn1.32xlarge",
        "instance_availability_zone": "us-west-2b",
        "instance_region": "us-west-2",
        "subnet_id": "subnet-112233ee",
    },
    "neuron_hardware_info": {"neuron_device_count": 16, "neuroncore_per_device_count": 2, "error": ""},
}


def test_the_guides_report_is_read_and_becomes_the_scripts_series() -> None:
    script = NeuronMonitorPrometheus()
    script.read(GUIDE_V2)
    exposition = script.exposition()
    assert "neuroncore_utilization_ratio{" in exposition and 'runtime_tag="my_app_1"' in exposition
    assert (
        'hardware_ecc_events_total{availability_zone="us-west-2b",event_type="sram_ecc_corrected"'
        in exposition
    )
    assert "neuroncore_memory_usage_tensors{" in exposition and "neuron_hardware_info{" in exposition


def without(path: tuple[Any, ...]) -> dict[str, Any]:
    document = copy.deepcopy(GUIDE_V2)
    target = document
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return document


@pytest.mark.parametrize(
    ("path", "missing"),
    [
        (("neuron_hardware_info",), "neuron_hardware_info"),
        (("system_data",), "system_data"),
        (("instance_info", "subnet_id"), "subnet_id"),
        (("neuron_runtime_data", 0, "neuron_runtime_tag"), "neuron_runtime_tag"),
        (
            (
                "neuron_runtime_data",
                0,
                "report",
                "memory_used",
                "neuron_runtime_used_bytes",
                "usage_breakdown",
            ),
            "usage_breakdown",
        ),
        (
            (
                "neuron_runtime_data",
                0,
                "report",
                "memory_used",
                "neuron_runtime_used_bytes",
                "usage_breakdown",
                "neuroncore_memory_usage",
                "0",
                "model_shared_scratchpad",
            ),
            "model_shared_scratchpad",
        ),
        (
            ("neuron_runtime_data", 0, "report", "execution_stats", "latency_stats", "total_latency"),
            "total_latency",
        ),
        (
            ("system_data", "neuron_hw_counters", "neuron_devices", 0, "sram_ecc_corrected"),
            "sram_ecc_corrected",
        ),
        (("system_data", "vcpu_usage", "average_usage", "nice"), "nice"),
        (("system_data", "memory_info", "error"), "error"),
    ],
)
def test_a_key_the_script_reads_missing_is_a_key_error(path: tuple[Any, ...], missing: str) -> None:
    with pytest.raises(KeyError, match=missing):
        NeuronMonitorPrometheus().read(without(path))


def test_what_the_script_does_not_read_may_be_missing_or_null() -> None:
    document = without(("neuron_runtime_data", 0, "pid"))
    document["neuron_hardware_info"] = None
    del document["system_data"]["vcpu_usage"]["average_usage"]["idle"]
    del document["neuron_runtime_data"][0]["report"]["execution_stats"]["latency_stats"]["device_latency"]
    document["neuron_runtime_data"][0]["report"]["execution_stats"]["latency_stats"]["total_latency"] = None
    document["neuron_runtime_data"][0]["report"]["inference_stats"] = {
        "no": "error key"
    }  # no handler: ignored
    NeuronMonitorPrometheus().read(document)


def test_an_errored_runtime_or_group_is_skipped_unread_and_a_negative_count_is_a_value_error() -> None:
    document = copy.deepcopy(GUIDE_V2)
    document["neuron_runtime_data"][0]["error"] = "gone"
    document["neuron_runtime_data"][0]["report"] = {}
    document["system_data"]["memory_info"] = {"error": "cannot read /proc/meminfo"}
    script = NeuronMonitorPrometheus()
    script.read(document)
    assert script.errors == [
        "Runtime my_app_1 error: gone",
        "Error getting memory_info: cannot read /proc/meminfo",
    ]
    document["system_data"]["neuron_hw_counters"]["neuron_devices"][0]["mem_ecc_corrected"] = -1
    with pytest.raises(ValueError):
        script.read(document)
    broken = copy.deepcopy(GUIDE_V2)
    broken["neuron_runtime_data"][0]["report"]["neuroncore_counters"]["neuroncores_in_use"] = {"0": None}
    with pytest.raises(TypeError):
        NeuronMonitorPrometheus().read(broken)
