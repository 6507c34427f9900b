"""The snapshot socket: the runtime protocol's snapshots on a local unix socket, without gRPC.

A runtime served with `serve_runtime_endpoint("unix:/run/neuron.sock")` also listens on
`/run/neuron.sock.snapshot` and says so in every Snapshot (`snapshot_socket`). There a request
and its answer are each a 4-byte big-endian length followed by the serialized SnapshotRequest /
Snapshot, on a connection the monitor keeps open. The messages and their meaning are those of
GetSnapshot (each answer closes a latency epoch); only the framing is lighter: a fetch costs the
monitor about a sixth of a gRPC call's CPU, which at 16 runtimes a second is most of its budget.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import socketserver
import stat
import struct
import threading
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
    def snapshot(self) -> runtime_pb2.Snapshot: ...


class SnapshotSocketError(Exception):
    """The snapshot socket did not answer with a well-formed frame."""


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
                runtime_pb2.SnapshotRequest.FromString(body)
            except DecodeError:
                return
            snapshot = self.server.source.snapshot()
            snapshot.snapshot_socket = self.server.path
            self.wfile.write(frame(snapshot.SerializeToString()))


class _ThreadingUnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True  # a connection's thread never outlives the runtime

    def __init__(self, path: str, source: SnapshotSource) -> None:
        self.path = path
        self.source = source
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


class SnapshotSocketClient:
    """The monitor's connection to one snapshot socket, used from one asyncio event loop."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._transport: asyncio.BaseTransport | None = None
        self._frames: _AnswerFrames | None = None
        self._turn = asyncio.Lock()  # one request in flight: answers carry no request id

    async def fetch(self, request: bytes) -> runtime_pb2.Snapshot:
        """One snapshot; OSError or SnapshotSocketError when the socket fails. Cancelled mid-answer,
        the connection is dropped: its next bytes would be that answer."""
        async with self._turn:
            try:
                body = await self._exchange(request)
            except BaseException:
                self.close()
                raise
        try:
            return runtime_pb2.Snapshot.FromString(body)
        except DecodeError:
            self.close()
            raise SnapshotSocketError(f"{self.path}: the answer is not a snapshot") from None

    async def _exchange(self, request: bytes) -> bytes:
        loop = asyncio.get_running_loop()
        if self._transport is None or self._frames is None:
            self._transport, self._frames = await loop.create_unix_connection(
                lambda: _AnswerFrames(self.path), self.path
            )
        answer = self._frames.expect(loop)
        self._transport.write(request)  # type: ignore[attr-defined]
        return await answer

    def close(self) -> None:
        transport, self._transport, self._frames = self._transport, None, None
        if transport is not None:
            transport.close()


class _AnswerFrames(asyncio.BufferedProtocol):
    """Receives length-prefixed answers straight into one reusable buffer.

    asyncio's StreamReader costs about twice as much per fetch: two awaits per frame and a fresh
    256 KiB receive buffer per read; here a fetch is one future and usually one recv_into.
    """

    def __init__(self, path: str) -> None:
        self._path = path
        self._buffer = bytearray(64 << 10)
        self._filled = 0
        self._answer: asyncio.Future[bytes] | None = None
        self._transport: asyncio.BaseTransport | None = None
        self._broken: Exception | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport

    def expect(self, loop: asyncio.AbstractEventLoop) -> asyncio.Future[bytes]:
        """The future of the next answer (failed already if the connection is broken)."""
        self._answer = loop.create_future()
        if self._broken is not None:
            self._answer.set_exception(self._broken)
        return self._answer

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._broken is not None:  # draining a connection given up on
            return memoryview(bytearray(4096))
        return memoryview(self._buffer)[self._filled :]

    def buffer_updated(self, nbytes: int) -> None:
        if self._broken is not None:
            return
        self._filled += nbytes
        if self._filled < _HEADER.size:
            return
        (length,) = _HEADER.unpack_from(self._buffer)
        end = _HEADER.size + length
        if length > MAX_SNAPSHOT_BYTES:
            self._fail(SnapshotSocketError(f"{self._path}: a frame of {length} bytes is not a snapshot"))
        elif self._filled > end or self._answer is None or self._answer.done():
            self._fail(SnapshotSocketError(f"{self._path}: sent bytes nobody asked for"))
        elif end > len(self._buffer):
            # A bigger snapshot than any before: a new buffer (the one being filled is still exported).
            self._buffer = self._buffer[: self._filled] + bytes(end - self._filled)
        elif self._filled == end:
            self._filled = 0
            self._answer.set_result(bytes(memoryview(self._buffer)[_HEADER.size : end]))

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(exc or ConnectionResetError(f"{self._path} hung up"))

    def _fail(self, error: Exception) -> None:
        if self._broken is None:
            self._broken = error
            if self._transport is not None:
                self._transport.close()
        if self._answer is not None and not self._answer.done():
            self._answer.set_exception(error)
