"""neuron-monitor 2.x's sections, each rendered from the points of one application (or the host).

Every function takes the points of its instruments and returns the section's body without `period`
and `error`. Shapes follow neuron-monitor's user guide; a field AWS's neuron-monitor-prometheus.py
reads is always there (all five NeuronCore memory categories, every error type and outcome).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from otel_neuron.groups.base import Attributes, HistogramDelta, Point, PointsByMetric
from otel_neuron.histogram import holds_values, merge_histograms, percentiles
from otel_neuron.report.point_values import as_index, percent, whole
from otel_neuron.semconv import (
    CORE_EFFECTIVE_FLOPS,
    CORE_FLOPS,
    CORE_INDEX,
    CORE_MEMORY_BY_CATEGORY,
    CORE_MEMORY_CATEGORIES,
    CORE_PHYSICAL_UTILIZATION,
    CORE_UTILIZATION,
    CORE_VERSION,
    CPU_MODE,
    DEVICE_CORES,
    DEVICE_INDEX,
    DEVICE_INFO,
    DEVICE_LATENCY,
    DEVICE_LATENCY_PERCENTILE,
    DEVICE_MEMORY_SIZE,
    DEVICE_TYPE,
    DEVICE_VERSION,
    ECC_ERRORS,
    ECC_KINDS,
    ERROR_TYPE,
    ERROR_TYPES_V2,
    HOST_MEMORY_BY_CATEGORY,
    HOST_MEMORY_CATEGORIES,
    HW_ERROR_TYPE,
    INFERENCE_COUNT,
    INFERENCE_ERRORS,
    INFERENCE_LATENCY,
    INFERENCE_LATENCY_PERCENTILE,
    LATENCY_PERCENTILE,
    LOGICAL_CORE_CONFIG,
    MEMORY_CATEGORY,
    MEMORY_LOCATION,
    MEMORY_LOCATIONS,
    MODEL_ID,
    MODEL_MEMORY,
    MODEL_NAME,
    MODEL_RUNNING,
    MODEL_UUID,
    OUTCOME,
    OUTCOMES,
    PERCENTILE_FRACTIONS,
    PHYSICAL_CORE,
    RUNTIME_CPU,
    RUNTIME_CPU_MODES,
    RUNTIME_MEMORY,
    SUBGRAPH_DEVICE_MEMORY_CATEGORIES,
    SUBGRAPH_MEMORY,
    SUBGRAPH_MEMORY_BY_CATEGORY,
    SUBGRAPH_NAME,
)

Body = dict[str, Any]

# A FLOPS point renders under the key upstream used.
_FLOPS_KEYS = ((CORE_FLOPS.name, "flops"), (CORE_EFFECTIVE_FLOPS.name, "effective_flops"))


def render_neuroncore_counters(points: PointsByMetric) -> Body:
    """neuroncores_in_use: each core's utilization (percent), FLOPS and Trn2's per-physical-core v3d."""
    cores: dict[int, Body] = {}

    def core(attributes: Attributes) -> Body:
        index = as_index(attributes.get(CORE_INDEX))
        entry = cores.get(index)
        if entry is None:  # neuroncore_utilization first and always: AWS's script reads it
            entry = cores[index] = {"neuroncore_utilization": 0.0}
        return entry

    for attributes, value in points.get(CORE_UTILIZATION.name, ()):
        core(attributes)["neuroncore_utilization"] = percent(value)
    for name, key in _FLOPS_KEYS:
        for attributes, value in points.get(name, ()):
            core(attributes)[key] = value
    for attributes, value in points.get(CORE_PHYSICAL_UTILIZATION.name, ()):
        physical = core(attributes).setdefault("v3d", {})
        physical[str(attributes.get(PHYSICAL_CORE, ""))] = {"neuroncore_utilization": percent(value)}
    return {"neuroncores_in_use": {str(index): cores[index] for index in sorted(cores)}}


def render_execution_stats(points: PointsByMetric) -> Body:
    """error_summary (by 2.x error type), execution_summary (by outcome) and latency_stats."""
    return {
        "error_summary": _totals(points.get(INFERENCE_ERRORS.name, ()), ERROR_TYPE, ERROR_TYPES_V2),
        "execution_summary": _totals(points.get(INFERENCE_COUNT.name, ()), OUTCOME, OUTCOMES),
        "latency_stats": {
            "total_latency": _latency(points, INFERENCE_LATENCY_PERCENTILE.name, INFERENCE_LATENCY.name),
            "device_latency": _latency(points, DEVICE_LATENCY_PERCENTILE.name, DEVICE_LATENCY.name),
        },
    }


def _totals(points: Iterable[Point], key: str, known: Sequence[str]) -> dict[str, int]:
    """{name: total} of the names the points carry (the known ones first, in their order), so a name
    upstream did not report is not invented; every known name, 0, when the points carry none."""
    found: dict[str, int] = {}
    for attributes, value in points:
        name = str(attributes.get(key))
        found[name] = found.get(name, 0) + whole(value)
    if not found:
        return dict.fromkeys(known, 0)
    ordered = {name: found[name] for name in known if name in found}
    ordered.update(found)
    return ordered


def _latency(points: PointsByMetric, exact: str, histogram: str) -> dict[str, float] | None:
    """The percentiles upstream gave exactly (only those), else p0..p100 estimated from the histogram
    as in the 1.x report, else None (nothing ran)."""
    given = {
        str(attributes.get(LATENCY_PERCENTILE)): value
        for attributes, value in points.get(exact, ())
        if isinstance(value, (int, float))
    }
    if given:
        return dict(sorted(given.items(), key=_percentile_order))
    merged: HistogramDelta | None = None
    for _, value in points.get(histogram, ()):
        if isinstance(value, HistogramDelta) and holds_values(value):
            merged = merge_histograms(merged, value)
    return percentiles(merged) if merged is not None else None


def _percentile_order(item: tuple[str, float]) -> tuple[float, str]:
    fraction = PERCENTILE_FRACTIONS.get(item[0])
    return (fraction if fraction is not None else 2.0), item[0]


def render_memory_used(points: PointsByMetric) -> Body:
    """neuron_runtime_used_bytes with its usage_breakdown, and loaded_models with each subgraph's."""
    used: Body = dict.fromkeys(MEMORY_LOCATIONS, 0)
    for attributes, value in points.get(RUNTIME_MEMORY.name, ()):
        location = str(attributes.get(MEMORY_LOCATION))
        if location in used:
            used[location] += whole(value)
    used["usage_breakdown"] = {
        "host": _categories(points.get(HOST_MEMORY_BY_CATEGORY.name, ()), HOST_MEMORY_CATEGORIES),
        "neuroncore_memory_usage": _core_categories(points.get(CORE_MEMORY_BY_CATEGORY.name, ())),
    }
    return {"neuron_runtime_used_bytes": used, "loaded_models": _loaded_models(points)}


