"""Which pod holds which NeuronCore and Neuron device, from the kubelet's PodResources API v1.

    source = PodResourcesSource("/var/lib/kubelet/pod-resources/kubelet.sock", deadline_s=0.5)
    allocation = source.read()        # one List call within the deadline; KubeletError otherwise
    allocation.cores[5]               # PodContainer(pod_name="bert-0", namespace="ml", container_name="srv")
    allocation.core_holders(cores_per_device=2)   # cores held directly or through their whole device

    refresher = AllocationRefresher(source)   # reads again at most once a second, in its own thread
    refresher.start()
    refresher.allocation              # the last good allocation, at no cost to the caller
    refresher.stop(); source.close()

How the Neuron device plugin's resources map (device IDs are decimal strings):

    aws.amazon.com/neuroncore      a global NeuronCore index (device 0's cores first)
    aws.amazon.com/neuron          a Neuron device index; the container holds all of its cores
    aws.amazon.com/neurondevice    the same, under the device plugin's older name

Error policy: an ID that is not a whole number from 0 to MAX_INDEX is skipped and counted
(`skipped_ids`); an index a second container also claims keeps its first holder in the kubelet's
order and is counted (`duplicate_ids`); other resources are ignored. Every failure to get an answer
(socket missing, refusing, hung, garbage on it, another API) is one `KubeletError` whose one-line
message names the socket. The refresher turns those into one warning line when the kubelet stops
answering and one line when it answers again, never a traceback, and keeps the last good allocation
meanwhile. Each allocation replaces the previous one: nothing accumulates across reads.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol

import grpc

from otel_neuron.kubernetes import podresources_pb2, podresources_pb2_grpc

DEFAULT_SOCKET = "/var/lib/kubelet/pod-resources/kubelet.sock"
NEURONCORE_RESOURCE = "aws.amazon.com/neuroncore"
DEVICE_RESOURCES = ("aws.amazon.com/neuron", "aws.amazon.com/neurondevice")
# Far above any instance's device or core count (a Trn2 has 128 NeuronCores); a larger "index" is
# garbage, and would make core_holders() build a map that large.
MAX_INDEX = 4095

_logger = logging.getLogger(__name__)
_CHANNEL_OPTIONS = [
    ("grpc.enable_http_proxy", 0),  # the kubelet is a local socket; never route it through a proxy
    # A kubelet that restarts is back within seconds: retry the socket quickly, at most 1 s apart, so
    # pod labels return on the next reads rather than after gRPC's default 2 min backoff.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.max_receive_message_length", 16 << 20),
    # A channel of its own: a fresh source does not inherit another one's failed connection.
    ("grpc.use_local_subchannel_pool", 1),
]


@dataclass(frozen=True)
class PodContainer:
    """The container a NeuronCore or Neuron device is allocated to."""

    pod_name: str
    namespace: str
    container_name: str


def _empty() -> Mapping[int, PodContainer]:
    return MappingProxyType({})


@dataclass(frozen=True)
class NeuronAllocation:
    """One List answer: NeuronCore and Neuron device indexes to the container holding each."""

    cores: Mapping[int, PodContainer] = field(default_factory=_empty)  # from aws.amazon.com/neuroncore
    devices: Mapping[int, PodContainer] = field(default_factory=_empty)  # from aws.amazon.com/neuron(device)
    skipped_ids: int = 0  # device IDs of a Neuron resource that were not indexes
    duplicate_ids: int = 0  # indexes claimed again by another container (the first holder is kept)

    def __post_init__(self) -> None:
        # Read-only views of private copies: an allocation handed to other threads never changes.
        for name in ("cores", "devices"):
            value = getattr(self, name)
            if not isinstance(value, MappingProxyType):
                object.__setattr__(self, name, MappingProxyType(dict(value)))

    def core_holders(self, cores_per_device: int) -> Mapping[int, PodContainer]:
        """Every NeuronCore a container holds: its own cores, and device d's cores
        d * cores_per_device + i (0 <= i < cores_per_device) for each whole device. A core held both
        ways keeps its direct holder."""
        _check_cores_per_device(cores_per_device)
        holders: dict[int, PodContainer] = {}
        for device, holder in self.devices.items():
            first = device * cores_per_device
            for core in range(first, first + cores_per_device):
                holders[core] = holder
        holders.update(self.cores)
        return MappingProxyType(holders)

    def device_holders(self, cores_per_device: int) -> Mapping[int, PodContainer]:
        """Every Neuron device one container holds: allocated whole, or all of its cores allocated
        to that same container. A device whose cores are split, or partly free, has no holder."""
        cores = self.core_holders(cores_per_device)
        holders = dict(self.devices)
        for device in {core // cores_per_device for core in self.cores}:
            if device in holders:
                continue
            first = device * cores_per_device
            owners = {cores.get(core) for core in range(first, first + cores_per_device)}
            owner = owners.pop() if len(owners) == 1 else None
            if owner is not None:
                holders[device] = owner
        return MappingProxyType(holders)


def _check_cores_per_device(cores_per_device: int) -> None:
    if cores_per_device < 1:
        raise ValueError(f"cores per device must be at least 1, not {cores_per_device}")


def _index(device_id: str) -> int | None:
    if not (device_id.isascii() and device_id.isdigit()):
        return None
    index = int(device_id)
    return index if index <= MAX_INDEX else None


def allocation_from_response(response: podresources_pb2.ListPodResourcesResponse) -> NeuronAllocation:
    """The Neuron part of a List answer (see the module's error policy)."""
    cores: dict[int, PodContainer] = {}
    devices: dict[int, PodContainer] = {}
    skipped = duplicates = 0
    for pod in response.pod_resources:
        for container in pod.containers:
            holder: PodContainer | None = None
            for entry in container.devices:
                if entry.resource_name == NEURONCORE_RESOURCE:
                    target = cores
                elif entry.resource_name in DEVICE_RESOURCES:
                    target = devices
                else:
                    continue
                holder = holder or PodContainer(pod.name, pod.namespace, container.name)
                for device_id in entry.device_ids:
                    index = _index(device_id)
                    if index is None:
                        skipped += 1
                    elif index in target:
                        duplicates += 1
                    else:
                        target[index] = holder
    return NeuronAllocation(MappingProxyType(cores), MappingProxyType(devices), skipped, duplicates)


class KubeletError(Exception):
    """The kubelet's PodResources API gave no usable answer; the one-line message names the socket."""


class PodResourcesSource:
    """Reads the Neuron allocation from the kubelet's PodResources socket, each read within `deadline_s`."""

    def __init__(self, socket_path: str = DEFAULT_SOCKET, deadline_s: float = 0.5) -> None:
        if not socket_path:
            raise ValueError("the kubelet's PodResources socket path is empty")
        if not deadline_s > 0:
            raise ValueError(f"deadline must be > 0 seconds, not {deadline_s}")
        self.socket_path = socket_path
        self.deadline_s = deadline_s
        self._channel: grpc.Channel | None = None
        self._list: Callable[..., podresources_pb2.ListPodResourcesResponse] | None = None

    def read(self) -> NeuronAllocation:
        """One List call; KubeletError when it fails or exceeds the deadline."""
        if self._list is None:
            self._channel = grpc.insecure_channel(f"unix:{self.socket_path}", options=_CHANNEL_OPTIONS)
            self._list = podresources_pb2_grpc.PodResourcesListerStub(self._channel).List
        try:
            response = self._list(podresources_pb2.ListPodResourcesRequest(), timeout=self.deadline_s)
        except grpc.RpcError as error:
            raise KubeletError(f"{self.socket_path}: {self._reason(error)}") from None
        return allocation_from_response(response)

    def _reason(self, error: grpc.RpcError) -> str:
        code = error.code() if isinstance(error, grpc.Call) else None
        details = (error.details() if isinstance(error, grpc.Call) else "") or ""
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return f"no answer within {self.deadline_s:g} s"
        if code == grpc.StatusCode.UNIMPLEMENTED:
            return "the kubelet does not serve PodResources v1 List (Kubernetes 1.20 or later does)"
        if code == grpc.StatusCode.UNAVAILABLE and not os.path.exists(self.socket_path):
            return "no such socket (is /var/lib/kubelet/pod-resources mounted, and the kubelet running?)"
        if code == grpc.StatusCode.UNAVAILABLE:
            return f"no PodResources answer on the socket ({self._connect_detail(details) or 'unavailable'})"
        name = code.name if code is not None else type(error).__name__
        return f"{name}: {_one_line(details)}" if details else name

    def _connect_detail(self, details: str) -> str:
        """gRPC's "failed to connect to all addresses; last error: ...: unix:PATH: connect failed: ...
        error: Connection refused" without the parts that repeat the socket or say nothing."""
        text = _one_line(details)
        text = text.rpartition(f"unix:{self.socket_path}: ")[2]
        if text.startswith("connect failed:"):
            text = text.rpartition("error: ")[2]
        return text

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
        self._channel = self._list = None


def _one_line(text: str) -> str:
    return " ".join(text.split())


class AllocationReader(Protocol):
    socket_path: str

    def read(self) -> NeuronAllocation: ...


class AllocationRefresher:
    """Keeps the latest Neuron allocation, read at most once per `interval_s` in a background thread.

    Callers read `allocation` (the last good one; empty until the first success) and `error` ("" once
    a read succeeds) without ever waiting for the kubelet. `refresh_if_due()` is the thread's whole
    step, public so tests drive it with an injected clock.
    """

    def __init__(
        self,
        source: AllocationReader,
        interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        logger: logging.Logger = _logger,
    ) -> None:
        if not interval_s > 0:
            raise ValueError(f"interval must be > 0 seconds, not {interval_s}")
        self._source = source
        self._interval_s = interval_s
        self._clock = clock
        self._logger = logger
        self._allocation = NeuronAllocation()
        self._error = ""
        self._last_read: float | None = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def allocation(self) -> NeuronAllocation:
        return self._allocation

    @property
    def error(self) -> str:
        """Why the latest read failed, naming the socket; "" when it succeeded (or none was made)."""
        return self._error

    def refresh_if_due(self) -> bool:
        """Read once if `interval_s` has passed since the previous read began; True if it read."""
        now = self._clock()
        if self._last_read is not None and now - self._last_read < self._interval_s:
            return False
        self._last_read = now
        try:
            allocation = self._source.read()
        except KubeletError as error:
            self._failed(str(error))
        except Exception as error:  # a reader's bug must not end the thread either
            self._failed(f"{self._source.socket_path}: {type(error).__name__}: {_one_line(str(error))}")
        else:
            if self._error:
                # At the failure's level, so whoever saw the warning also sees it end.
                self._logger.warning(
                    "kubelet PodResources at %s answers again; pod labels follow it", self._source.socket_path
                )
            self._allocation = allocation
            self._error = ""
        return True

    def _failed(self, message: str) -> None:
        if not self._error:
            self._logger.warning(
                "kubelet PodResources: %s; pod labels stay as last read until it answers", message
            )
        self._error = message

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="kubelet-pod-resources", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopping.is_set():
            self.refresh_if_due()
            since_read = self._clock() - (self._last_read if self._last_read is not None else 0.0)
            self._stopping.wait(min(self._interval_s, max(0.0, self._interval_s - since_read)))

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the thread (a read in progress ends within its deadline); the source stays open."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None
