"""The guide's (neuron-monitor 1.x) runtime-level sections, each rendered from the points of one runtime.

Every function takes the points of its instruments (several applications of a runtime already
folded, see `report.fold`) and returns the section's body without `period` and `error`. The points
may come from any source: a runtime endpoint, a neuron-monitor stream, sysfs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from otel_neuron.groups.base import (
    Attributes,
    HistogramDelta,
    Point,
    PointColumns,
    PointsByMetric,
    PointValue,
    derived_from,
)
from otel_neuron.histogram import holds_values, percentiles
from otel_neuron.report import sections_v2
from otel_neuron.report.point_values import as_index, percent, whole
from otel_neuron.semconv import (
    CORE_INDEX,
    CORE_SUBGRAPHS,
    CORE_UTILIZATION,
    CPU_MODE,
    DEVICE_INDEX,
    DEVICE_LATENCY,
    ECC_KINDS_V1,
    ERROR_TYPE,
    ERROR_TYPES_V2,
    INFERENCE_COUNT,
    INFERENCE_ERRORS,
    INFERENCE_LATENCY,
    MEMORY_LOCATION,
    MEMORY_LOCATIONS,
    MODEL_ERROR,
    MODEL_ID,
    MODEL_MEMORY,
    MODEL_NAME,
    MODEL_RUNNING,
    MODEL_UUID,
    OUTCOME,
    OUTCOMES,
    RUNTIME_CPU,
    RUNTIME_MEMORY,
    SUBGRAPH_MEMORY,
    SUBGRAPH_NAME,
)

Body = dict[str, Any]
_Derived = TypeVar("_Derived")


def render_neuroncore_counters(points: PointsByMetric) -> Body:
    """neuroncores_in_use: each core's utilization (percent) and the model:subgraph pairs on it, in
    core order (a core's last utilization point counts; a pair counted n times is listed n times)."""
    cores: dict[int, Body] = {}
    core_of, shares = _derived_column(points.get(CORE_UTILIZATION.name, ()), _core_indexes)
    for core, share in zip(core_of, shares):
        cores[core] = {"neuroncore_utilization": percent(share), "loaded_models": []}
    placed, counts = _derived_column(points.get(CORE_SUBGRAPHS.name, ()), _loaded_model_names)
    for (core, name), count in zip(placed, counts):
        entry = cores.get(core)
        if entry is None:
            entry = cores[core] = {"neuroncore_utilization": 0.0, "loaded_models": []}
        entry["loaded_models"].extend([name] * max(whole(count), 0))
    return {"neuroncores_in_use": {str(core): cores[core] for core in sorted(cores)}}


def _derived_column(
    points: Sequence[Point], derive: Callable[[Sequence[Attributes]], _Derived]
) -> tuple[_Derived, Sequence[PointValue]]:
    """`derive(attributes)` of `points` (kept on a group's own column) and their values."""
    if type(points) is PointColumns:
        return derived_from(points.attributes, derive), points.values
    return derive([attributes for attributes, _ in points]), [value for _, value in points]


def _core_indexes(attributes: Sequence[Attributes]) -> tuple[int, ...]:
    return tuple(as_index(a.get(CORE_INDEX)) for a in attributes)


def _loaded_model_names(attributes: Sequence[Attributes]) -> tuple[tuple[int, str], ...]:
    """(core, "model:subgraph") of each subgraph point, as loaded_models lists them."""
    return tuple(
        (as_index(a.get(CORE_INDEX)), f"{a.get(MODEL_NAME, '')}:{a.get(SUBGRAPH_NAME, '')}")
        for a in attributes
    )


def render_inference_stats(points: PointsByMetric) -> Body:
    """error_summary (the guide's five error types: 2.x's `model` errors are left out),
    inference_summary (by outcome) and latency_stats (percentiles of the period's histograms)."""
    errors, outcomes = points.get(INFERENCE_ERRORS.name, ()), points.get(INFERENCE_COUNT.name, ())
    error_summary = _totals_by_name(errors, _error_types, ERROR_TYPES_V2)
    del error_summary[MODEL_ERROR]  # what is left is the guide's five, in the guide's order
    return {
        "error_summary": error_summary,
        "inference_summary": _totals_by_name(outcomes, _outcomes, OUTCOMES),
        "latency_stats": {
            "total_latency": _latency_object(points.get(INFERENCE_LATENCY.name, ())),
            "device_latency": _latency_object(points.get(DEVICE_LATENCY.name, ())),
        },
    }


_Labels = tuple[str, ...]


def _totals_by_name(
    points: Sequence[Point], labels_of: Callable[[Sequence[Attributes]], _Labels], names: _Labels
) -> dict[str, int]:
    """{name: total} over the points whose label (`labels_of` their attributes) is one of `names`."""
    labels, values = _derived_column(points, labels_of)
    totals = dict.fromkeys(names, 0)
    for name, value in zip(labels, values):
        if name in totals:
            totals[name] += whole(value)
    return totals


def _error_types(attributes: Sequence[Attributes]) -> _Labels:
    return tuple(str(a.get(ERROR_TYPE)) for a in attributes)


def _outcomes(attributes: Sequence[Attributes]) -> _Labels:
    return tuple(str(a.get(OUTCOME)) for a in attributes)


def _latency_object(points: Sequence[Point]) -> dict[str, float] | None:
    for _, value in points:
        if isinstance(value, HistogramDelta) and holds_values(value):
            return percentiles(value)
    return None


def render_memory_used(points: PointsByMetric) -> Body:
    """neuron_runtime_used_bytes (host and device) and loaded_models with each subgraph's memory."""
    used = dict.fromkeys(MEMORY_LOCATIONS, 0)
    for attributes, value in points.get(RUNTIME_MEMORY.name, ()):
        location = str(attributes.get(MEMORY_LOCATION))
        if location in used:
            used[location] += whole(value)
    models: dict[Any, Body] = {}

    def model_entry(attributes: Attributes) -> Body:
        model_id = attributes.get(MODEL_ID)
        entry = models.get(model_id)
        if entry is None:
            entry = models[model_id] = {
                "name": str(attributes.get(MODEL_NAME, "")),
                "uuid": str(attributes.get(MODEL_UUID, "")),
                "model_id": as_index(model_id),
                "is_running": False,
                "memory_used_bytes": dict.fromkeys(MEMORY_LOCATIONS, 0),
                "subgraphs": {},
            }
        return entry

    for attributes, value in points.get(MODEL_RUNNING.name, ()):
        model_entry(attributes)["is_running"] = bool(value)
    for attributes, value in points.get(MODEL_MEMORY.name, ()):
        location = str(attributes.get(MEMORY_LOCATION))
        if location in MEMORY_LOCATIONS:
            model_entry(attributes)["memory_used_bytes"][location] = whole(value)
    for attributes, value in points.get(SUBGRAPH_MEMORY.name, ()):
        subgraphs = model_entry(attributes)["subgraphs"]
        name = str(attributes.get(SUBGRAPH_NAME, ""))
        subgraph = subgraphs.get(name)
        if subgraph is None:
            subgraph = subgraphs[name] = {
                "memory_used_bytes": dict.fromkeys(MEMORY_LOCATIONS, 0),
                "neuroncore_index": as_index(attributes.get(CORE_INDEX)),
                "neuron_device_index": as_index(attributes.get(DEVICE_INDEX)),
            }
        location = str(attributes.get(MEMORY_LOCATION))
        if location in MEMORY_LOCATIONS:
            subgraph["memory_used_bytes"][location] = whole(value)
    ordered = [models[key] for key in sorted(models, key=as_index)]
    return {"neuron_runtime_used_bytes": used, "loaded_models": ordered}


def render_runtime_vcpu_usage(points: PointsByMetric) -> Body:
    """vcpu_usage: the runtime's user and system CPU, percent of all vCPUs."""
    usage = {"user": 0.0, "system": 0.0}
    for attributes, value in points.get(RUNTIME_CPU.name, ()):
        mode = str(attributes.get(CPU_MODE))
        if mode in usage:
            usage[mode] = percent(value)
    return {"vcpu_usage": usage}


def render_hw_counters(points: PointsByMetric) -> Body:
    """neuron_devices: each device's ECC events of the period, of the guide's three kinds."""
    devices = sections_v2.ecc_devices(points)
    return {
        "neuron_devices": [
            {"neuron_device_index": index, **{kind: devices[index][kind] for kind in ECC_KINDS_V1}}
            for index in sorted(devices)
        ]
    }


def render_hardware_info(points: PointsByMetric) -> Body:
    """neuron_hardware_info as the 1.x report has always shown it: 2.x's first four facts, each always
    there ("" or 0 when the source does not know it), without the facts only neuron-monitor gives."""
    facts = sections_v2.render_hardware_info(points)
    return {
        "neuron_device_type": facts.get("neuron_device_type", ""),
        "neuroncore_version": facts.get("neuroncore_version", ""),
        "neuron_device_count": facts["neuron_device_count"],
        "neuroncore_per_device_count": facts["neuroncore_per_device_count"],
    }
