"""The kubelet source against a fake kubelet serving PodResources v1 List over a real unix socket."""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fake_kubelet import FakeKubelet, GarbageSocket, pod

from otel_neuron.sources.kubelet import (
    AllocationRefresher,
    KubeletError,
    NeuronAllocation,
    PodContainer,
    PodResourcesSource,
)

CORE = "aws.amazon.com/neuroncore"
DEVICE = "aws.amazon.com/neuron"
OLD_DEVICE = "aws.amazon.com/neurondevice"
BERT = PodContainer("bert-0", "ml", "server")
LLAMA = PodContainer("llama-7b", "ml", "vllm")
TRAIN = PodContainer("train-3", "research", "worker")
WAIT_S = 15.0  # how long a test waits for something that normally takes about a second


@pytest.fixture
def socket_path(tmp_path: Path) -> Iterator[str]:
    """A kubelet.sock path short enough for a unix socket (tmp_path may be too long)."""
    if len(str(tmp_path)) < 80:
        yield str(tmp_path / "kubelet.sock")
        return
    with tempfile.TemporaryDirectory(prefix="kl-", dir="/tmp") as short:
        yield str(Path(short) / "kubelet.sock")


@pytest.fixture
def source(socket_path: str) -> Iterator[PodResourcesSource]:
    reader = PodResourcesSource(socket_path, deadline_s=0.5)
    yield reader
    reader.close()


class CountingReader:
    """The real source, counting the reads the refresher makes (and how many failed)."""

    def __init__(self, source: PodResourcesSource) -> None:
        self.socket_path = source.socket_path
        self._source = source
        self.reads = 0
        self.failures = 0

    def read(self) -> NeuronAllocation:
        self.reads += 1
        try:
            return self._source.read()
        except KubeletError:
            self.failures += 1
            raise


@pytest.fixture
def start_refresher(
    source: PodResourcesSource,
) -> Iterator[Callable[[], tuple[AllocationRefresher, CountingReader]]]:
    """Starts the refresher's thread when called (once the fake kubelet serves); stops it after the test."""
    reader = CountingReader(source)
    refreshing = AllocationRefresher(reader, interval_s=1.0)

    def start() -> tuple[AllocationRefresher, CountingReader]:
        refreshing.start()
        return refreshing, reader

    yield start
    refreshing.stop()


def wait_until(condition: Callable[[], bool], what: str) -> None:
    end = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < end, f"still waiting for {what} after {WAIT_S:g} s"
        time.sleep(0.02)


def kubelet_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "otel_neuron.sources.kubelet"]


def test_core_and_device_allocations_are_read_from_list(socket_path: str, source: PodResourcesSource) -> None:
    pods = [
        pod("bert-0", "ml", server={CORE: ["0", "1"]}, sidecar={"cpu": ["3"]}),
        pod("llama-7b", "ml", vllm={DEVICE: ["1"]}),
        pod("train-3", "research", worker={OLD_DEVICE: ["3"]}),
        pod("web", "default", nginx={}),
    ]
    with FakeKubelet(socket_path, pods):
        allocation = source.read()
    assert dict(allocation.cores) == {0: BERT, 1: BERT}
    assert dict(allocation.devices) == {1: LLAMA, 3: TRAIN}
    assert allocation.skipped_ids == 0


def test_a_whole_device_allocation_covers_its_cores(socket_path: str, source: PodResourcesSource) -> None:
    pods = [pod("bert-0", "ml", server={CORE: ["0"]}), pod("llama-7b", "ml", vllm={DEVICE: ["1"]})]
    with FakeKubelet(socket_path, pods):
        allocation = source.read()
    # Two NeuronCores per device (Inf2, Trn1): device 1 is cores 2 and 3; core 1 is free.
    assert dict(allocation.core_holders(cores_per_device=2)) == {0: BERT, 2: LLAMA, 3: LLAMA}
    # Eight per device (Trn2): device 1 is cores 8 to 15.
    assert dict(allocation.core_holders(cores_per_device=8)) == {0: BERT} | {c: LLAMA for c in range(8, 16)}
    assert dict(allocation.device_holders(cores_per_device=2)) == {1: LLAMA}


def test_ids_that_are_not_indexes_are_skipped_and_counted(
    socket_path: str, source: PodResourcesSource
) -> None:
    with FakeKubelet(socket_path, [pod("bert-0", "ml", server={CORE: ["2", "neuron_core3", "-1", ""]})]):
        allocation = source.read()
    assert dict(allocation.cores) == {2: BERT}
    assert allocation.skipped_ids == 3