def _categories(points: Iterable[Point], known: Sequence[str]) -> dict[str, int]:
    """{category: bytes}: once any category is given, every known one (0 when not given), then any
    other a source has (sysfs counts more categories than neuron-monitor); empty when none is."""
    found: dict[str, int] = {}
    for attributes, value in points:
        category = str(attributes.get(MEMORY_CATEGORY))
        found[category] = found.get(category, 0) + whole(value)
    return {**dict.fromkeys(known, 0), **found} if found else {}


def _core_categories(points: Iterable[Point]) -> dict[str, dict[str, int]]:
    """Each NeuronCore's device memory by category, with the five 2.x categories always there (0 when
    not given: AWS's script reads all five)."""
    cores: dict[int, dict[str, int]] = {}
    for attributes, value in points:
        index = as_index(attributes.get(CORE_INDEX))
        categories = cores.get(index)
        if categories is None:
            categories = cores[index] = dict.fromkeys(CORE_MEMORY_CATEGORIES, 0)
        category = str(attributes.get(MEMORY_CATEGORY))
        categories[category] = categories.get(category, 0) + whole(value)
    return {str(index): cores[index] for index in sorted(cores)}


def _loaded_models(points: PointsByMetric) -> list[Body]:
    models: dict[int, Body] = {}

    def model(attributes: Attributes) -> Body:
        model_id = as_index(attributes.get(MODEL_ID))
        entry = models.get(model_id)
        if entry is None:
            entry = models[model_id] = {
                "name": str(attributes.get(MODEL_NAME, "")),
                "uuid": str(attributes.get(MODEL_UUID, "")),
                "model_id": model_id,
                "is_running": False,
            }
        return entry

    for attributes, value in points.get(MODEL_RUNNING.name, ()):
        model(attributes)["is_running"] = bool(value)
    for attributes, value in points.get(MODEL_MEMORY.name, ()):
        location = str(attributes.get(MEMORY_LOCATION))
        if location in MEMORY_LOCATIONS:
            memory = model(attributes).setdefault("memory_used_bytes", dict.fromkeys(MEMORY_LOCATIONS, 0))
            memory[location] = whole(value)
    subgraphs: dict[tuple[int, str], Body] = {}

    def subgraph(attributes: Attributes) -> Body:
        owner = model(attributes)
        name = str(attributes.get(SUBGRAPH_NAME, ""))
        entry = subgraphs.get((owner["model_id"], name))
        if entry is None:
            entry = subgraphs[(owner["model_id"], name)] = {
                "memory_used_bytes": dict.fromkeys(MEMORY_LOCATIONS, 0),
                "neuroncore_index": as_index(attributes.get(CORE_INDEX)),
                "neuron_device_index": as_index(attributes.get(DEVICE_INDEX)),
            }
            owner.setdefault("subgraphs", {})[name] = entry
        return entry

    for attributes, value in points.get(SUBGRAPH_MEMORY.name, ()):
        location = str(attributes.get(MEMORY_LOCATION))
        if location in MEMORY_LOCATIONS:
            subgraph(attributes)["memory_used_bytes"][location] = whole(value)
    for attributes, value in points.get(SUBGRAPH_MEMORY_BY_CATEGORY.name, ()):
        location = str(attributes.get(MEMORY_LOCATION))
        if location in _SUBGRAPH_CATEGORIES:
            memory = subgraph(attributes)["memory_used_bytes"]
            breakdown = memory.setdefault("usage_breakdown", {})
            categories = breakdown.setdefault(location, dict.fromkeys(_SUBGRAPH_CATEGORIES[location], 0))
            category = str(attributes.get(MEMORY_CATEGORY))
            if category in categories:
                categories[category] += whole(value)
    for entry in models.values():
        entry["subgraphs"] = entry.pop("subgraphs", {})  # last, as neuron-monitor writes it
    return [models[model_id] for model_id in sorted(models)]


