"""The snapshot socket: the runtime protocol's snapshots on a local unix socket, without gRPC.

A runtime served with `serve_runtime_endpoint("unix:/run/neuron.sock")` also listens on
`/run/neuron.sock.snapshot` and says so in every Snapshot (`snapshot_socket`). There a request
and its answer are each a 4-byte big-endian length followed by the serialized SnapshotRequest /
Snapshot, on a connection the monitor keeps open. The messages and their meaning are those of
GetSnapshot (each answer closes a latency epoch); only the framing is lighter: a fetch costs the
monitor a fraction of a gRPC call's CPU, which with a runtime per device is most of its budget
(docs/architecture.md, Cost).
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import select
import socket
import socketserver
import stat
import struct
import threading
from collections.abc import Callable
from typing import Protocol, cast

from google.protobuf.message import DecodeError

from otel_neuron.runtime import runtime_pb2
from otel_neuron.runtime.socket_file import MAX_SOCKET_PATH, socket_file

_logger = logging.getLogger(__name__)

SUFFIX = ".snapshot"  # the snapshot socket of a runtime at unix:/x.sock is /x.sock.snapshot
_HEADER = struct.Struct(">I")
MAX_REQUEST_BYTES = 1 << 16  # a SnapshotRequest is a few bytes: more is not this protocol
MAX_SNAPSHOT_BYTES = 64 << 20  # as much as the monitor's gRPC channel accepts
MAX_ANSWER_DELAY_S = 3600.0  # a deferred answer is taken within the hour whatever the request says


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
    older = cast("Callable[[], runtime_pb2.Snapshot]", source.snapshot)  # not as SnapshotSource says
    return lambda since_epoch: older()


class SnapshotSocketError(ConnectionError):
    """The snapshot socket's connection is unusable: it carried something that is not an answer."""


def frame(payload: bytes) -> bytes:
    return _HEADER.pack(len(payload)) + payload


def snapshot_socket_path(grpc_socket_path: str) -> str | None:
    """Where the runtime serving gRPC at `grpc_socket_path` listens, or None when the name is too long."""
    path = os.path.abspath(grpc_socket_path) + SUFFIX
    return path if len(os.fsencode(path)) <= MAX_SOCKET_PATH else None


