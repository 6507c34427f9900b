"""A fake kubelet: PodResourcesLister.List (PodResources API v1) on a unix socket, over real gRPC.

    kubelet = FakeKubelet(path, [pod("bert-0", "ml", server={"aws.amazon.com/neuroncore": ["0", "1"]})])
    kubelet.set_pods([...])   # the next List answers this
    kubelet.hang()            # List answers nothing until resume() or stop()
    kubelet.set_answer(b"..") # List answers these bytes (a well-formed gRPC answer, garbage inside)
    kubelet.stop()            # and the socket file is gone

`GarbageSocket(path)` is the other failure: a plain socket that writes junk to whoever connects.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterable, Mapping
from concurrent import futures

import grpc

from otel_neuron.kubernetes import podresources_pb2

# A hung List gives up after this long even if nobody resumes it, so a test can never hang on it.
_LONGEST_HANG_S = 30.0


def pod(
    name: str, namespace: str, **containers: Mapping[str, Iterable[str]]
) -> podresources_pb2.PodResources:
    """A pod whose containers (by keyword) hold device IDs by resource name."""
    return podresources_pb2.PodResources(
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


def _serialize(answer: podresources_pb2.ListPodResourcesResponse | bytes) -> bytes:
    return answer if isinstance(answer, bytes) else answer.SerializeToString()


class FakeKubelet:
    def __init__(self, socket_path: str, pods: Iterable[podresources_pb2.PodResources] = ()) -> None:
        self.socket_path = socket_path
        self._lock = threading.Lock()
        self._response: podresources_pb2.ListPodResourcesResponse | bytes = (
            podresources_pb2.ListPodResourcesResponse(pod_resources=list(pods))
        )
        self._released = threading.Event()
        self._released.set()
        self.calls = 0  # List calls received
        self.hanging = 0  # List calls waiting in hang() right now
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        # The kubelet's service and method names; the answer serialized here, so it can be any bytes.
        lister = grpc.unary_unary_rpc_method_handler(
            lambda request, context: self._answer(),
            request_deserializer=podresources_pb2.ListPodResourcesRequest.FromString,
            response_serializer=_serialize,
        )
        self._server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("v1.PodResourcesLister", {"List": lister}),)
        )
        if not self._server.add_insecure_port(f"unix:{socket_path}"):
            raise RuntimeError(f"cannot listen on {socket_path}")
        self._server.start()

    def set_pods(self, pods: Iterable[podresources_pb2.PodResources]) -> None:
        with self._lock:
            self._response = podresources_pb2.ListPodResourcesResponse(pod_resources=list(pods))

    def set_answer(self, answer: bytes) -> None:
        with self._lock:
            self._response = answer

    def hang(self) -> None:
        self._released.clear()

    def resume(self) -> None:
        self._released.set()

    def _answer(self) -> podresources_pb2.ListPodResourcesResponse | bytes:
        with self._lock:
            self.calls += 1
            response = self._response
        if not self._released.is_set():
            with self._lock:
                self.hanging += 1
            self._released.wait(_LONGEST_HANG_S)
            with self._lock:
                self.hanging -= 1
        return response

    def stop(self) -> None:
        self._released.set()
        self._server.stop(grace=None).wait(5)
        if os.path.exists(self.socket_path):
            os.unlink(self.socket_path)

    def __enter__(self) -> FakeKubelet:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


class GarbageSocket:
    """Accepts connections on a unix socket and answers each with bytes that are not HTTP/2."""

    JUNK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nthis is not gRPC\n" + bytes(range(256))

    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path
        self.connections = 0
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(socket_path)
        self._listener.listen(8)
        self._listener.settimeout(0.1)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="garbage-socket", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            with connection:
                try:
                    connection.sendall(self.JUNK)
                except OSError:
                    pass

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(5)
        self._listener.close()
        if os.path.exists(self.socket_path):
            os.unlink(self.socket_path)

    def __enter__(self) -> GarbageSocket:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()
