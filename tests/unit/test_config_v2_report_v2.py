"""The 2.x config form mapped onto 1.x, and the 1.x report rewritten as 2.x."""

from __future__ import annotations

import copy

from otel_neuron.config_v2 import config_v2_to_v1, is_v2_config
from otel_neuron.exporters.report_v2 import report_to_v2
from otel_neuron.sources.neuron_monitor_bridge import parse_bridge_address

V2_CONFIG = {
    "period": "1s",
    "neuron_runtimes": [
        {
            "tag_filter": "my_app_.*",
            "metrics": [
                {"type": "neuroncore_counters"},
                {"type": "memory_used"},
                {"type": "neuron_runtime_vcpu_usage"},
                {"type": "execution_stats"},
            ],
        }
    ],
    "system_metrics": [
        {"type": "vcpu_usage"},
        {"type": "memory_info"},
        {"period": "2s", "type": "neuron_hw_counters"},
    ],
}


def test_a_2x_config_becomes_the_1x_form() -> None:
    original = copy.deepcopy(V2_CONFIG)
    v1 = config_v2_to_v1(V2_CONFIG)
    assert V2_CONFIG == original  # pure
    first, hw = v1["neuron_runtimes"]
    assert first["address"] == "neuron-monitor:?tag_filter=my_app_.%2A"
    assert parse_bridge_address(first["address"]).tag_filter == "my_app_.*"
    assert [m["type"] for m in first["metrics"]][-1] == "inference_stats"
    assert hw == {"address": "neuron-monitor:", "metrics": [{"type": "hw_counters", "period": "2s"}]}
    assert v1["system_metrics"] == [{"type": "vcpu_usage"}, {"type": "memory_info"}]


def test_stdin_and_sysfs_sources() -> None:
    v1 = config_v2_to_v1(V2_CONFIG, source="stdin:", hw_source="sysfs:")
    assert v1["neuron_runtimes"][0]["address"].startswith("stdin:?tag_filter=")
    assert v1["neuron_runtimes"][1]["address"] == "sysfs:"


def test_1x_and_garbage_documents_pass_through_unchanged() -> None:
    guide = {"period": "1s", "neuron_runtimes": [{"address": "unix:/run/neuron.sock", "metrics": []}]}
    assert not is_v2_config(guide) and config_v2_to_v1(guide) is guide
    for junk in (None, [], "text", {"neuron_runtimes": "x"}, {"system_metrics": [1, None]}):
        assert config_v2_to_v1(junk) is junk


REPORT_V1 = {
    "neuron_runtime_data": [
        {
            "neuron_runtime_index": 0,
            "error": "",
            "report": {
                "inference_stats": {
                    "period": 1.0,
                    "error_summary": {
                        "generic": 0,
                        "numerical": 0,
                        "transient": 0,
                        "runtime": 0,
                        "hardware": 0,
                    },
                    "inference_summary": {"completed": 5},
                    "latency_stats": {"total_latency": None, "device_latency": None},
                    "error": "",
                },
                "hw_counters": {
                    "period": 2.0,
                    "neuron_devices": [{"neuron_device_index": 0, "mem_ecc_corrected": 1}],
                    "error": "",
                },
            },
        },
        {
            "neuron_runtime_index": 1,
            "error": "",
            "report": {
                "neuron_hardware_info": {"period": 5.0, "neuron_device_type": "trainium", "error": ""},
                "hw_counters": {
                    "period": 2.0,
                    "neuron_devices": [
                        {"neuron_device_index": 1, "mem_ecc_corrected": 0},
                        {"neuron_device_index": 0, "mem_ecc_corrected": 9},
                    ],
                    "error": "",
                },
            },
        },
    ],
    "system_data": {"memory_info": {"period": 1.0, "error": ""}},
    "instance_data": {"instance_id": "i-1"},
}


def test_a_1x_report_becomes_2x() -> None:
    original = copy.deepcopy(REPORT_V1)
    v2 = report_to_v2(REPORT_V1)
    assert REPORT_V1 == original  # pure
    (runtime,) = v2["neuron_runtime_data"]  # the sysfs-like entry emptied by the moves is dropped
    assert (runtime["pid"], runtime["neuron_runtime_tag"]) == (0, "0")
    stats = runtime["report"]["execution_stats"]
    assert stats["execution_summary"] == {"completed": 5} and stats["error_summary"]["model"] == 0
    assert "inference_summary" not in stats and "hw_counters" not in runtime["report"]
    hw = v2["system_data"]["neuron_hw_counters"]
    assert hw["neuron_devices"] == [
        {"neuron_device_index": 0, "mem_ecc_corrected": 1, "sram_ecc_corrected": 0},
        {"neuron_device_index": 1, "mem_ecc_corrected": 0, "sram_ecc_corrected": 0},
    ]
    assert v2["system_data"]["memory_info"] == {"period": 1.0, "error": ""}
    assert v2["instance_info"] == {"instance_id": "i-1"} and "instance_data" not in v2
    assert v2["neuron_hardware_info"] == {"neuron_device_type": "trainium", "error": ""}