def test_churn_new_allocation_follows_and_a_pod_that_left_is_gone(
    socket_path: str, start_refresher: Callable[[], tuple[AllocationRefresher, CountingReader]]
) -> None:
    with FakeKubelet(socket_path, [pod("bert-0", "ml", server={CORE: ["0", "1"]})]) as kubelet:
        refreshing, reader = start_refresher()
        wait_until(lambda: dict(refreshing.allocation.cores) == {0: BERT, 1: BERT}, "the first allocation")
        started, reads_before = time.monotonic(), reader.reads

        kubelet.set_pods(
            [pod("bert-0", "ml", server={CORE: ["0", "1"]}), pod("llama-7b", "ml", vllm={DEVICE: ["1"]})]
        )
        wait_until(lambda: dict(refreshing.allocation.devices) == {1: LLAMA}, "the new pod")
        assert dict(refreshing.allocation.cores) == {0: BERT, 1: BERT}

        kubelet.set_pods([pod("llama-7b", "ml", vllm={DEVICE: ["1"]})])
        wait_until(lambda: not refreshing.allocation.cores, "bert-0 to leave")
        assert dict(refreshing.allocation.core_holders(2)) == {2: LLAMA, 3: LLAMA}
        # Never more than one read a second, however long the test took.
        assert reader.reads - reads_before <= time.monotonic() - started + 2
        assert reader.failures == 0 and refreshing.error == ""


def test_socket_gone_then_back_one_warning_one_recovery(
    socket_path: str,
    start_refresher: Callable[[], tuple[AllocationRefresher, CountingReader]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="otel_neuron.sources.kubelet")
    kubelet = FakeKubelet(socket_path, [pod("bert-0", "ml", server={CORE: ["0"]})])
    refreshing, reader = start_refresher()
    wait_until(lambda: dict(refreshing.allocation.cores) == {0: BERT}, "the first allocation")
    kubelet.stop()

    wait_until(lambda: reader.failures >= 1, "a failed read")
    assert socket_path in refreshing.error
    # A few seconds after the last answer, the pods it named may have left: nothing is held.
    wait_until(lambda: not refreshing.allocation, "the last answer to be let go")
    assert reader.failures >= 3
    lines = kubelet_lines(caplog)
    assert [r.levelname for r in lines] == ["WARNING"]
    assert socket_path in lines[0].getMessage()
    assert "no such socket" in lines[0].getMessage()

    with FakeKubelet(socket_path, [pod("llama-7b", "ml", vllm={DEVICE: ["0"]})]):
        wait_until(lambda: dict(refreshing.allocation.devices) == {0: LLAMA}, "the kubelet to answer again")
        assert refreshing.error == ""
        assert not refreshing.allocation.cores
    lines = kubelet_lines(caplog)
    assert len(lines) == 2
    assert socket_path in lines[1].getMessage() and "answers again" in lines[1].getMessage()
    assert all(r.exc_info is None and "Traceback" not in r.getMessage() for r in lines)


def test_a_hung_kubelet_costs_one_deadline_and_never_blocks_the_reader(
    socket_path: str, source: PodResourcesSource
) -> None:
    with FakeKubelet(socket_path, [pod("bert-0", "ml", server={CORE: ["0"]})]) as kubelet:
        refreshing = AllocationRefresher(source)
        assert refreshing.refresh_if_due()
        kubelet.hang()
        outcome: list[str] = []

        def read_once() -> None:
            try:
                source.read()
                outcome.append("answered")
            except KubeletError as error:
                outcome.append(str(error))

        reading = threading.Thread(target=read_once)
        reading.start()
        wait_until(lambda: kubelet.hanging == 1, "the kubelet to hold the call")
        # While the kubelet holds the call, the allocation is still there for whoever asks.
        assert dict(refreshing.allocation.cores) == {0: BERT}
        reading.join(WAIT_S)
        assert kubelet.hanging == 1, "read() should give up while the kubelet still hangs"
        assert outcome == [f"{socket_path}: no answer within 0.5 s"]


def test_garbage_on_the_socket_is_one_clear_error(socket_path: str, source: PodResourcesSource) -> None:
    with GarbageSocket(socket_path) as garbage:
        with pytest.raises(KubeletError) as caught:
            source.read()
    assert garbage.connections >= 1
    message = str(caught.value)
    assert message.startswith(f"{socket_path}: ")
    assert "\n" not in message


def test_a_missing_socket_is_named(socket_path: str, source: PodResourcesSource) -> None:
    with pytest.raises(KubeletError, match=r"no such socket") as caught:
        source.read()
    assert str(caught.value).startswith(socket_path)


def test_the_same_pods_in_another_order_are_the_same_allocation(
    socket_path: str, source: PodResourcesSource
) -> None:
    bert, llama = pod("bert-0", "ml", server={CORE: ["0"]}), pod("llama-7b", "ml", vllm={DEVICE: ["1"]})
    with FakeKubelet(socket_path, [bert, llama]) as kubelet:
        first = source.read()
        kubelet.set_pods([llama, bert])  # the kubelet lists pods in no fixed order
        assert source.read() is first
        kubelet.set_pods([llama])
        changed = source.read()
    assert dict(changed.cores) == {} and dict(changed.devices) == {1: LLAMA}


def test_an_answer_that_is_not_a_list_answer_is_one_clear_error(
    socket_path: str, source: PodResourcesSource
) -> None:
    with FakeKubelet(socket_path, [pod("bert-0", "ml", server={CORE: ["0"]})]) as kubelet:
        kubelet.set_answer(b"\x0a\xff\xff\xff\xff\x0f garbage")  # a pod said to be 4 GiB long
        with pytest.raises(KubeletError) as caught:
            source.read()
    assert str(caught.value) == f"{socket_path}: the answer is not a PodResources List answer"