# A subgraph's usage_breakdown: its host memory and its device memory (no shared scratchpad) by category.
_SUBGRAPH_CATEGORIES = {"host": HOST_MEMORY_CATEGORIES, "neuron_device": SUBGRAPH_DEVICE_MEMORY_CATEGORIES}


def render_runtime_vcpu_usage(points: PointsByMetric) -> Body:
    """vcpu_usage: the application's user and system CPU, percent of all vCPUs."""
    usage = dict.fromkeys(RUNTIME_CPU_MODES, 0.0)
    for attributes, value in points.get(RUNTIME_CPU.name, ()):
        mode = str(attributes.get(CPU_MODE))
        if mode in usage:
            usage[mode] = percent(value)
    return {"vcpu_usage": usage}


def ecc_devices(points: PointsByMetric) -> dict[int, dict[str, int]]:
    """Each Neuron device's ECC events of the period, by device index, with the four 2.x kinds."""
    devices: dict[int, dict[str, int]] = {}
    for attributes, value in points.get(ECC_ERRORS.name, ()):
        index = as_index(attributes.get(DEVICE_INDEX))
        device = devices.get(index)
        if device is None:
            device = devices[index] = {"neuron_device_index": index, **dict.fromkeys(ECC_KINDS, 0)}
        kind = str(attributes.get(HW_ERROR_TYPE))
        if kind in ECC_KINDS:
            device[kind] += whole(value)
    return devices


def render_hardware_info(points: PointsByMetric) -> Body:
    """neuron_hardware_info's facts, in neuron-monitor's order: the devices' type, version and
    NeuronCore version when the source knows them (an older neuron-monitor gives only the counts),
    how many devices and NeuronCores per device (0 when unknown: AWS's script reads both counts),
    and the facts only neuron-monitor gives (memory size, logical NeuronCore config) when it gave them."""
    infos = sorted(points.get(DEVICE_INFO.name, ()), key=lambda point: as_index(point[0].get(DEVICE_INDEX)))
    counts = [whole(value) for _, value in points.get(DEVICE_CORES.name, ())]
    first = infos[0][0] if infos else {}
    body: Body = {}
    if DEVICE_TYPE in first:
        body["neuron_device_type"] = str(first[DEVICE_TYPE])
    if DEVICE_VERSION in first:
        body["neuron_device_version"] = str(first[DEVICE_VERSION])
    if CORE_VERSION in first:
        # The driver's "NCv2" is neuron-monitor's "v2".
        version = str(first[CORE_VERSION])
        body["neuroncore_version"] = (
            version[2:].lower() if version.upper().startswith("NC") else version.lower()
        )
    body["neuron_device_count"] = len(infos)
    if DEVICE_MEMORY_SIZE in first:
        body["neuron_device_memory_size"] = as_index(first[DEVICE_MEMORY_SIZE])
    body["neuroncore_per_device_count"] = max(counts, default=0)
    if LOGICAL_CORE_CONFIG in first:
        body["logical_neuroncore_config"] = as_index(first[LOGICAL_CORE_CONFIG])
    return body
