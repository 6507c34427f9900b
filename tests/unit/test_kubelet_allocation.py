"""The kubelet source's mapping (List answer -> NeuronAllocation) and its refresher, on an injected clock."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

import pytest

from otel_neuron.kubernetes import podresources_pb2
from otel_neuron.sources.kubelet import (
    AllocationRefresher,
    KubeletError,
    NeuronAllocation,
    PodContainer,
    allocation_from_response,
    encoded_pods,
)

CORE = "aws.amazon.com/neuroncore"
DEVICE = "aws.amazon.com/neuron"
OLD_DEVICE = "aws.amazon.com/neurondevice"
SOCKET = "/var/lib/kubelet/pod-resources/kubelet.sock"
A = PodContainer("a-0", "ml", "main")
B = PodContainer("b-0", "ml", "main")


def answer(
    *pods: tuple[str, str, Mapping[str, Mapping[str, Iterable[str]]]],
) -> podresources_pb2.ListPodResourcesResponse:
    """(pod, namespace, {container: {resource: [ids]}}) as the kubelet sends it."""
    return podresources_pb2.ListPodResourcesResponse(
        pod_resources=[
            podresources_pb2.PodResources(
                name=name,
                namespace=namespace,
                containers=[
                    podresources_pb2.ContainerResources(
                        name=container,
                        devices=[
                            podresources_pb2.ContainerDevices(resource_name=resource, device_ids=list(ids))
                            for resource, ids in resources.items()
                        ],
                    )
                    for container, resources in containers.items()
                ],
            )
            for name, namespace, containers in pods
        ]
    )


def test_each_resource_maps_to_its_index_space() -> None:
    allocation = allocation_from_response(
        answer(
            ("a-0", "ml", {"main": {CORE: ["4", "5"], "nvidia.com/gpu": ["GPU-1"]}}),
            ("b-0", "ml", {"main": {DEVICE: ["0"]}, "init": {}}),
            ("old-0", "legacy", {"app": {OLD_DEVICE: ["7"]}}),
        )
    )
    assert dict(allocation.cores) == {4: A, 5: A}
    assert dict(allocation.devices) == {0: B, 7: PodContainer("old-0", "legacy", "app")}
    assert allocation.skipped_ids == 0  # the GPU's ID is not a Neuron resource: ignored, not skipped


def test_ids_that_are_not_whole_numbers_are_skipped_and_counted() -> None:
    allocation = allocation_from_response(
        answer(
            (
                "a-0",
                "ml",
                {"main": {CORE: ["1", "1.5", "x", "-2", " 3", "٣", "99999999", ""], DEVICE: ["dev"]}},
            )
        )
    )
    assert dict(allocation.cores) == {1: A}
    assert allocation.skipped_ids == 8


def test_an_index_claimed_twice_keeps_its_first_holder_and_is_counted() -> None:
    allocation = allocation_from_response(
        answer(("a-0", "ml", {"main": {CORE: ["0"]}}), ("b-0", "ml", {"main": {CORE: ["0", "1"]}}))
    )
    assert dict(allocation.cores) == {0: A, 1: B}
    assert allocation.duplicate_ids == 1


def test_whole_devices_expand_to_their_cores_and_direct_cores_win() -> None:
    allocation = NeuronAllocation(cores={1: A}, devices={0: B, 2: B})
    assert dict(allocation.core_holders(cores_per_device=4)) == {
        0: B,
        1: A,
        2: B,
        3: B,
        8: B,
        9: B,
        10: B,
        11: B,
    }
    assert dict(allocation.core_holders(cores_per_device=1)) == {0: B, 1: A, 2: B}
    with pytest.raises(ValueError, match="at least 1"):
        allocation.core_holders(cores_per_device=0)


def test_a_device_has_a_holder_only_when_one_container_holds_all_its_cores() -> None:
    allocation = NeuronAllocation(cores={0: A, 1: A, 2: A, 4: A, 5: B}, devices={3: B})
    # Device 0: cores 0, 1 both A. Device 1: core 2 A, core 3 free. Device 2: split A/B. Device 3: whole.
    assert dict(allocation.device_holders(cores_per_device=2)) == {0: A, 3: B}


def test_an_allocation_cannot_be_changed() -> None:
    cores = {0: A}
    allocation = NeuronAllocation(cores=cores)
    cores[1] = B
    assert dict(allocation.cores) == {0: A}
    with pytest.raises(TypeError):
        allocation.cores[1] = B  # type: ignore[index]
    with pytest.raises(TypeError):
        allocation_from_response(answer(("a-0", "ml", {"main": {DEVICE: ["0"]}}))).devices[1] = B  # type: ignore[index]
    with pytest.raises(AttributeError):
        allocation.cores = {}  # type: ignore[misc]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class ScriptedReader:
    """Answers each read with the next allocation, or raises the next exception."""

    socket_path = SOCKET

    def __init__(self) -> None:
        self.next: NeuronAllocation | Exception = NeuronAllocation()
        self.reads = 0

    def read(self) -> NeuronAllocation:
        self.reads += 1
        if isinstance(self.next, Exception):
            raise self.next
        return self.next


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def reader() -> ScriptedReader:
    return ScriptedReader()


def lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "otel_neuron.sources.kubelet"]


def test_reads_at_most_once_per_interval(clock: FakeClock, reader: ScriptedReader) -> None:
    refresher = AllocationRefresher(reader, interval_s=1.0, clock=clock)
    assert refresher.refresh_if_due()
    clock.now += 0.999
    assert not refresher.refresh_if_due()
    clock.now += 0.001
    assert refresher.refresh_if_due()
    assert reader.reads == 2


def test_each_read_replaces_the_allocation(clock: FakeClock, reader: ScriptedReader) -> None:
    refresher = AllocationRefresher(reader, clock=clock)
    assert refresher.allocation == NeuronAllocation()  # nothing held before the first read
    reader.next = first = NeuronAllocation(cores={0: A, 1: A})
    refresher.refresh_if_due()
    assert refresher.allocation is first
    reader.next = second = NeuronAllocation(cores={1: B})
    clock.now += 1
    refresher.refresh_if_due()
    assert refresher.allocation is second  # A left: none of its cores remain


def test_a_failing_kubelet_is_one_warning_and_its_recovery_one_line(
    clock: FakeClock, reader: ScriptedReader, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="otel_neuron.sources.kubelet")
    refresher = AllocationRefresher(reader, clock=clock)
    reader.next = NeuronAllocation(cores={0: A})
    refresher.refresh_if_due()

    failures = [
        KubeletError(f"{SOCKET}: no such socket"),
        KubeletError(f"{SOCKET}: no answer within 0.5 s"),
        KubeletError(f"{SOCKET}: no PodResources answer on the socket (Connection refused)"),
    ]
    for failure in failures:
        reader.next = failure
        clock.now += 1
        assert refresher.refresh_if_due()
        assert refresher.error == str(failure)
    assert len(lines(caplog)) == 1
    assert lines(caplog)[0].levelname == "WARNING"
    assert SOCKET in lines(caplog)[0].getMessage() and "no such socket" in lines(caplog)[0].getMessage()

    reader.next = NeuronAllocation(cores={0: B})
    clock.now += 1
    refresher.refresh_if_due()
    assert refresher.error == "" and dict(refresher.allocation.cores) == {0: B}
    assert len(lines(caplog)) == 2 and "answers again" in lines(caplog)[1].getMessage()
    assert SOCKET in lines(caplog)[1].getMessage()

    clock.now += 1
    refresher.refresh_if_due()
    assert len(lines(caplog)) == 2  # healthy reads say nothing


def test_an_unexpected_error_is_reported_like_a_kubelet_failure_without_traceback(
    clock: FakeClock, reader: ScriptedReader, caplog: pytest.LogCaptureFixture
) -> None:
    reader.next = RuntimeError("boom\nsecond line")
    refresher = AllocationRefresher(reader, clock=clock)
    assert refresher.refresh_if_due()
    assert refresher.error == f"{SOCKET}: RuntimeError: boom second line"
    (line,) = lines(caplog)
    assert line.exc_info is None and "\n" not in line.getMessage()


def test_bad_arguments_are_refused_at_once(reader: ScriptedReader) -> None:
    with pytest.raises(ValueError, match="interval"):
        AllocationRefresher(reader, interval_s=0)
    with pytest.raises(ValueError, match="stale_after"):
        AllocationRefresher(reader, stale_after_s=-1)


def test_a_failing_kubelets_last_answer_is_kept_a_few_seconds_then_nothing_is_held(
    clock: FakeClock, reader: ScriptedReader
) -> None:
    refresher = AllocationRefresher(reader, clock=clock, stale_after_s=3.0)
    reader.next = good = NeuronAllocation(cores={0: A})
    refresher.refresh_if_due()
    reader.next = KubeletError(f"{SOCKET}: no answer within 0.5 s")
    for _ in range(2):  # a slow read or a kubelet restart: the labels stay
        clock.now += 1
        refresher.refresh_if_due()
        assert refresher.allocation is good
    clock.now += 1  # three seconds without an answer: the pods may have left
    refresher.refresh_if_due()
    assert refresher.allocation == NeuronAllocation() and not refresher.allocation
    reader.next = good
    clock.now += 1
    refresher.refresh_if_due()
    assert refresher.allocation == good and refresher.error == ""


def test_a_kubelet_that_never_answered_holds_nothing(clock: FakeClock, reader: ScriptedReader) -> None:
    reader.next = KubeletError(f"{SOCKET}: no such socket")
    refresher = AllocationRefresher(reader, clock=clock)
    refresher.refresh_if_due()
    assert not refresher.allocation and refresher.error.endswith("no such socket")


def test_an_unchanged_answer_keeps_the_allocation_held(clock: FakeClock, reader: ScriptedReader) -> None:
    refresher = AllocationRefresher(reader, clock=clock)
    reader.next = first = NeuronAllocation(cores={0: A}, devices={1: B})
    refresher.refresh_if_due()
    reader.next = NeuronAllocation(cores={0: A}, devices={1: B})  # a new answer, equal to the last
    clock.now += 1
    refresher.refresh_if_due()
    assert refresher.allocation is first  # readers can tell a change by identity


def test_the_period_is_the_time_between_the_two_latest_reads(
    clock: FakeClock, reader: ScriptedReader
) -> None:
    refresher = AllocationRefresher(reader, clock=clock)
    refresher.refresh_if_due()
    assert refresher.period == 0.0
    clock.now += 1.25
    refresher.refresh_if_due()
    assert refresher.period == pytest.approx(1.25)


def test_the_pods_of_an_answer_are_found_in_its_framing_in_any_order() -> None:
    first, second = (
        answer(("a-0", "ml", {"main": {CORE: ["0"]}})),
        answer(("b-0", "ml", {"main": {CORE: ["1"]}})),
    )
    both = answer(("a-0", "ml", {"main": {CORE: ["0"]}}), ("b-0", "ml", {"main": {CORE: ["1"]}}))
    reversed_both = answer(("b-0", "ml", {"main": {CORE: ["1"]}}), ("a-0", "ml", {"main": {CORE: ["0"]}}))
    pods = encoded_pods(both.SerializeToString())
    assert pods is not None and len(pods) == 2
    assert pods == encoded_pods(reversed_both.SerializeToString())
    assert pods != encoded_pods(first.SerializeToString()) != encoded_pods(second.SerializeToString())
    # Fields of other numbers and wire types (a newer kubelet's) are stepped over.
    newer = both.SerializeToString() + b"\x10\x96\x01" + b"\x1a\x03abc" + b"\x25\x00\x00\x00\x00"
    assert encoded_pods(newer) == pods
    assert encoded_pods(b"") == ()


def test_an_answer_cut_short_has_no_pods_to_compare() -> None:
    encoded = answer(("a-0", "ml", {"main": {CORE: ["0"]}})).SerializeToString()
    assert encoded_pods(encoded[:-3]) is None  # a pod longer than what is left
    assert encoded_pods(b"\x0a\xff") is None  # a length cut short
    assert encoded_pods(b"\x0f") is None  # wire type 7 does not exist
