"""The 2.x config form mapped onto 1.x (the 2.x report is rendered from MetricsData: test_report_v2.py)."""

from __future__ import annotations

import copy

from otel_neuron.config_v2 import config_v2_to_v1, is_v2_config
from otel_neuron.sources.neuron_monitor_address import parse_bridge_address

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
