"""Whether a local runtime is read on its snapshot socket, and the connection when it is.

After each gRPC answer the endpoint offers it to `adopt`: a runtime that serves a snapshot socket
is read there from then on. The path is not taken from the answer but from the configured address
(the protocol fixes it: `<gRPC socket>.snapshot`), since a runtime in a container names paths as
it sees them; and every answer must come from the runtime gRPC reported, so a path that leads to
another runtime is never read as this one. A socket that failed is given up until the runtime
restarts (a new runtime_id); meanwhile the runtime is read over gRPC.
"""

from __future__ import annotations

import logging
import socket

from otel_neuron.runtime import runtime_pb2
from otel_neuron.runtime.snapshot_socket import SnapshotConnection, SnapshotSocketError, snapshot_socket_path

_logger = logging.getLogger(__name__)


class SnapshotSocketRoute:
    """Used from the collector's thread; `adopt` runs on the fetch loop, only while no socket is in use."""

    def __init__(self, grpc_socket_path: str, where: str) -> None:
        self._path = snapshot_socket_path(grpc_socket_path)
        self._where = where
        self._connection: SnapshotConnection | None = None
        self._runtime_id = ""  # of the runtime gRPC last answered for
        self._given_up_for = ""  # the runtime_id whose socket failed

    @property
    def active(self) -> bool:
        return self._connection is not None

    def adopt(self, snapshot: runtime_pb2.Snapshot) -> bool:
        """After a gRPC answer: True when reading moves to the snapshot socket from now on."""
        self._runtime_id = snapshot.runtime_id
        if not snapshot.snapshot_socket or self._path is None or self._connection is not None:
            return False
        if self._given_up_for == snapshot.runtime_id:
            return False
        self._connection = SnapshotConnection(self._path)
        return True

    def send(self, request: bytes) -> socket.socket | None:
        """Send the request; the socket to wait on, or None when the runtime is to be asked over gRPC."""
        if self._connection is None:
            return None
        try:
            return self._connection.send_request(request)
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
                raise SnapshotSocketError(f"{self._path} answers for runtime {snapshot.runtime_id}")
        except OSError as error:
            self.give_up(error)
            raise
        return snapshot

    def give_up(self, error: OSError) -> None:
        """Back to gRPC, for this fetch and until the runtime restarts."""
        if self._connection is not None:
            _logger.debug("%s: snapshot socket failed (%s); back to gRPC", self._where, error)
            self._given_up_for = self._runtime_id
            self.close()

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()
