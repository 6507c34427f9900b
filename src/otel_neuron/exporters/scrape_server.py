"""The HTTP server behind /metrics: a deep listen backlog, a bounded pool of threads, a deadline per client.

prometheus_client's `start_http_server` starts a thread per connection without limit, listens with
socketserver's backlog of 5 (so concurrent scrapers beyond it wait out TCP retransmissions) and
waits forever for a request that never comes. This server answers with the same WSGI app and the
same request handler, so an answer is byte for byte the same, but:

- it listens with a backlog of LISTEN_BACKLOG and holds at most MAX_CONNECTIONS connections (one
  more is closed at once), so neither threads nor file descriptors grow with the clients;
- one thread (the waiting room) reads every request as it arrives, so a client that sends nothing,
  or its request byte by byte (slowloris), holds no worker; it is closed once `client_timeout`
  has passed without a whole request head (or the head passed MAX_REQUEST_HEAD bytes);
- WORKERS threads answer whole requests, each allowed `client_timeout` to send its answer.

    server = ScrapeServer(make_wsgi_app(registry), "127.0.0.1", 9464)
    server.address                        # ("127.0.0.1", 9464), the port chosen when 0 was asked
    server.shutdown()
"""

from __future__ import annotations

import io
import logging
import queue
import re
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

_logger = logging.getLogger(__name__)

LISTEN_BACKLOG = 128
MAX_CONNECTIONS = 256
MAX_REQUEST_HEAD = 8192  # a scraper's request line and headers take a few hundred bytes
WORKERS = 8
CLIENT_TIMEOUT_S = 5.0

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
Ready = Callable[[socket.socket, Any, bytes], None]
_HEAD_END = re.compile(rb"\r?\n\r?\n")


@dataclass
class _Arriving:
    """A connection in the waiting room: where its request has got to."""

    client_address: Any
    deadline: float
    head: bytearray = field(default_factory=bytearray)


class _WaitingRoom:
    """Reads requests as they arrive, on one thread, without a thread per connection.

    A connection whose request head is whole is handed to `ready`; one that hangs up, passes its
    deadline or sends more than MAX_REQUEST_HEAD bytes of head is closed, and `closed()` called."""

    def __init__(self, client_timeout: float, ready: Ready, closed: Callable[[], None]) -> None:
        self._client_timeout = client_timeout
        self._ready = ready
        self._closed = closed
        self._selector = selectors.DefaultSelector()
        self._arrivals: queue.SimpleQueue[tuple[socket.socket, Any] | None] = queue.SimpleQueue()
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._wake_reader.setblocking(False)
        self._selector.register(self._wake_reader, selectors.EVENT_READ)
        # In arrival order, so in deadline order.
        self._waiting: dict[socket.socket, _Arriving] = {}

    def add(self, connection: socket.socket, client_address: Any) -> None:
        self._arrivals.put((connection, client_address))
        self._wake_writer.send(b"\0")

    def stop(self) -> None:
        self._arrivals.put(None)
        self._wake_writer.send(b"\0")

    def run(self) -> None:
        try:
            self._serve()
        except Exception:  # noqa: BLE001 - a bug here must be seen; every waiting client is closed
            _logger.exception("/metrics stopped reading requests")
        finally:
            for connection in list(self._waiting):
                self._close(connection)
            self._selector.close()
            self._wake_reader.close()
            self._wake_writer.close()

    def _serve(self) -> None:
        while self._admit():
            timeout = None
            if self._waiting:
                timeout = max(next(iter(self._waiting.values())).deadline - time.monotonic(), 0.0)
            for key, _ in self._selector.select(timeout):
                if key.fileobj is not self._wake_reader:
                    self._read(key.fileobj)  # type: ignore[arg-type]
            self._expire(time.monotonic())

    def _admit(self) -> bool:
        """Take the connections added since the last look; False once stop() was called."""
        try:
            while self._wake_reader.recv(4096):
                pass
        except BlockingIOError:
            pass
        while True:
            try:
                arrival = self._arrivals.get_nowait()
            except queue.Empty:
                return True
            if arrival is None:
                return False
            connection, client_address = arrival
            connection.setblocking(False)
            self._waiting[connection] = _Arriving(client_address, time.monotonic() + self._client_timeout)
            self._selector.register(connection, selectors.EVENT_READ)

    def _read(self, connection: socket.socket) -> None:
        arriving = self._waiting[connection]
        try:
            data = connection.recv(MAX_REQUEST_HEAD + 1 - len(arriving.head))
        except BlockingIOError:
            return
        except OSError:
            data = b""
        searched_from = max(len(arriving.head) - 3, 0)
        arriving.head += data
        if _HEAD_END.search(arriving.head, searched_from):
            self._selector.unregister(connection)
            del self._waiting[connection]
            self._ready(connection, arriving.client_address, bytes(arriving.head))
        elif not data or len(arriving.head) > MAX_REQUEST_HEAD:
            self._close(connection)

    def _expire(self, now: float) -> None:
        for connection, arriving in list(self._waiting.items()):
            if arriving.deadline > now:
                return
            _logger.debug("a /metrics client %s sent no whole request in time", arriving.client_address)
            self._close(connection)

    def _close(self, connection: socket.socket) -> None:
        self._selector.unregister(connection)
        del self._waiting[connection]
        connection.close()
        self._closed()


