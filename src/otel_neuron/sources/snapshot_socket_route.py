"""Whether a local runtime is read on its snapshot socket, and the connection when it is.

The path is not taken from an answer but from the configured address (the protocol fixes it:
`<gRPC socket>.snapshot`), since a runtime in a container names paths as it sees them. Where that
socket exists the endpoint reads it directly (`connect_direct`), without gRPC, which a monitor of
such runtimes then never loads. A runtime without the socket is read over gRPC, and after each
gRPC answer the endpoint offers it to `adopt`: a runtime that says it serves a snapshot socket,
which exists, is read there from then on. Answers on the socket must come from the runtime last
seen (over gRPC or on the socket), so a path that leads to another runtime is not read as this
one; only at first contact, or once the socket closed after answering (the runtime restarted),
does the next answer name the runtime.

A socket that could not be reached, or that closed after answering (the runtime is restarting),
is tried again at the next fetch. One that carried something other than an answer, or failed
before its first answer, is given up until the runtime restarts (a new runtime_id, learned over
gRPC), and meanwhile the runtime is read over gRPC.
"""

from __future__ import annotations

import logging
import os
import socket

from otel_neuron.runtime import runtime_pb2
from otel_neuron.runtime.snapshot_socket import SnapshotConnection, SnapshotSocketError, snapshot_socket_path

_logger = logging.getLogger(__name__)

# `given up for` the runtime the next gRPC answer names: a direct connection failed before any answer.
_NEXT_ANSWER = "\0next answer"


class SnapshotSocketRoute:
    """Used from the collector's thread; `adopt` runs on the fetch loop, only while no socket is in use."""

    def __init__(self, grpc_socket_path: str, where: str) -> None:
        self._path = snapshot_socket_path(grpc_socket_path)
        self._where = where
        self._connection: SnapshotConnection | None = None
        self._runtime_id = ""  # of the runtime answering ("": the next answer names it)
        self._given_up_for = ""  # the runtime_id whose socket failed
        self._direct_failed = False  # its socket carried garbage: read over gRPC until adopted again
        self._answered = False  # the current connection has given an answer

    @property
    def active(self) -> bool:
        return self._connection is not None

    @property
    def exists(self) -> bool:
        """Whether the runtime's snapshot socket is there now."""
        return self._path is not None and os.path.exists(self._path)

    def adopt(self, snapshot: runtime_pb2.Snapshot) -> bool:
        """After a gRPC answer: True when reading moves to the snapshot socket from now on."""
        self._runtime_id = snapshot.runtime_id
        if not snapshot.snapshot_socket or self._path is None or self._connection is not None:
            return False
        if not self.exists:
            return False
        if self._given_up_for == _NEXT_ANSWER:
            self._given_up_for = snapshot.runtime_id
        if self._given_up_for == snapshot.runtime_id:
            return False
        self._connection = SnapshotConnection(self._path)
        self._answered = False
        self._direct_failed = False
        return True

    def connect_direct(self) -> bool:
        """Before a fetch: True when the runtime is to be read on its snapshot socket, found at the
        protocol's path, without asking gRPC first (the next answer names the runtime)."""
        if self._connection is not None:
            return True
        if self._path is None or self._direct_failed or not self.exists:
            return False
        self._connection = SnapshotConnection(self._path)
        self._answered = False
        return True

    def send(self, request: bytes) -> socket.socket | None:
        """Send the request; the socket to wait on, or None when the runtime is to be asked over gRPC."""
        if self._connection is None:
            return None
        try:
            return self._connection.send_request(request)
        except (FileNotFoundError, ConnectionRefusedError):
            self.close()  # nobody there (yet): the runtime is restarting, or serves gRPC only
            return None
        except OSError as error:
            self.give_up(error)
            return None

    def book(self, request: bytes) -> bool:
        """Send a request whose answer is deferred to a later tick (see SnapshotConnection.book);
        False when none could be booked (the next tick then asks as usual)."""
        if self._connection is None:
            return False
        try:
            return self._connection.book(request)
        except OSError as error:
            self.give_up(error)
            return False

    def booked(self) -> socket.socket | None:
        """The socket whose booked answer is due, with nothing sent; None when none is booked."""
        return self._connection.booked() if self._connection is not None else None

    def read(self) -> runtime_pb2.Snapshot | None:
        """The snapshot once whole, None while more is due; OSError once the socket is given up."""
        if self._connection is None:
            raise ConnectionResetError(f"{self._where}: no snapshot socket")
        try:
            snapshot = self._connection.receive()
            if snapshot is not None and snapshot.runtime_id != self._runtime_id:
                if self._runtime_id:
                    raise SnapshotSocketError(f"{self._path} answers for runtime {snapshot.runtime_id}")
                self._runtime_id = snapshot.runtime_id  # first contact, or a restarted runtime
            if snapshot is not None:
                self._answered = True
        except OSError as error:
            self.give_up(error)
            raise
        return snapshot

    def give_up(self, error: OSError) -> None:
        """Back to gRPC for this fetch; until the runtime restarts when the socket carried garbage."""
        if self._connection is not None:
            _logger.debug("%s: snapshot socket failed (%s); back to gRPC", self._where, error)
            if isinstance(error, SnapshotSocketError) or not self._answered:
                self._direct_failed = True  # not an answer, or no answer at all: not a restart
                self._given_up_for = self._runtime_id or _NEXT_ANSWER
            else:  # closed after answering: the runtime is restarting, and whoever answers next is it
                self._given_up_for = self._runtime_id
                self._runtime_id = ""
            self.close()

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()
