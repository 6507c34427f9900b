"""Which pod holds which NeuronCore and Neuron device, from the kubelet's PodResources API v1.

    source = PodResourcesSource("/var/lib/kubelet/pod-resources/kubelet.sock", deadline_s=0.5)
    allocation = source.read()        # one List call within the deadline; KubeletError otherwise
    allocation.cores[5]               # PodContainer(pod_name="bert-0", namespace="ml", container_name="srv")
    allocation.core_holders(cores_per_device=2)   # cores held directly or through their whole device

    refresher = AllocationRefresher(source)   # reads again at most once a second, in its own thread
    refresher.start()
    refresher.allocation              # the last good allocation, at no cost to the caller
    refresher.close()                 # stops the thread and closes the source

How the Neuron device plugin's resources map (device IDs are decimal strings):

    aws.amazon.com/neuroncore      a global NeuronCore index (device 0's cores first)
    aws.amazon.com/neuron          a Neuron device index; the container holds all of its cores
    aws.amazon.com/neurondevice    the same, under the device plugin's older name

Error policy: an ID that is not a whole number from 0 to MAX_INDEX is skipped and counted
(`skipped_ids`); an index a second container also claims keeps its first holder in the kubelet's
order and is counted (`duplicate_ids`); other resources are ignored. Every failure to get an answer
(socket missing, refusing, hung, garbage on it, another API) is one `KubeletError` whose one-line
message names the socket. The refresher turns those into one warning line when the kubelet stops
answering and one line when it answers again, never a traceback; it keeps the last good allocation
for `stale_after_s` (3 s) after that answer, and holds nothing after that until the kubelet answers
again. Each allocation replaces the previous one: nothing accumulates across reads.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
import time
from collections.abc import Callable
from types import MappingProxyType
from typing import Protocol

import grpc
from google.protobuf.message import DecodeError

from otel_neuron.kubernetes import KUBELET_SOCKET, podresources_pb2
from otel_neuron.kubernetes.allocation import MAX_INDEX as MAX_INDEX
from otel_neuron.kubernetes.allocation import NeuronAllocation as NeuronAllocation
from otel_neuron.kubernetes.allocation import PodContainer as PodContainer

DEFAULT_SOCKET = KUBELET_SOCKET
NEURONCORE_RESOURCE = "aws.amazon.com/neuroncore"
DEVICE_RESOURCES = ("aws.amazon.com/neuron", "aws.amazon.com/neurondevice")

_logger = logging.getLogger(__name__)
_LIST_METHOD = "/v1.PodResourcesLister/List"
_LIST_REQUEST = podresources_pb2.ListPodResourcesRequest()
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
    """Reads the Neuron allocation from the kubelet's PodResources socket, each read within `deadline_s`.

    The answer is taken as bytes and decoded only when its pods are not those of the previous one
    (in any order: the kubelet lists pods in no fixed order): an unchanged answer, nearly every read,
    costs a scan of its framing rather than a walk through every pod's protobuf objects.
    """

    def __init__(self, socket_path: str = DEFAULT_SOCKET, deadline_s: float = 0.5) -> None:
        if not socket_path:
            raise ValueError("the kubelet's PodResources socket path is empty")
        if not deadline_s > 0:
            raise ValueError(f"deadline must be > 0 seconds, not {deadline_s}")
        self.socket_path = socket_path
        self.deadline_s = deadline_s
        self._channel: grpc.Channel | None = None
        self._list: Callable[..., bytes] | None = None
        self._last_pods: tuple[bytes, ...] | None = None  # the previous answer's encoded pods, sorted
        self._last = NeuronAllocation()

    def read(self) -> NeuronAllocation:
        """One List call; KubeletError when it fails, exceeds the deadline or is not a List answer."""
        if self._list is None:
            self._channel = grpc.insecure_channel(f"unix:{self.socket_path}", options=_CHANNEL_OPTIONS)
            self._list = self._channel.unary_unary(
                _LIST_METHOD,
                request_serializer=podresources_pb2.ListPodResourcesRequest.SerializeToString,
                response_deserializer=None,  # the bytes: see the class docstring
            )
        try:
            answer = self._list(_LIST_REQUEST, timeout=self.deadline_s)
        except grpc.RpcError as error:
            raise KubeletError(f"{self.socket_path}: {self._reason(error)}") from None
        return self._allocation_of(answer)

    def _allocation_of(self, answer: bytes) -> NeuronAllocation:
        pods = encoded_pods(answer)
        if pods is not None and pods == self._last_pods:
            return self._last
        try:
            response = podresources_pb2.ListPodResourcesResponse.FromString(answer)
        except DecodeError:
            raise KubeletError(f"{self.socket_path}: the answer is not a PodResources List answer") from None
        allocation = allocation_from_response(response)
        self._last_pods, self._last = pods, allocation
        return allocation

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


def encoded_pods(answer: bytes) -> tuple[bytes, ...] | None:
    """The encoded `pod_resources` entries (field 1) of a List answer, sorted; None when `answer` is
    not a well-formed sequence of protobuf fields (it is then decoded, which says what is wrong)."""
    pods: list[bytes] = []
    position, end = 0, len(answer)
    try:
        while position < end:
            key, position = _varint(answer, position)
            wire_type = key & 7
            if wire_type == 2:  # length-delimited: a pod, or a field this client does not read
                length, position = _varint(answer, position)
                if key >> 3 == 1:
                    pods.append(answer[position : position + length])
                position += length
            elif wire_type == 0:
                _, position = _varint(answer, position)
            elif wire_type in (1, 5):
                position += 8 if wire_type == 1 else 4
            else:
                return None
    except IndexError:  # a varint cut short
        return None
    return tuple(sorted(pods)) if position == end else None


def _varint(data: bytes, position: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, position
        shift += 7


def _one_line(text: str) -> str:
    return " ".join(text.split())


# sockaddr_un's sun_path holds 108 bytes, the last a NUL.
_LONGEST_SOCKET_PATH = 107


def socket_path_of(text: str) -> str:
    """The socket path a user gave (`PATH`, `unix:PATH` or `unix://PATH`); ValueError naming what is
    wrong. A path where nothing is yet is fine (the kubelet may start later); one that is not a
    socket is not."""
    path = text.removeprefix("unix://") if text.startswith("unix://") else text.removeprefix("unix:")
    if not path.strip():
        raise ValueError("the kubelet's socket path is empty")
    if "\0" in path:
        raise ValueError(f"{path!r} holds a NUL character")
    if len(os.fsencode(path)) > _LONGEST_SOCKET_PATH:
        raise ValueError(f"{path} is longer than a unix socket path can be ({_LONGEST_SOCKET_PATH} bytes)")
    try:
        mode = os.stat(path).st_mode
    except OSError:  # missing, or not ours to look at: the reads will say so, as for a kubelet gone
        return path
    if not stat.S_ISSOCK(mode):
        what = "a directory" if stat.S_ISDIR(mode) else "not a socket"
        raise ValueError(f"{path} is {what}; the kubelet's socket is {DEFAULT_SOCKET}")
    return path


class AllocationReader(Protocol):
    socket_path: str

    def read(self) -> NeuronAllocation: ...


class AllocationRefresher:
    """Keeps the latest Neuron allocation, read at most once per `interval_s` in a background thread.

    Callers read `allocation`, `error` and `period` without ever waiting for the kubelet.
    `allocation` is the last good answer (empty until the first); an answer equal to the one held
    leaves the held object in place, so a caller can tell a change by identity. While the kubelet
    fails, the last good answer is kept for `stale_after_s` after it arrived (a slow read or a
    kubelet restart does not make every series lose its pod labels and get them back), then the
    allocation is empty: metrics go on without pod labels rather than name pods that may have left.
    `refresh_if_due()` is the thread's whole step, public so tests drive it with an injected clock.
    """

    def __init__(
        self,
        source: AllocationReader,
        interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        logger: logging.Logger = _logger,
        stale_after_s: float = 3.0,
    ) -> None:
        if not interval_s > 0:
            raise ValueError(f"interval must be > 0 seconds, not {interval_s}")
        if not stale_after_s >= 0:
            raise ValueError(f"stale_after must be >= 0 seconds, not {stale_after_s}")
        self._source = source
        self._interval_s = interval_s
        self._stale_after_s = stale_after_s
        self._clock = clock
        self._logger = logger
        self._allocation = NeuronAllocation()
        self._error = ""
        self._period = 0.0
        self._last_read: float | None = None
        self._last_answer: float | None = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def socket_path(self) -> str:
        return self._source.socket_path

    @property
    def allocation(self) -> NeuronAllocation:
        return self._allocation

    @property
    def error(self) -> str:
        """Why the latest read failed, naming the socket; "" when it succeeded (or none was made)."""
        return self._error

    @property
    def period(self) -> float:
        """Seconds between the starts of the two latest reads (0.0 until there were two)."""
        return self._period

    def refresh_if_due(self) -> bool:
        """Read once if `interval_s` has passed since the previous read began; True if it read."""
        now = self._clock()
        if self._last_read is not None and now - self._last_read < self._interval_s:
            return False
        if self._last_read is not None:
            self._period = now - self._last_read
        self._last_read = now
        try:
            allocation = self._source.read()
        except KubeletError as error:
            self._failed(str(error), now)
        except Exception as error:  # a reader's bug must not end the thread either
            self._failed(f"{self._source.socket_path}: {type(error).__name__}: {_one_line(str(error))}", now)
        else:
            if self._error:
                # At the failure's level, so whoever saw the warning also sees it end.
                self._logger.warning(
                    "kubelet PodResources at %s answers again; pod labels follow it", self._source.socket_path
                )
            if allocation != self._allocation:
                self._allocation = allocation
            self._last_answer = now
            self._error = ""
        return True

    def _failed(self, message: str, now: float) -> None:
        if not self._error:
            self._logger.warning(
                "kubelet PodResources: %s; metrics go on without pod labels from %g s after its last "
                "answer until it answers again",
                message,
                self._stale_after_s,
            )
        self._error = message
        if self._last_answer is None or now - self._last_answer >= self._stale_after_s:
            self._allocation = _NOTHING_HELD

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

    def close(self) -> None:
        """Stop the thread and release the source's connection."""
        self.stop()
        close = getattr(self._source, "close", None)
        if callable(close):
            close()


_NOTHING_HELD = NeuronAllocation()