class _Connection(socketserver.StreamRequestHandler):
    server: _ThreadingUnixServer
    # Unbuffered: a request read ahead into a buffer would be invisible to the poll() that waits
    # out a deferred answer.
    rbufsize = 0

    def setup(self) -> None:
        super().setup()
        self.server.connections.add(self.request)

    def finish(self) -> None:
        self.server.connections.discard(self.request)
        super().finish()

    def handle(self) -> None:
        """Answer requests in order until the client hangs up or sends something that is not ours."""
        while True:
            header = self._read_exactly(_HEADER.size)
            if header is None:
                return
            (length,) = _HEADER.unpack(header)
            if length > MAX_REQUEST_BYTES:
                return
            body = self._read_exactly(length)
            if body is None:
                return
            try:
                request = runtime_pb2.SnapshotRequest.FromString(body)
            except DecodeError:
                return
            if request.answer_in_nano and not self._wait_for(request.answer_in_nano / 1e9):
                return
            snapshot = self.server.take_snapshot(request.since_epoch)
            snapshot.snapshot_socket = self.server.path
            snapshot.defers_answers = True
            self.wfile.write(frame(snapshot.SerializeToString()))

    def _read_exactly(self, size: int) -> bytes | None:
        """`size` bytes, or None when the client hung up first."""
        parts, missing = [], size
        while missing:
            part = self.rfile.read(missing)
            if not part:
                return None
            parts.append(part)
            missing -= len(part)
        return b"".join(parts)

    def _wait_for(self, seconds: float) -> bool:
        """Until a deferred answer is due, or sooner when the client writes again (its next request
        brings this answer forward); False when it hung up meanwhile (or the runtime stops)."""
        waiting = select.poll()
        waiting.register(self.request, select.POLLIN)
        if not waiting.poll(min(seconds, MAX_ANSWER_DELAY_S) * 1000):
            return True
        try:
            return bool(self.request.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
        except BlockingIOError:
            return True
        except OSError:
            return False


class _ThreadingUnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True  # a connection's thread never outlives the runtime

    def __init__(self, path: str, source: SnapshotSource) -> None:
        """Serves as `path`, but listens only once `listen_at()` is called."""
        self.path = path
        self.take_snapshot = snapshot_taker(source)
        self.connections: set[socket.socket] = set()
        super().__init__(path, _Connection, bind_and_activate=False)

    def listen_at(self, bind_path: str) -> None:
        self.server_address = bind_path
        self.server_bind()
        self.server_activate()

    def handle_error(self, request: object, client_address: object) -> None:
        # A monitor that goes away mid-answer is not the runtime's problem.
        _logger.debug("snapshot socket %s: a connection failed", self.path, exc_info=True)


class SnapshotSocketServer:
    """Serves `source` at `path` (mode `socket_mode`) from a daemon thread until `stop()`."""

    def __init__(self, source: SnapshotSource, path: str, socket_mode: int = 0o600) -> None:
        self.path = path
        self._server = _ThreadingUnixServer(path, source)
        try:
            with socket_file(path, socket_mode) as private_path:
                self._server.listen_at(private_path)
        except OSError:
            self._server.server_close()
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
    frame is whole: one thread waits on every runtime's socket with no event loop in between.
    `book()` sends a request whose answer is deferred to a later tick; `booked()` is that tick's
    socket to wait on, with nothing sent.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._socket: socket.socket | None = None
        self._buffer = bytearray(64 << 10)
        self._filled = 0
        self._awaiting = False  # a request whose answer has not been read whole
        self._booked = False  # that request's answer is deferred (see book())
        self._unwanted = 0  # answers still due that nobody waits for (booked, then asked again)

    def send_request(self, request: bytes) -> socket.socket:
        """OSError when the socket cannot be reached.

        While the answer to an earlier request is still due (a runtime that hung past a deadline),
        nothing more is sent: the runtime takes its snapshot when it reads that request, and a hung
        runtime is not flooded with connections. An answer that came whole after its deadline is
        dropped and a new request sent. A booked answer still due is dropped when it comes (the
        runtime answers it at once on reading this request, then this one)."""
        if self._awaiting and not self._booked and self._socket is not None and self.receive() is None:
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
        if self._awaiting:  # booked: its answer comes first and is not this request's
            self._unwanted += 1
        self._write(request)
        self._booked = False
        return self._socket

    def book(self, request: bytes) -> bool:
        """Send `request` (one with answer_in_nano) on the open connection; False, with nothing
        sent, while another answer is due. OSError when it cannot be sent."""
        if self._socket is None or self._awaiting:
            return False
        self._write(request)
        self._booked = True
        return True

    def booked(self) -> socket.socket | None:
        """The socket whose booked answer is due (nothing is sent), or None when none is booked."""
        return self._socket if self._awaiting and self._booked else None

    def _write(self, request: bytes) -> None:
        assert self._socket is not None
        if self._socket.send(request) != len(request):
            raise SnapshotSocketError(f"{self.path} does not read its requests")
        self._awaiting = True

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
        while True:
            end = self._frame_end()
            if end is None:
                return None
            if not self._unwanted:
                break
            self._unwanted -= 1  # a booked answer asked for again: the next frame is the one awaited
            rest = self._filled - end
            self._buffer[:rest] = self._buffer[end : self._filled]
            self._filled = rest
        if self._filled > end:
            raise SnapshotSocketError(f"{self.path} sent bytes nobody asked for")
        self._awaiting = self._booked = False
        self._filled = 0
        try:
            return runtime_pb2.Snapshot.FromString(memoryview(self._buffer)[_HEADER.size : end])
        except DecodeError:
            raise SnapshotSocketError(f"{self.path}: the answer is not a snapshot") from None

    def _frame_end(self) -> int | None:
        """Where the first frame in the buffer ends once it is whole; None while more is due."""
        if self._filled < _HEADER.size:
            return None
        (length,) = _HEADER.unpack_from(self._buffer)
        if length > MAX_SNAPSHOT_BYTES:
            raise SnapshotSocketError(f"{self.path}: a frame of {length} bytes is not a snapshot")
        end = _HEADER.size + length
        if end > len(self._buffer):  # a bigger snapshot than any before
            self._buffer = self._buffer[: self._filled] + bytes(end - self._filled)
        return end if self._filled >= end else None

    def close(self) -> None:
        connection, self._socket, self._awaiting = self._socket, None, False
        self._booked, self._unwanted, self._filled = False, 0, 0
        if connection is not None:
            connection.close()
