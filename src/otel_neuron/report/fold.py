"""How the points of several applications under one runtime index become the points of one runtime.

The 1.x report has one entry per configured runtime, while a runtime entry may see several
applications (processes a neuron-monitor `tag_filter` matched). Before the 1.x sections are
rendered, the points of the applications are folded: points that differ only in `process.pid`
and `neuron.runtime.tag` become one point, combined by the rule of their instrument (`FOLDS`, the
one place these rules are declared; a test checks every instrument of semconv has one).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from otel_neuron.groups.base import FrozenAttributes, HistogramDelta, Point, PointsByMetric, PointValue
from otel_neuron.histogram import merge_histograms
from otel_neuron.semconv import (
    APPLICATION_ERROR,
    CONTEXT_SWITCHES,
    CORE_EFFECTIVE_FLOPS,
    CORE_FLOPS,
    CORE_MEMORY_BY_CATEGORY,
    CORE_MEMORY_PEAK,
    CORE_OTHER_COUNT,
    CORE_PHYSICAL_UTILIZATION,
    CORE_STATUS_COUNT,
    CORE_SUBGRAPHS,
    CORE_UTILIZATION,
    CPU_AVERAGE_UTILIZATION,
    CPU_COUNT,
    CPU_UTILIZATION,
    DEVICE_CORES,
    DEVICE_HOST_MEMORY_PEAK,
    DEVICE_INFO,
    DEVICE_LATENCY,
    DEVICE_LATENCY_PERCENTILE,
    ECC_ERRORS,
    GROUP_ERROR,
    GROUP_PERIOD,
    HOST_MEMORY_BY_CATEGORY,
    INFERENCE_COUNT,
    INFERENCE_ERRORS,
    INFERENCE_LATENCY,
    INFERENCE_LATENCY_PERCENTILE,
    K8S_ALLOCATION,
    KUBELET_ERROR,
    KUBELET_PERIOD,
    MEMORY_LIMIT,
    MEMORY_USAGE,
    MODEL_MEMORY,
    MODEL_RUNNING,
    PAGING_USAGE,
    POWER_STATUS_GAUGE,
    POWER_UTILIZATION,
    PROCESS_PID,
    RUNTIME_CPU,
    RUNTIME_ERROR,
    RUNTIME_MEMORY,
    RUNTIME_TAG,
    SUBGRAPH_MEMORY,
    SUBGRAPH_MEMORY_BY_CATEGORY,
    InstrumentSpec,
)


class Fold(enum.Enum):
    """How the values of one series in several applications combine."""

    SUM = "sum"  # counts, amounts and rates: the applications' add up
    SUM_CAPPED = "sum, at most 1"  # utilizations: the applications' shares of one core or CPU add up
    MERGE = "merge"  # histograms: one histogram of every application's values
    MAX = "max"  # states and facts: a model running in one application is running
    DROP = "drop"  # per-application facts the folded runtime has no field for


_RULES: tuple[tuple[Fold, tuple[InstrumentSpec, ...]], ...] = (
    (
        Fold.SUM,
        (
            INFERENCE_COUNT,
            INFERENCE_ERRORS,
            ECC_ERRORS,
            CORE_STATUS_COUNT,
            CORE_OTHER_COUNT,
            RUNTIME_MEMORY,
            HOST_MEMORY_BY_CATEGORY,
            CORE_MEMORY_BY_CATEGORY,
            MODEL_MEMORY,
            SUBGRAPH_MEMORY,
            SUBGRAPH_MEMORY_BY_CATEGORY,
            CORE_SUBGRAPHS,
            CORE_FLOPS,
            CORE_EFFECTIVE_FLOPS,
        ),
    ),
    (Fold.SUM_CAPPED, (CORE_UTILIZATION, CORE_PHYSICAL_UTILIZATION, RUNTIME_CPU)),
    (Fold.MERGE, (INFERENCE_LATENCY, DEVICE_LATENCY)),
    (
        Fold.MAX,
        (
            MODEL_RUNNING,
            # Facts of the host and its devices, which no application holds apart: the same fact
            # seen twice is still one.
            CPU_UTILIZATION,
            CPU_AVERAGE_UTILIZATION,
            CONTEXT_SWITCHES,
            CPU_COUNT,
            MEMORY_LIMIT,
            MEMORY_USAGE,
            PAGING_USAGE,
            DEVICE_CORES,
            DEVICE_INFO,
            DEVICE_HOST_MEMORY_PEAK,
            CORE_MEMORY_PEAK,
            POWER_UTILIZATION,
            POWER_STATUS_GAUGE,
            GROUP_PERIOD,
            GROUP_ERROR,
            RUNTIME_ERROR,
            # The kubelet's: of the node, never of an application.
            K8S_ALLOCATION,
            KUBELET_PERIOD,
            KUBELET_ERROR,
        ),
    ),
    # The 1.x percentiles come from the merged histogram; errors stay with their application.
    (Fold.DROP, (INFERENCE_LATENCY_PERCENTILE, DEVICE_LATENCY_PERCENTILE, APPLICATION_ERROR)),
)

# Instrument name -> how its points fold.
FOLDS: Mapping[str, Fold] = {spec.name: rule for rule, specs in _RULES for spec in specs}

APPLICATION_KEYS = frozenset((PROCESS_PID, RUNTIME_TAG))


def fold_applications(points: PointsByMetric) -> dict[str, Sequence[Point]]:
    """`points` (of one section, several applications) as the points of one runtime."""
    return {name: fold_points(block, FOLDS.get(name)) for name, block in points.items()}


def fold_points(points: Sequence[Point], rule: Fold | None) -> list[Point]:
    """The points with the application keys left out, those then equal combined by `rule` (an
    instrument without a rule: histograms merge, numbers add up)."""
    if rule is Fold.DROP:
        return []
    folded: dict[frozenset[tuple[str, Any]], Point] = {}
    for attributes, value in points:
        rest = {key: item for key, item in attributes.items() if key not in APPLICATION_KEYS}
        key = frozenset(rest.items())
        before = folded.get(key)
        if before is None:
            folded[key] = (FrozenAttributes(rest), value)
        else:
            folded[key] = (before[0], _combine(rule, before[1], value))
    return list(folded.values())


def _combine(rule: Fold | None, first: PointValue, second: PointValue) -> PointValue:
    if isinstance(first, HistogramDelta) or isinstance(second, HistogramDelta):
        merged = merge_histograms(_histogram(first), _histogram(second))
        return merged if merged is not None else 0
    return _NUMBER_FOLDS.get(rule, _add)(first, second)


def _histogram(value: PointValue) -> HistogramDelta | None:
    return value if isinstance(value, HistogramDelta) else None


def _add(first: Any, second: Any) -> Any:
    return first + second


def _add_capped(first: Any, second: Any) -> Any:
    return min(first + second, 1.0)


_NUMBER_FOLDS: dict[Fold | None, Callable[[Any, Any], Any]] = {
    Fold.SUM: _add,
    Fold.SUM_CAPPED: _add_capped,
    Fold.MAX: max,
}
