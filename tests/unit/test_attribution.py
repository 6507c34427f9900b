"""Pod attribution: which points get the holding container's attributes, through the MetricsData the
producer builds (what every exporter receives)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from opentelemetry.sdk.metrics.export import AggregationTemporality, MetricsData
from opentelemetry.sdk.resources import Resource

from otel_neuron.attribution import PodAttribution
from otel_neuron.groups.base import (
    AttributeColumn,
    GroupSample,
    MetricGroup,
    Point,
    PointColumns,
    PointsByMetric,
)
from otel_neuron.kubernetes.allocation import NeuronAllocation, PodContainer
from otel_neuron.producer import Collected, MetricsDataProducer
from otel_neuron.semconv import (
    CORE_INDEX,
    CORE_UTILIZATION,
    DEVICE_CORES,
    DEVICE_INDEX,
    ECC_ERRORS,
    HW_ERROR_TYPE,
    K8S_ALLOCATION,
    K8S_CONTAINER_NAME,
    K8S_NAMESPACE_NAME,
    K8S_POD_NAME,
    KUBELET_ERROR,
    KUBELET_PERIOD,
    RUNTIME_INDEX,
    SUBGRAPH_MEMORY,
    SUBGRAPH_NAME,
    InstrumentSpec,
)

BERT = PodContainer("bert-0", "ml", "server")
LLAMA = PodContainer("llama-7b", "ml", "vllm")
POD_KEYS = (K8S_POD_NAME, K8S_NAMESPACE_NAME, K8S_CONTAINER_NAME)


def pod_of(attributes: Any) -> tuple[str, str, str] | None:
    if K8S_POD_NAME not in attributes:
        assert not any(key in attributes for key in POD_KEYS)
        return None
    return tuple(attributes[key] for key in POD_KEYS)  # type: ignore[return-value]


BERT_LABELS = ("bert-0", "ml", "server")
LLAMA_LABELS = ("llama-7b", "ml", "vllm")


class Kubelet:
    """What the attribution reads from the refresher."""

    def __init__(self) -> None:
        self.allocation = NeuronAllocation()
        self.error = ""
        self.period = 1.0


class Group(MetricGroup):
    """A group whose next sample is set by the test."""

    def __init__(self, instruments: Sequence[InstrumentSpec], runtime_index: int | None = 0) -> None:
        super().__init__(runtime_index)
        self.report_key = "test_group"
        self.instruments = tuple(instruments)
        self.next: PointsByMetric = {}

    def _sample_points(self, period: float) -> PointsByMetric:
        return self.next


def collect(*groups: Group) -> list[Collected]:
    return [Collected(group, GroupSample(1.0, "", 1_000_000_000, group.next)) for group in groups]


def points(data: MetricsData, name: str) -> list[tuple[Any, Any]]:
    found: list[tuple[Any, Any]] = []
    for resource_metrics in data.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                if metric.name == name:
                    found += [(point.attributes, point.value) for point in metric.data.data_points]
    return found


def core_points(count: int) -> dict[str, Sequence[Point]]:
    column = AttributeColumn({RUNTIME_INDEX: 0, CORE_INDEX: core} for core in range(count))
    subgraphs = [
        ({RUNTIME_INDEX: 0, CORE_INDEX: core, DEVICE_INDEX: core // 2, SUBGRAPH_NAME: "sg0"}, 1024)
        for core in range(count)
    ]
    return {CORE_UTILIZATION.name: PointColumns(column, [0.5] * count), SUBGRAPH_MEMORY.name: subgraphs}


def device_points(devices: int, cores_per_device: int | None) -> dict[str, Sequence[Point]]:
    ecc = [
        ({RUNTIME_INDEX: 1, DEVICE_INDEX: d, HW_ERROR_TYPE: "mem_ecc_corrected"}, 0) for d in range(devices)
    ]
    counts = (
        []
        if cores_per_device is None
        else [({RUNTIME_INDEX: 1, DEVICE_INDEX: d}, cores_per_device) for d in range(devices)]
    )
    return {ECC_ERRORS.name: ecc, DEVICE_CORES.name: counts}


@pytest.fixture
def kubelet() -> Kubelet:
    return Kubelet()


@pytest.fixture
def cores() -> Group:
    return Group([CORE_UTILIZATION, SUBGRAPH_MEMORY])


@pytest.fixture
def devices() -> Group:
    return Group([ECC_ERRORS, DEVICE_CORES], runtime_index=1)


@pytest.fixture
def producer(kubelet: Kubelet) -> MetricsDataProducer:
    return MetricsDataProducer(Resource({}), AggregationTemporality.DELTA, PodAttribution(kubelet))


def by_core(data: MetricsData, name: str) -> dict[int, tuple[str, str, str] | None]:
    return {attributes[CORE_INDEX]: pod_of(attributes) for attributes, _ in points(data, name)}


def by_device(data: MetricsData, name: str) -> dict[int, tuple[str, str, str] | None]:
    return {attributes[DEVICE_INDEX]: pod_of(attributes) for attributes, _ in points(data, name)}


def test_core_scoped_points_of_held_cores_name_their_container_and_free_ones_nothing(
    kubelet: Kubelet, producer: MetricsDataProducer, cores: Group
) -> None:
    kubelet.allocation = NeuronAllocation(cores={0: BERT, 1: BERT, 3: LLAMA})
    cores.next = core_points(4)
    data = producer.produce(collect(cores))
    expected = {0: BERT_LABELS, 1: BERT_LABELS, 2: None, 3: LLAMA_LABELS}
    assert by_core(data, CORE_UTILIZATION.name) == expected
    # A subgraph's points name their core and their device: core-scoped.
    assert by_core(data, SUBGRAPH_MEMORY.name) == expected
    # Nothing else changed on the points.
    for attributes, value in points(data, CORE_UTILIZATION.name):
        assert {k: v for k, v in attributes.items() if k not in POD_KEYS} == {
            RUNTIME_INDEX: 0,
            CORE_INDEX: attributes[CORE_INDEX],
        }
        assert value == 0.5


def test_a_whole_device_covers_its_cores_once_a_source_counts_them(
    kubelet: Kubelet, producer: MetricsDataProducer, cores: Group, devices: Group
) -> None:
    kubelet.allocation = NeuronAllocation(cores={0: BERT}, devices={1: LLAMA})
    cores.next = core_points(4)
    devices.next = device_points(2, cores_per_device=None)
    data = producer.produce(collect(cores, devices))
    # No source said how many NeuronCores a device has: only the direct allocations label.
    assert by_core(data, CORE_UTILIZATION.name) == {0: BERT_LABELS, 1: None, 2: None, 3: None}
    assert by_device(data, ECC_ERRORS.name) == {0: None, 1: LLAMA_LABELS}

    devices.next = device_points(2, cores_per_device=2)  # as sysfs or neuron_hardware_info give it
    data = producer.produce(collect(cores, devices))
    assert by_core(data, CORE_UTILIZATION.name) == {0: BERT_LABELS, 1: None, 2: LLAMA_LABELS, 3: LLAMA_LABELS}
    assert by_device(data, ECC_ERRORS.name) == {0: None, 1: LLAMA_LABELS}
    # The count is remembered: a tick without the hardware group labels the same way.
    data = producer.produce(collect(cores))
    assert by_core(data, CORE_UTILIZATION.name)[2] == LLAMA_LABELS


def test_a_device_all_of_whose_cores_one_container_holds_is_its(
    kubelet: Kubelet, producer: MetricsDataProducer, devices: Group
) -> None:
    kubelet.allocation = NeuronAllocation(cores={0: BERT, 1: BERT, 2: BERT, 3: LLAMA})
    devices.next = device_points(2, cores_per_device=2)
    data = producer.produce(collect(devices))
    assert by_device(data, ECC_ERRORS.name) == {0: BERT_LABELS, 1: None}  # device 1 is split


def test_labels_follow_the_allocation_and_a_pod_that_left_leaves_nothing(
    kubelet: Kubelet, producer: MetricsDataProducer, cores: Group
) -> None:
    cores.next = core_points(2)
    kubelet.allocation = NeuronAllocation(cores={0: BERT})
    assert by_core(producer.produce(collect(cores)), CORE_UTILIZATION.name) == {0: BERT_LABELS, 1: None}
    kubelet.allocation = NeuronAllocation(cores={0: LLAMA, 1: LLAMA})
    assert by_core(producer.produce(collect(cores)), CORE_UTILIZATION.name) == {
        0: LLAMA_LABELS,
        1: LLAMA_LABELS,
    }
    kubelet.allocation = NeuronAllocation()
    data = producer.produce(collect(cores))
    assert by_core(data, CORE_UTILIZATION.name) == {0: None, 1: None}
    # The allocation gauge keeps a 0 point for every core held before, without pod attributes.
    assert sorted((a[CORE_INDEX], pod_of(a), v) for a, v in points(data, K8S_ALLOCATION.name)) == [
        (0, None, 0),
        (1, None, 0),
    ]


def test_the_allocation_gauge_covers_every_known_core_and_device(
    kubelet: Kubelet, producer: MetricsDataProducer, devices: Group
) -> None:
    kubelet.allocation = NeuronAllocation(cores={1: BERT}, devices={1: LLAMA})
    devices.next = device_points(2, cores_per_device=2)
    allocation = points(producer.produce(collect(devices)), K8S_ALLOCATION.name)
    cores = {a[CORE_INDEX]: (pod_of(a), v) for a, v in allocation if CORE_INDEX in a}
    devices = {a[DEVICE_INDEX]: (pod_of(a), v) for a, v in allocation if DEVICE_INDEX in a}
    assert cores == {0: (None, 0), 1: (BERT_LABELS, 1), 2: (LLAMA_LABELS, 1), 3: (LLAMA_LABELS, 1)}
    assert devices == {0: (None, 0), 1: (LLAMA_LABELS, 1)}
    assert all(len(a) in (1, 4) for a, _ in allocation)  # the index, and the pod attributes if held


def test_the_kubelets_health_travels_as_points(
    kubelet: Kubelet, producer: MetricsDataProducer, cores: Group
) -> None:
    kubelet.period = 1.002
    data = producer.produce(collect(cores))
    assert points(data, KUBELET_PERIOD.name) == [({}, 1.002)]
    assert points(data, KUBELET_ERROR.name) == [({"error.message": ""}, 0)]
    kubelet.error = "/run/kubelet.sock: no such socket"
    data = producer.produce(collect(cores))
    assert points(data, KUBELET_ERROR.name) == [({"error.message": kubelet.error}, 1)]


def test_without_a_holder_the_very_same_points_go_on(kubelet: Kubelet) -> None:
    attribution = PodAttribution(kubelet)
    block = core_points(4)[CORE_UTILIZATION.name]
    attribution.begin([])
    assert attribution.label(block) is block  # no allocation at all
    kubelet.allocation = NeuronAllocation(cores={9: BERT})
    attribution.begin([])
    assert attribution.label(block) is block  # none of these cores is held
    listed = list(block)
    assert attribution.label(listed) is listed


def test_points_whose_index_is_odd_are_left_alone(kubelet: Kubelet) -> None:
    kubelet.allocation = NeuronAllocation(cores={1: BERT})
    attribution = PodAttribution(kubelet)
    attribution.begin([])
    odd: list[Point] = [({CORE_INDEX: "one"}, 1), ({CORE_INDEX: [1]}, 1), ({DEVICE_INDEX: None}, 1)]  # type: ignore[list-item]
    assert attribution.label(odd) is odd


def test_cumulative_counters_keep_their_totals_when_their_pod_changes(
    kubelet: Kubelet, cores: Group, devices: Group
) -> None:
    producer = MetricsDataProducer(Resource({}), AggregationTemporality.CUMULATIVE, PodAttribution(kubelet))
    devices.next = {
        ECC_ERRORS.name: [({RUNTIME_INDEX: 1, DEVICE_INDEX: 0, HW_ERROR_TYPE: "mem_ecc_corrected"}, 2)],
        DEVICE_CORES.name: [],
    }
    kubelet.allocation = NeuronAllocation(devices={0: BERT})
    assert [v for _, v in points(producer.produce(collect(devices)), ECC_ERRORS.name)] == [2]
    kubelet.allocation = NeuronAllocation(devices={0: LLAMA})
    ((attributes, total),) = points(producer.produce(collect(devices)), ECC_ERRORS.name)
    assert pod_of(attributes) == LLAMA_LABELS and total == 4  # the device's count, not the pod's


def test_bad_arguments_are_refused(kubelet: Kubelet) -> None:
    with pytest.raises(ValueError, match="max_cached"):
        PodAttribution(kubelet, max_cached=0)
