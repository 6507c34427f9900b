"""The snapshot socket: the runtime protocol's snapshots on a local unix socket, without gRPC.

A runtime served with `serve_runtime_endpoint("unix:/run/neuron.sock")` also listens on
`/run/neuron.sock.snapshot` and says so in every Snapshot (`snapshot_socket`). There a request
and its answer are each a 4-byte big-endian length followed by the serialized SnapshotRequest /
Snapshot, on a connection the monitor keeps open. The messages and their meaning are those of
GetSnapshot (each answer closes a latency epoch); only the framing is lighter: a fetch costs the
monitor about a sixth of a gRPC call's CPU (85 against 550 us at a 1 s period), which at 16 runtimes
a second is most of its budget.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import socket
import socketserver
import stat
import struct
import threading
from collections.abc import Callable
from typing import Protocol

from google.protobuf.message import DecodeError

from otel_neuron.runtime import runtime_pb2

_logger = logging.getLogger(__name__)

SUFFIX = ".snapshot"  # the snapshot socket of a runtime at unix:/x.sock is /x.sock.snapshot
_HEADER = struct.Struct(">I")
MAX_REQUEST_BYTES = 1 << 16  # a SnapshotRequest is a few bytes: more is not this protocol
MAX_SNAPSHOT_BYTES = 64 << 20  # as much as the monitor's gRPC channel accepts
# sockaddr_un.sun_path holds 108 bytes including the terminating NUL.
_MAX_SOCKET_PATH = 107


class SnapshotSource(Protocol):
    def snapshot(self, since_epoch: int = 0) -> runtime_pb2.Snapshot: ...


def snapshot_taker(source: SnapshotSource) -> Callable[[int], runtime_pb2.Snapshot]:
    """`source.snapshot(since_epoch)`; for a source whose `snapshot()` takes no argument (written
    before since_epoch existed) the request's epoch is dropped: it answers without period histograms,
    and the monitor subtracts cumulative ones as it always did."""
    try:
        takes_epoch = bool(inspect.signature(source.snapshot).parameters)
    except (TypeError, ValueError):  # no signature to read (a builtin): assume the current protocol
        takes_epoch = True
    if takes_epoch:
        return source.snapshot
    return lambda since_epoch: source.snapshot()  # type: ignore[call-arg]


class SnapshotSocketError(ConnectionError):
    """The snapshot socket's connection is unusable: it carried something that is not an answer."""


def frame(payload: bytes) -> bytes:
    return _HEADER.pack(len(payload)) + payload


def snapshot_socket_path(grpc_socket_path: str) -> str | None:
    """Where the runtime serving gRPC at `grpc_socket_path` listens, or None when the name is too long."""
    path = os.path.abspath(grpc_socket_path) + SUFFIX
    return path if len(os.fsencode(path)) <= _MAX_SOCKET_PATH else None


class _Connection(socketserver.StreamRequestHandler):
    server: _ThreadingUnixServer

    def setup(self) -> None:
        super().setup()
        self.server.connections.add(self.request)

    def finish(self) -> None:
        self.server.connections.discard(self.request)
        super().finish()

    def handle(self) -> None:
        """Answer requests in order until the client hangs up or sends something that is not ours."""
        while True:
            header = self.rfile.read(_HEADER.size)
            if len(header) < _HEADER.size:
                return
            (length,) = _HEADER.unpack(header)
            if length > MAX_REQUEST_BYTES:
                return
            body = self.rfile.read(length)
            try:
                request = runtime_pb2.SnapshotRequest.FromString(body)
            except DecodeError:
                return
            snapshot = self.server.take_snapshot(request.since_epoch)
            snapshot.snapshot_socket = self.server.path
            self.wfile.write(frame(snapshot.SerializeToString()))


