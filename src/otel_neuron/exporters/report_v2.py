"""The report in neuron-monitor 2.x's format (`--output-format 2`), from the 1.x report.

    exporter = ReportJsonExporter(..., transform=report_to_v2)

Pure: a new dict, the input untouched. The mapping (the inverse of `config_v2`):

- `neuron_runtime_data[i]`: `pid` 0, `address` "", `neuron_runtime_tag` "<neuron_runtime_index>";
- runtime `inference_stats` -> runtime `execution_stats`, its `inference_summary` ->
  `execution_summary`, `error_summary.model` added as 0 when absent;
- runtime `hw_counters` (of every runtime) -> `system_data.neuron_hw_counters`, devices merged
  by index (first seen wins), `sram_ecc_corrected` 0 when absent;
- runtime `neuron_hardware_info` (from a sysfs: runtime) -> root `neuron_hardware_info`;
- `instance_data` -> `instance_info`;
- neuroncore_counters, memory_used, neuron_runtime_vcpu_usage, the system groups and
  otel-neuron's own groups (neuron_power, neuroncore_status) are unchanged.

A runtime whose report is left empty by the moves (a sysfs: entry that only gave ECC counts or
hardware facts) is dropped from `neuron_runtime_data`, as 2.x lists applications only.
"""

from __future__ import annotations

import copy
from typing import Any

Report = dict[str, Any]


def report_to_v2(report: Report) -> Report:
    """The 2.x form of a 1.x report dict."""
    source = copy.deepcopy(report)
    runtimes: list[Report] = []
    hw_groups: list[Report] = []
    hardware_info: Report | None = None
    for entry in source.get("neuron_runtime_data", []):
        body = dict(entry.get("report", {}))
        moved = "hw_counters" in body or "neuron_hardware_info" in body
        if "hw_counters" in body:
            hw_groups.append(body.pop("hw_counters"))
        if "neuron_hardware_info" in body:
            info = body.pop("neuron_hardware_info")
            hardware_info = hardware_info or info
        if "inference_stats" in body:
            body["execution_stats"] = _execution_stats(body.pop("inference_stats"))
        index = entry.get("neuron_runtime_index", len(runtimes))
        if not body and moved:
            continue
        runtimes.append(
            {
                "pid": 0,
                "address": "",
                "neuron_runtime_tag": str(index),
                "error": entry.get("error", ""),
                "report": body,
            }
        )
    system = dict(source.get("system_data", {}))
    if hw_groups:
        system["neuron_hw_counters"] = _merged_hw(hw_groups)
    result: Report = {"neuron_runtime_data": runtimes, "system_data": system}
    result["instance_info"] = source.get("instance_data", {})
    if hardware_info is not None:
        hardware_info.pop("period", None)
        result["neuron_hardware_info"] = hardware_info
    return result


def _execution_stats(group: Report) -> Report:
    stats: Report = {}
    for key, value in group.items():
        if key == "inference_summary":
            stats["execution_summary"] = value
        elif key == "error_summary" and isinstance(value, dict):
            stats["error_summary"] = {**value, "model": value.get("model", 0)}
        else:
            stats[key] = value
    return stats


def _merged_hw(groups: list[Report]) -> Report:
    first = groups[0]
    devices: dict[Any, Report] = {}
    for group in groups:
        for device in group.get("neuron_devices", []):
            key = device.get("neuron_device_index")
            if key not in devices:
                devices[key] = {**device, "sram_ecc_corrected": device.get("sram_ecc_corrected", 0)}
    merged: Report = {"period": first.get("period", 0.0)}
    merged["neuron_devices"] = [devices[key] for key in sorted(devices, key=lambda k: (k is None, k))]
    merged["error"] = next((group.get("error") for group in groups if group.get("error")), "")
    return merged
