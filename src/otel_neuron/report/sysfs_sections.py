"""The sections only the Neuron driver's sysfs gives (otel-neuron's own): neuron_power, neuroncore_status.

The same in both report formats (neuron-monitor has no such sections); the points come from
`groups.sysfs`.
"""

from __future__ import annotations

from typing import Any

from otel_neuron.groups.base import PointsByMetric
from otel_neuron.report.point_values import as_index, percent, whole
from otel_neuron.semconv import (
    CORE_COUNTER,
    CORE_INDEX,
    CORE_OTHER_COUNT,
    CORE_STATUS,
    CORE_STATUS_COUNT,
    DEVICE_INDEX,
    POWER_STATISTIC,
    POWER_STATUS,
    POWER_STATUS_GAUGE,
    POWER_UTILIZATION,
)

Body = dict[str, Any]


def render_neuron_power(points: PointsByMetric) -> Body:
    """neuron_devices: each device's reading status and, when valid, its power utilization (percent)."""
    devices: dict[int, Body] = {}
    for attributes, _ in points.get(POWER_STATUS_GAUGE.name, ()):
        index = as_index(attributes.get(DEVICE_INDEX))
        devices[index] = {
            "neuron_device_index": index,
            "status": str(attributes.get(POWER_STATUS, "")).upper(),
            "power_utilization": None,
        }
    for attributes, value in points.get(POWER_UTILIZATION.name, ()):
        index = as_index(attributes.get(DEVICE_INDEX))
        entry = devices.setdefault(
            index, {"neuron_device_index": index, "status": "VALID", "power_utilization": None}
        )
        if entry["power_utilization"] is None:
            entry["power_utilization"] = {}
        statistic = str(attributes.get(POWER_STATISTIC))
        entry["power_utilization"][statistic] = percent(value)
    return {"neuron_devices": [devices[index] for index in sorted(devices)]}


def render_neuroncore_status(points: PointsByMetric) -> Body:
    """neuroncores: each NeuronCore's status and other_info counters of the period."""
    cores: dict[int, dict[str, dict[str, int]]] = {}
    for metric, family, key in (
        (CORE_STATUS_COUNT.name, "status", CORE_STATUS),
        (CORE_OTHER_COUNT.name, "other_info", CORE_COUNTER),
    ):
        for attributes, value in points.get(metric, ()):
            entry = cores.setdefault(as_index(attributes.get(CORE_INDEX)), {"status": {}, "other_info": {}})
            entry[family][str(attributes.get(key))] = whole(value)
    return {"neuroncores": {str(index): cores[index] for index in sorted(cores)}}