class _ScrapeHandler(WSGIRequestHandler):
    """wsgiref's handler, reading the request head the waiting room has read already."""

    def __init__(self, request: Any, client_address: Any, server: Any, head: bytes = b"") -> None:
        self._head = head
        super().__init__(request, client_address, server)

    def setup(self) -> None:
        super().setup()
        self.rfile.close()
        self.rfile = io.BytesIO(self._head)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        """No line per request (as prometheus_client's server)."""

    def get_stderr(self) -> io.StringIO:
        # wsgiref writes a traceback here when a client stops reading its answer: that client is
        # not the monitor's problem. Errors of the app itself are logged by `_logged`.
        return io.StringIO()


class _ScrapeWSGIServer(WSGIServer):
    request_queue_size = LISTEN_BACKLOG

    def __init__(self, family: socket.AddressFamily, address: tuple[str, int], client_timeout: float) -> None:
        self.address_family = family
        self.client_timeout = client_timeout
        self._held = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self._requests: queue.SimpleQueue[tuple[socket.socket, Any, bytes] | None] = queue.SimpleQueue()
        self._waiting_room = _WaitingRoom(client_timeout, self._enqueue, self._held.release)
        super().__init__(address, _ScrapeHandler)
        self._waiting_thread = threading.Thread(
            target=self._waiting_room.run, name="prometheus-waiting-room", daemon=True
        )
        self._waiting_thread.start()
        for number in range(WORKERS):
            threading.Thread(target=self._work, name=f"prometheus-scrape-{number}", daemon=True).start()

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._held.acquire(blocking=False):
            _logger.debug(
                "/metrics: %d connections held already; closing %s", MAX_CONNECTIONS, client_address
            )
            request.close()
            return
        self._waiting_room.add(request, client_address)

    def _enqueue(self, connection: socket.socket, client_address: Any, head: bytes) -> None:
        connection.settimeout(self.client_timeout)  # for sending the answer, in all
        self._requests.put((connection, client_address, head))

    def _work(self) -> None:
        while (item := self._requests.get()) is not None:
            connection, client_address, head = item
            try:
                _ScrapeHandler(connection, client_address, self, head)
            except Exception:  # noqa: BLE001 - one client never stops a worker
                self.handle_error(connection, client_address)
            finally:
                self.shutdown_request(connection)
                self._held.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that went away or does not read its answer: not the monitor's problem.
        _logger.debug("a /metrics client %s failed", client_address, exc_info=True)

    def stop(self) -> None:
        """Stop accepting, close the listening socket and every connection still arriving."""
        self.shutdown()
        self.server_close()
        self._waiting_room.stop()
        self._waiting_thread.join()  # it hands over no more requests
        for _ in range(WORKERS):
            self._requests.put(None)


class ScrapeServer:
    """Serves `app` at (host, port) from daemon threads until `shutdown()`; OSError when it cannot."""

    def __init__(self, app: WsgiApp, host: str, port: int, client_timeout: float = CLIENT_TIMEOUT_S) -> None:
        if not client_timeout > 0:
            raise ValueError(f"client_timeout must be more than 0 s, not {client_timeout}")
        family, sockaddr = _listen_family(host, port)
        self._server = _ScrapeWSGIServer(family, (sockaddr, port), client_timeout)
        self._server.set_app(_logged(app))
        self.address = (host, int(self._server.server_address[1]))
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="prometheus-accept", daemon=True
        )
        self._thread.start()

    def shutdown(self, timeout: float | None = None) -> None:
        self._server.stop()
        self._thread.join(timeout)


def _listen_family(host: str, port: int) -> tuple[socket.AddressFamily, str]:
    """The address family and address to bind for `host` ("::1" needs AF_INET6)."""
    family, _, _, _, sockaddr = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    return family, str(sockaddr[0])


def _logged(app: WsgiApp) -> WsgiApp:
    """`app`, with its own failures logged (wsgiref then answers 500)."""

    def serve(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        try:
            return app(environ, start_response)
        except Exception:
            _logger.exception("/metrics could not be rendered")
            raise

    return serve
