"""The 2.x report's neuron_k8s_info, rendered from the pod attribution's points; the 1.x report unchanged."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.metrics.export import AggregationTemporality
from opentelemetry.sdk.resources import Resource

from otel_neuron.attribution import PodAttribution
from otel_neuron.groups.base import MetricGroup, PointsByMetric
from otel_neuron.kubernetes.allocation import NeuronAllocation, PodContainer
from otel_neuron.producer import Collected, MetricsDataProducer
from otel_neuron.report import report_from_metrics
from otel_neuron.report.v2 import StandingReportV2, report_v2_from_metrics
from otel_neuron.semconv import CORE_INDEX, CORE_UTILIZATION, DEVICE_CORES, DEVICE_INDEX, RUNTIME_INDEX

BERT = PodContainer("bert-0", "ml", "server")
LLAMA = PodContainer("llama-7b", "ml", "vllm")


class Kubelet:
    def __init__(self, allocation: NeuronAllocation, error: str = "") -> None:
        self.allocation = allocation
        self.error = error
        self.period = 1.000113182


class Fixed(MetricGroup):
    """A group of a runtime whose samples are always `points` (the report renders it by its key)."""

    def __init__(self, report_key: str, runtime_index: int, points: PointsByMetric) -> None:
        super().__init__(runtime_index)
        self.report_key = report_key
        self.instruments = tuple(spec for spec in (CORE_UTILIZATION, DEVICE_CORES) if spec.name in points)
        self._points = points

    def _sample_points(self, period: float) -> PointsByMetric:
        return self._points


def collected() -> list[Collected]:
    cores = Fixed(
        "neuroncore_counters",
        0,
        {CORE_UTILIZATION.name: [({RUNTIME_INDEX: 0, CORE_INDEX: core}, 0.25) for core in range(4)]},
    )
    # Stands for a source that counts each device's NeuronCores (sysfs, neuron_hardware_info).
    hardware = Fixed(
        "neuron_hardware_info",
        1,
        {DEVICE_CORES.name: [({RUNTIME_INDEX: 1, DEVICE_INDEX: d}, 2) for d in range(2)]},
    )
    return [Collected(group, group.sample()) for group in (cores, hardware)]


def produce(kubelet: Kubelet | None, samples: Sequence[Collected]) -> Any:
    attribution = PodAttribution(kubelet) if kubelet is not None else None
    return MetricsDataProducer(Resource({}), AggregationTemporality.DELTA, attribution).produce(samples)


def test_neuron_k8s_info_has_neuron_monitors_shape() -> None:
    kubelet = Kubelet(NeuronAllocation(cores={0: BERT}, devices={1: LLAMA}))
    report = report_v2_from_metrics(produce(kubelet, collected()))
    assert list(report) == [
        "neuron_runtime_data",
        "system_data",
        "instance_info",
        "neuron_hardware_info",
        "neuron_k8s_info",
    ]
    server = {"pod_name": "bert-0", "namespace": "ml", "container_name": ["server"]}
    vllm = {"pod_name": "llama-7b", "namespace": "ml", "container_name": ["vllm"]}
    assert report["neuron_k8s_info"] == {
        "period": 1.000113182,
        "neuroncores_k8s_info": {"0": server, "2": vllm, "3": vllm},
        "neurondevices_k8s_info": {"1": vllm},
        "error": "",
    }


def test_a_failing_kubelet_is_the_error_of_neuron_k8s_info() -> None:
    error = "/var/lib/kubelet/pod-resources/kubelet.sock: no such socket"
    report = report_v2_from_metrics(produce(Kubelet(NeuronAllocation(), error), collected()))
    assert report["neuron_k8s_info"]["error"] == error
    assert report["neuron_k8s_info"]["neuroncores_k8s_info"] == {}
    assert report["neuron_k8s_info"]["neurondevices_k8s_info"] == {}


def test_without_kubernetes_there_is_no_neuron_k8s_info() -> None:
    assert "neuron_k8s_info" not in report_v2_from_metrics(produce(None, collected()))
    assert "neuron_k8s_info" not in StandingReportV2().update(produce(None, collected()))


def test_the_standing_report_follows_the_allocation() -> None:
    kubelet = Kubelet(NeuronAllocation(cores={0: BERT}))
    attribution = PodAttribution(kubelet)
    producer = MetricsDataProducer(Resource({}), AggregationTemporality.DELTA, attribution)
    standing = StandingReportV2()
    assert list(
        standing.update(producer.produce(collected()))["neuron_k8s_info"]["neuroncores_k8s_info"]
    ) == ["0"]
    kubelet.allocation = NeuronAllocation(cores={3: LLAMA})
    info = standing.update(producer.produce(collected()))["neuron_k8s_info"]
    assert info["neuroncores_k8s_info"] == {
        "3": {"pod_name": "llama-7b", "namespace": "ml", "container_name": ["vllm"]}
    }


def test_the_1x_report_is_the_same_with_and_without_kubernetes() -> None:
    kubelet = Kubelet(NeuronAllocation(cores={0: BERT}, devices={1: LLAMA}))
    with_pods = report_from_metrics(produce(kubelet, collected()))
    without = report_from_metrics(produce(None, collected()))
    assert with_pods == without
    assert "neuron_k8s_info" not in with_pods and "neuron_k8s_info" not in with_pods["system_data"]
