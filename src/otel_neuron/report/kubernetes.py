"""The 2.x report's root `neuron_k8s_info`, rendered from the pod attribution's OpenTelemetry points.

    {"period": 1.0,
     "neuroncores_k8s_info": {"0": {"pod_name": "p0", "namespace": "n0", "container_name": ["c0"]}, ...},
     "neurondevices_k8s_info": {"0": {...}, ...},
     "error": ""}

neuron-monitor's documented shape: NeuronCores and devices keyed by index, each with its pod, its
namespace and the *names* of the containers using it (a list: one name here, since the kubelet
allocates a NeuronCore or device to one container). The data are the `neuron.k8s.allocation` points
valued 1 (attributes `neuron.core.index` or `neuron.device.index` and `k8s.*`); `period` and `error`
are `neuron.monitor.kubelet.period` and `.error`. A MetricsData without the kubelet's points (no
--kubernetes) has no neuron_k8s_info: None.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from otel_neuron.groups.base import Point
from otel_neuron.report.routing import Collection
from otel_neuron.semconv import (
    CORE_INDEX,
    DEVICE_INDEX,
    ERROR_MESSAGE,
    K8S_ALLOCATION,
    K8S_CONTAINER_NAME,
    K8S_NAMESPACE_NAME,
    K8S_POD_NAME,
    KUBELET_ERROR,
    KUBELET_PERIOD,
)

Report = dict[str, Any]
# The metrics neuron_k8s_info is rendered from.
K8S_INFO_METRICS = (K8S_ALLOCATION.name, KUBELET_PERIOD.name, KUBELET_ERROR.name)


def render_k8s_info(collection: Collection) -> Report | None:
    """neuron_k8s_info of one MetricsData, or None when it has no kubelet points."""
    points = collection.points.of(K8S_INFO_METRICS, None)
    periods, errors = points[KUBELET_PERIOD.name], points[KUBELET_ERROR.name]
    if not periods and not errors:
        return None
    allocation = points[K8S_ALLOCATION.name]
    period = periods[0][1] if periods else 0.0
    return {
        "period": round(period, 9) if isinstance(period, (int, float)) else 0.0,
        "neuroncores_k8s_info": _held(allocation, CORE_INDEX),
        "neurondevices_k8s_info": _held(allocation, DEVICE_INDEX),
        "error": str(errors[0][0].get(ERROR_MESSAGE, "")) if errors else "",
    }


def _held(allocation: Sequence[Point], index_key: str) -> dict[str, Report]:
    held: dict[int, Report] = {}
    for attributes, value in allocation:
        index = attributes.get(index_key)
        if value != 1 or type(index) is not int:
            continue
        held[index] = {
            "pod_name": str(attributes.get(K8S_POD_NAME, "")),
            "namespace": str(attributes.get(K8S_NAMESPACE_NAME, "")),
            "container_name": [str(attributes.get(K8S_CONTAINER_NAME, ""))],
        }
    return {str(index): held[index] for index in sorted(held)}
