"""Serve a recorder's snapshots over gRPC: the runtime endpoint a monitor polls.

    handle = serve_runtime_endpoint(recorder, "unix:/run/neuron.sock")
    ...
    handle.stop()

Addresses: ``unix:/path``, ``unix:///abs/path`` (unix domain socket) or ``host:port`` (TCP).
A unix socket appears at its path already listening with mode 0600 (``socket_mode``), whatever
the umask (see `socket_file`); a stale socket file left by a crashed runtime is removed first, while
a socket some live process still listens on is an error; `stop()` removes the file. The server
keeps no state per client.

A runtime at a unix address also serves the same snapshots on its snapshot socket
(``/run/neuron.sock.snapshot``, see `snapshot_socket`), which a monitor on the same host prefers.
"""

from __future__ import annotations

import logging
import os
import socket
import stat
from concurrent import futures
from dataclasses import dataclass
from typing import Any, Protocol

import grpc

from otel_neuron.runtime import runtime_pb2, runtime_pb2_grpc
from otel_neuron.runtime.snapshot_socket import (
    SnapshotSocketServer,
    SnapshotSource,
    snapshot_socket_path,
    snapshot_taker,
)
from otel_neuron.runtime.socket_file import socket_file

_logger = logging.getLogger(__name__)


class GroundTruthSource(Protocol):
    def ground_truth(self, mark: bool = False) -> runtime_pb2.GroundTruth: ...

    def pause(self) -> None: ...

    def resume(self) -> None: ...


def unix_socket_path(address: str) -> str | None:
    """The socket path of a ``unix:`` address, or None for other addresses."""
    if address.startswith("unix://"):
        return address[len("unix://") :]
    if address.startswith("unix:"):
        return address[len("unix:") :]
    return None


class _RuntimeMetrics(runtime_pb2_grpc.RuntimeMetricsServicer):
    def __init__(self, source: SnapshotSource) -> None:
        self._take_snapshot = snapshot_taker(source)
        self.snapshot_socket = ""  # advertised in every answer once it listens

    def GetSnapshot(self, request: runtime_pb2.SnapshotRequest, context: Any) -> runtime_pb2.Snapshot:  # noqa: N802
        snapshot = self._take_snapshot(request.since_epoch)
        if self.snapshot_socket:
            snapshot.snapshot_socket = self.snapshot_socket
        return snapshot


class _SimulatorControl(runtime_pb2_grpc.SimulatorControlServicer):
    def __init__(self, source: GroundTruthSource) -> None:
        self._source = source

    def GetGroundTruth(
        self, request: runtime_pb2.GroundTruthRequest, context: Any
    ) -> runtime_pb2.GroundTruth:  # noqa: N802
        return self._source.ground_truth(mark=request.mark)

    def Pause(self, request: runtime_pb2.Empty, context: Any) -> runtime_pb2.Empty:  # noqa: N802
        self._source.pause()
        return runtime_pb2.Empty()

    def Resume(self, request: runtime_pb2.Empty, context: Any) -> runtime_pb2.Empty:  # noqa: N802
        self._source.resume()
        return runtime_pb2.Empty()


@dataclass
class RuntimeEndpointServer:
    """A running runtime endpoint; `stop()` ends it and removes its socket file."""

    address: str
    port: int
    _server: Any
    _socket_path: str | None
    snapshot_socket: SnapshotSocketServer | None = None

    def stop(self, grace: float | None = 0.5) -> None:
        if self.snapshot_socket is not None:
            self.snapshot_socket.stop()
            self.snapshot_socket = None
        self._server.stop(grace).wait()
        path = self._socket_path
        if path is not None:
            try:
                if stat.S_ISSOCK(os.lstat(path).st_mode):
                    os.unlink(path)
            except OSError:
                pass
            self._socket_path = None

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the server stops (or `timeout` passes)."""
        return bool(self._server.wait_for_termination(timeout))


def serve_runtime_endpoint(
    recorder: SnapshotSource,
    address: str,
    socket_mode: int = 0o600,
    simulator: GroundTruthSource | None = None,
    max_workers: int = 4,
    snapshot_socket: bool = True,
) -> RuntimeEndpointServer:
    """Start serving `recorder` at `address`; raises ValueError/OSError when that is impossible.

    With `snapshot_socket` (and a unix address whose path leaves room for the suffix) the snapshot
    socket is served too."""
    path = unix_socket_path(address)
    if path is not None:
        if not path:
            raise ValueError(f"{address}: a unix address needs a path, like unix:/run/neuron.sock")
        directory = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(directory):
            raise OSError(f"cannot listen on {address}: no such directory {directory}")
        _clear_stale_socket(address, path)
    elif ":" not in address:
        raise ValueError(f"{address!r} is not an address like unix:/run/neuron.sock or 127.0.0.1:50051")
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="neuron-runtime-endpoint"),
        options=[("grpc.so_reuseport", 0)],
    )
    servicer = _RuntimeMetrics(recorder)
    runtime_pb2_grpc.add_RuntimeMetricsServicer_to_server(servicer, server)
    if simulator is not None:
        runtime_pb2_grpc.add_SimulatorControlServicer_to_server(_SimulatorControl(simulator), server)
    if path is None:
        port = _add_port(server, address, address)
        server.start()
    else:
        try:
            with socket_file(path, socket_mode) as private_path:
                port = _add_port(server, f"unix:{private_path}", address)
                server.start()
        except OSError:
            server.stop(None)
            raise
    handle = RuntimeEndpointServer(address, port, server, path)
    if path is not None and snapshot_socket:
        handle.snapshot_socket = _serve_snapshot_socket(recorder, address, path, socket_mode)
        if handle.snapshot_socket is not None:
            servicer.snapshot_socket = handle.snapshot_socket.path
    _logger.debug("serving the runtime endpoint at %s", address)
    return handle


def _add_port(server: Any, listen_at: str, address: str) -> int:
    try:
        port = int(server.add_insecure_port(listen_at))
    except RuntimeError as error:
        raise OSError(f"cannot listen on {address}: {str(error).replace(listen_at, address)}") from None
    if port == 0:
        raise OSError(f"cannot listen on {address}")
    return port


def _serve_snapshot_socket(
    recorder: SnapshotSource, address: str, path: str, socket_mode: int
) -> SnapshotSocketServer | None:
    """The snapshot socket next to the gRPC one; None (gRPC only) when it cannot be had."""
    snapshot_path = snapshot_socket_path(path)
    if snapshot_path is None:
        _logger.info("%s: no snapshot socket (its path would be too long); serving gRPC only", address)
        return None
    try:
        _clear_stale_socket(address, snapshot_path)
        return SnapshotSocketServer(recorder, snapshot_path, socket_mode)
    except OSError as error:
        _logger.warning("%s: no snapshot socket at %s (%s); serving gRPC only", address, snapshot_path, error)
        return None


def _clear_stale_socket(address: str, path: str) -> None:
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise OSError(f"cannot listen on {address}: {path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(0.5)
    try:
        probe.connect(path)
    except OSError:
        os.unlink(path)  # nobody listens: a stale file from a runtime that did not stop cleanly
        return
    finally:
        probe.close()
    raise OSError(f"cannot listen on {address}: another process is serving it")
