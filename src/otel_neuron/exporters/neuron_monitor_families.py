"""AWS's neuron-monitor-prometheus.py, ported: the families it exports and its handlers, one per
report group, reading a section into series (see `neuron_monitor_names` for the collector)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from otel_neuron.semconv import (
    CORE_MEMORY_CATEGORIES,
    ECC_KINDS,
    EXECUTION_STATS,
    MEMORY_INFO,
    MEMORY_LOCATIONS,
    MEMORY_USED,
    NEURON_HW_COUNTERS,
    NEURONCORE_COUNTERS,
    RUNTIME_CPU_MODES,
    RUNTIME_VCPU_USAGE,
    VCPU_USAGE,
)

Report = Mapping[str, Any]


class Family(NamedTuple):
    """One exported family: its help text (the script's), whether it is a counter, the labels it adds
    to the base ones, and whether it is an application's (then `runtime_tag` comes first)."""

    help: str
    counter: bool
    labels: tuple[str, ...]
    per_application: bool


def _gauge(help_text: str, *labels: str, per_application: bool = True) -> Family:
    return Family(help_text, False, labels, per_application)


def _counter(help_text: str, *labels: str, per_application: bool = True) -> Family:
    return Family(help_text, True, labels, per_application)


# Counter families are named without `_total`: the exposition adds `_total` and `_created`.
FAMILIES: Mapping[str, Family] = {
    "neuroncore_utilization_ratio": _gauge("NeuronCore utilization ratio", "neuroncore"),
    "neuron_runtime_vcpu_usage_ratio": _gauge("Runtime vCPU utilization ratio", "usage_type"),
    "neuron_runtime_memory_used_bytes": _gauge("Runtime memory used bytes", "memory_location"),
    **{
        f"neuroncore_memory_usage_{category}": _gauge(
            f"NeuronCore memory utilization for {category}", "memory_location", "neuroncore"
        )
        for category in CORE_MEMORY_CATEGORIES
    },
    "execution_errors": _counter("Execution errors total", "error_type"),
    "execution_status": _counter("Execution status total", "status_type"),
    "execution_latency_seconds": _gauge("Execution latency in seconds", "percentile"),
    "hardware_ecc_events": _counter(
        "Hardware ecc events total", "event_type", "neuron_device_index", per_application=False
    ),
    "system_vcpu_count": _gauge("System vCPU count", per_application=False),
    "system_vcpu_usage_ratio": _gauge("System CPU utilization ratio", "usage_type", per_application=False),
    **{
        f"system_{kind}_{stat}": _gauge(f"System {kind} {stat} bytes", per_application=False)
        for kind in ("memory", "swap")
        for stat in ("total_bytes", "used_bytes")
    },
}

# The root instance_info fields the script reads, by the label each becomes.
INSTANCE_LABELS = {
    "instance_name": "instance_name",
    "instance_id": "instance_id",
    "instance_type": "instance_type",
    "availability_zone": "instance_availability_zone",
    "region": "instance_region",
    "subnet_id": "subnet_id",
}
# neuron_hardware_info's fields exported as labels; the memory size only when the report has it.
HARDWARE_LABELS = ("neuron_device_count", "neuroncore_per_device_count")
HARDWARE_OPTIONAL_LABELS = ("neuron_device_memory_size",)

# The script's literal label value: `labels['memory_location'] = None`, formatted by prometheus_client.
NO_MEMORY_LOCATION = "None"
# system_vcpu_usage_ratio's usage types and the average_usage modes each adds up (capped at 100 %).
_VCPU_AGGREGATION = {"user": ("user", "nice"), "system": ("system", "io_wait", "irq", "soft_irq")}


class Series(NamedTuple):
    family: str
    labels: tuple[str, ...]  # the values of the family's own labels, in its order
    value: float


class Reading(NamedTuple):
    """What one group's section gives: gauges as they stand, counter increments of its period."""

    gauges: list[Series]
    increments: list[Series]


# --------------------------------------------------------------------------- the script's handlers


def read_neuroncore_counters(body: Mapping[str, Any]) -> Reading:
    gauges = []
    for core, data in as_mapping(body.get("neuroncores_in_use")).items():
        index, value = _index(core), _number(as_mapping(data).get("neuroncore_utilization"))
        if index is not None and value is not None:
            gauges.append(Series("neuroncore_utilization_ratio", (index,), value / 100.0))
    return Reading(gauges, [])


def read_runtime_vcpu_usage(body: Mapping[str, Any]) -> Reading:
    usage = as_mapping(body.get("vcpu_usage"))
    gauges = [
        Series("neuron_runtime_vcpu_usage_ratio", (mode,), value / 100.0)
        for mode in RUNTIME_CPU_MODES
        if (value := _number(usage.get(mode))) is not None
    ]
    return Reading(gauges, [])


def read_memory_used(body: Mapping[str, Any]) -> Reading:
    used = as_mapping(body.get("neuron_runtime_used_bytes"))
    gauges = [
        Series("neuron_runtime_memory_used_bytes", (location,), value)
        for location in MEMORY_LOCATIONS
        if (value := _number(used.get(location))) is not None
    ]
    cores = as_mapping(as_mapping(used.get("usage_breakdown")).get("neuroncore_memory_usage"))
    for category in CORE_MEMORY_CATEGORIES:
        for core, categories in cores.items():
            index, value = _index(core), _number(as_mapping(categories).get(category))
            if index is not None and value is not None:
                family = f"neuroncore_memory_usage_{category}"
                gauges.append(Series(family, (NO_MEMORY_LOCATION, index), value))
    return Reading(gauges, [])


def read_execution_stats(body: Mapping[str, Any]) -> Reading:
    increments = [
        Series("execution_errors", (str(error_type),), count)
        for error_type, value in as_mapping(body.get("error_summary")).items()
        if (count := _count(value)) is not None
    ]
    increments += [
        Series("execution_status", (str(outcome),), count)
        for outcome, value in as_mapping(body.get("execution_summary")).items()
        if (count := _count(value)) is not None
    ]
    total = as_mapping(as_mapping(body.get("latency_stats")).get("total_latency"))  # null: no execution
    gauges = [
        Series("execution_latency_seconds", (str(percentile),), seconds)
        for percentile, value in total.items()
        if (seconds := _number(value)) is not None
    ]
    return Reading(gauges, increments)


def read_neuron_hw_counters(body: Mapping[str, Any]) -> Reading:
    increments = []
    devices = body.get("neuron_devices")
    for device in devices if isinstance(devices, list) else []:
        device = as_mapping(device)
        index = _index(device.get("neuron_device_index"))
        if index is None:
            continue
        for kind in ECC_KINDS:
            count = _count(device.get(kind))
            if count is not None:
                increments.append(Series("hardware_ecc_events", (kind, index), count))
    return Reading([], increments)


def read_vcpu_usage(body: Mapping[str, Any]) -> Reading:
    gauges = []
    usage_data = body.get("usage_data")
    if isinstance(usage_data, (Mapping, list)):
        gauges.append(Series("system_vcpu_count", (), float(len(usage_data))))
    average = as_mapping(body.get("average_usage"))
    if average:
        for usage_type, modes in _VCPU_AGGREGATION.items():
            value = min(sum(_number(average.get(mode)) or 0.0 for mode in modes), 100.0)
            gauges.append(Series("system_vcpu_usage_ratio", (usage_type,), value / 100.0))
    return Reading(gauges, [])


def read_memory_info(body: Mapping[str, Any]) -> Reading:
    gauges = [
        Series(f"system_{kind}_{stat}", (), value)
        for kind in ("memory", "swap")
        for stat in ("total_bytes", "used_bytes")
        if (value := _number(body.get(f"{kind}_{stat}"))) is not None
    ]
    return Reading(gauges, [])


Handler = Callable[[Mapping[str, Any]], Reading]
# By level: the script looks handlers up by name alone, but no report has a runtime group among the
# system ones or the reverse, and a family keeps one label set.
RUNTIME_HANDLERS: Mapping[str, Handler] = {
    NEURONCORE_COUNTERS: read_neuroncore_counters,
    RUNTIME_VCPU_USAGE: read_runtime_vcpu_usage,
    MEMORY_USED: read_memory_used,
    EXECUTION_STATS: read_execution_stats,
}
SYSTEM_HANDLERS: Mapping[str, Handler] = {
    NEURON_HW_COUNTERS: read_neuron_hw_counters,
    VCPU_USAGE: read_vcpu_usage,
    MEMORY_INFO: read_memory_info,
}


def as_mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _number(value: object) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def _count(value: object) -> float | None:
    """A counter increment: a number >= 0 (prometheus_client's Counter.inc refuses others)."""
    number = _number(value)
    return number if number is not None and number >= 0 else None


def _index(value: object) -> str | None:
    """A NeuronCore or device index as the script labels it (`int(key)`), or None if it is not one."""
    if isinstance(value, bool):
        return None
    try:
        return str(int(value))  # type: ignore[call-overload]
    except (TypeError, ValueError, OverflowError):
        return None