class _ThreadingUnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True  # a connection's thread never outlives the runtime

    def __init__(self, path: str, source: SnapshotSource) -> None:
        self.path = path
        self.take_snapshot = snapshot_taker(source)
        self.connections: set[socket.socket] = set()
        super().__init__(path, _Connection)

    def handle_error(self, request: object, client_address: object) -> None:
        # A monitor that goes away mid-answer is not the runtime's problem.
        _logger.debug("snapshot socket %s: a connection failed", self.path, exc_info=True)


class SnapshotSocketServer:
    """Serves `source` at `path` (mode `socket_mode`) from a daemon thread until `stop()`."""

    def __init__(self, source: SnapshotSource, path: str, socket_mode: int = 0o600) -> None:
        self.path = path
        self._server = _ThreadingUnixServer(path, source)
        try:
            os.chmod(path, socket_mode)
        except OSError:
            self._server.server_close()
            os.unlink(path)
            raise
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="neuron-runtime-snapshot-socket", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop listening, hang up on every monitor (as a runtime that exits does), remove the file."""
        self._server.shutdown()
        for connection in list(self._server.connections):
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        self._server.server_close()
        with contextlib.suppress(OSError):
            if stat.S_ISSOCK(os.lstat(self.path).st_mode):
                os.unlink(self.path)


class SnapshotConnection:
    """The monitor's connection to one snapshot socket: non-blocking, so one thread can wait on many.

    `send_request()` sends (connecting first if need be) and returns the socket to wait on;
    `receive()` reads what has arrived into one reusable buffer and returns the Snapshot once its
    frame is whole. An asyncio event loop costs about twice as much per fetch (bench_monitor).
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._socket: socket.socket | None = None
        self._buffer = bytearray(64 << 10)
        self._filled = 0
        self._awaiting = False  # a request whose answer has not been read whole

    def send_request(self, request: bytes) -> socket.socket:
        """OSError when the socket cannot be reached.

        While the answer to an earlier request is still due (a runtime that hung past a deadline),
        nothing more is sent: the runtime takes its snapshot when it reads that request, and a hung
        runtime is not flooded with connections. An answer that came whole after its deadline is
        dropped and a new request sent."""
        if self._awaiting and self._socket is not None and self.receive() is None:
            return self._socket
        if self._socket is None:
            connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            connection.setblocking(False)
            try:
                connection.connect(self.path)
            except OSError:
                connection.close()
                raise
            self._socket = connection
        self._filled = 0
        if self._socket.send(request) != len(request):
            raise SnapshotSocketError(f"{self.path} does not read its requests")
        self._awaiting = True
        return self._socket

    def receive(self) -> runtime_pb2.Snapshot | None:
        """The snapshot once its frame is whole, None while more is due; OSError (SnapshotSocketError
        included) when the connection failed or carried something that is not an answer."""
        if self._socket is None:
            raise SnapshotSocketError(f"{self.path}: no request was sent")
        try:
            received = self._socket.recv_into(memoryview(self._buffer)[self._filled :])
        except BlockingIOError:
            return None
        if received == 0:
            raise ConnectionResetError(f"{self.path} hung up")
        self._filled += received
        if self._filled < _HEADER.size:
            return None
        (length,) = _HEADER.unpack_from(self._buffer)
        end = _HEADER.size + length
        if length > MAX_SNAPSHOT_BYTES:
            raise SnapshotSocketError(f"{self.path}: a frame of {length} bytes is not a snapshot")
        if end > len(self._buffer):  # a bigger snapshot than any before
            self._buffer = self._buffer[: self._filled] + bytes(end - self._filled)
        if self._filled < end:
            return None
        if self._filled > end:
            raise SnapshotSocketError(f"{self.path} sent bytes nobody asked for")
        self._awaiting = False
        try:
            return runtime_pb2.Snapshot.FromString(bytes(memoryview(self._buffer)[_HEADER.size : end]))
        except DecodeError:
            raise SnapshotSocketError(f"{self.path}: the answer is not a snapshot") from None

    def close(self) -> None:
        connection, self._socket, self._awaiting = self._socket, None, False
        if connection is not None:
            connection.close()
