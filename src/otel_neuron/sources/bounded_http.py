"""One HTTP request to a peer that may misbehave: bounded in time by a deadline and in bytes by a limit.

    answer = request(Endpoint.parse("http://169.254.169.254"), "GET", "/latest/meta-data/ami-id",
                     {}, Deadline(1.0))

http.client parses the answer, over a socket whose every read and write waits at most until the
deadline (a peer dripping one byte at a time cannot stretch it) and which refuses to receive more
than `limit` bytes, status line and headers included. Redirects are never followed and no proxy
is used. Every failure, whatever raised it, is one `RequestFailed` whose message is a few words of
ours: never the peer's bytes.
"""

from __future__ import annotations

import http.client
import socket
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from otel_neuron.sources.deadline import Deadline

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer, WriteableBuffer

DEFAULT_LIMIT = 16 * 1024


class RequestFailed(Exception):
    """Why a request got no usable answer, in a few words of our own."""


class _AnswerTooLong(Exception):
    pass


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    base_path: str

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        """An http:// URL; ValueError for anything else."""
        try:
            parts = urllib.parse.urlsplit(url)
            port = parts.port or 80
        except ValueError:
            parts, port = None, 0
        if parts is None or parts.scheme != "http" or not parts.hostname:
            raise ValueError("not an http:// URL")
        return cls(parts.hostname, port, parts.path.rstrip("/"))


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes


def request(
    endpoint: Endpoint,
    method: str,
    path: str,
    headers: Mapping[str, str],
    deadline: Deadline,
    limit: int = DEFAULT_LIMIT,
) -> Answer:
    """Send one request and read its whole answer; RequestFailed for anything else."""
    connection = _BoundedConnection(endpoint, deadline, limit)
    try:
        connection.request(method, endpoint.base_path + path, headers={**headers, "Connection": "close"})
        response = connection.getresponse()
        # Never read() without a size: http.client would allocate whatever Content-Length claims.
        body = response.read(limit + 1)
        if len(body) > limit:
            raise _AnswerTooLong
        if response.length:  # Content-Length promised more than came before the peer closed
            raise http.client.IncompleteRead(body)
        return Answer(response.status, body)
    except Exception as error:  # a misbehaving peer can make http.client raise nearly anything
        raise RequestFailed(_reason(error, limit)) from None
    finally:
        connection.close()


def _reason(error: Exception, limit: int) -> str:
    """A few words for `error`: from a table of our own, or the OS's own text for socket errors."""
    if isinstance(error, _AnswerTooLong):
        return f"answer longer than {limit} bytes"
    if isinstance(error, TimeoutError):
        return "timed out"
    if isinstance(error, http.client.RemoteDisconnected):  # before OSError: it is a ConnectionResetError
        return "connection closed without an answer"
    if isinstance(error, http.client.IncompleteRead):
        return "answer cut short"
    if isinstance(error, (http.client.HTTPException, ValueError)):
        return "not an HTTP answer"
    if isinstance(error, OSError):
        return (error.strerror or type(error).__name__).lower()
    return f"failed ({type(error).__name__})"


class _BoundedConnection(http.client.HTTPConnection):
    def __init__(self, endpoint: Endpoint, deadline: Deadline, limit: int) -> None:
        super().__init__(endpoint.host, endpoint.port)
        self._deadline = deadline
        self._limit = limit

    def connect(self) -> None:
        plain = socket.create_connection((self.host, self.port), self._deadline.remaining())
        self.sock = _BoundedSocket(plain, self._deadline, self._limit)


class _BoundedSocket(socket.socket):
    """A connected socket that waits at most until `deadline` and receives at most `limit` bytes."""

    def __init__(self, plain: socket.socket, deadline: Deadline, limit: int) -> None:
        super().__init__(plain.family, plain.type, plain.proto, fileno=plain.detach())
        self._deadline = deadline
        self._unreceived = limit + 1  # one more than allowed shows that the answer is too long

    def sendall(self, data: ReadableBuffer, flags: int = 0, /) -> None:
        self.settimeout(self._deadline.remaining())
        super().sendall(data, flags)

    def recv_into(self, buffer: WriteableBuffer, nbytes: int = 0, flags: int = 0) -> int:
        if self._unreceived <= 0:
            raise _AnswerTooLong
        self.settimeout(self._deadline.remaining())
        size = min(nbytes or memoryview(buffer).nbytes, self._unreceived)
        received = super().recv_into(buffer, size, flags)
        self._unreceived -= received
        return received
