"""A fake EC2 instance metadata service (IMDSv2) on 127.0.0.1, recording every request it gets;
and `RawImds`, which is no HTTP server at all: it sends what it is told, as slowly as it is told."""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TOKEN = "fake-imds-token-AQAEA"
MAC = "0e:11:22:33:44:55"

# The guide's instance_data example, as IMDS serves it.
GUIDE_METADATA = {
    "instance-id": "i-0011223344556677a",
    "instance-type": "inf1.xlarge",
    "placement/availability-zone": "us-west-2b",
    "placement/availability-zone-id": "usw2-az2",
    "placement/region": "us-west-2",
    "ami-id": "ami-0011223344556677b",
    "mac": MAC,
    f"network/interfaces/macs/{MAC}/subnet-id": "subnet-112233ee",
    "tags/instance/Name": "My_Instance",
}


@dataclass(frozen=True)
class Answer:
    """What FakeImds answers for one path instead of the usual, byte for byte."""

    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]  # names in lower case


@dataclass
class FakeImds:
    metadata: dict[str, str] = field(default_factory=lambda: dict(GUIDE_METADATA))
    requests: list[Request] = field(default_factory=list)
    answers: dict[str, Answer] = field(default_factory=dict)  # by path, PUT or GET

    def __post_init__(self) -> None:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self) -> None:  # noqa: N802 - http.server's naming
                fake._record(self)
                if self.path in fake.answers:
                    self._send(fake.answers[self.path])
                elif (
                    self.path != "/latest/api/token"
                    or "X-aws-ec2-metadata-token-ttl-seconds" not in self.headers
                ):
                    self._answer(400, "")
                else:
                    self._answer(200, TOKEN)

            def do_GET(self) -> None:  # noqa: N802
                fake._record(self)
                if self.path in fake.answers:
                    self._send(fake.answers[self.path])
                elif self.headers.get("X-aws-ec2-metadata-token") != TOKEN:
                    self._answer(401, "")  # IMDSv2 only: no token, no data
                    return
                prefix = "/latest/meta-data/"
                value = fake.metadata.get(self.path[len(prefix) :]) if self.path.startswith(prefix) else None
                self._answer(404, "") if value is None else self._answer(200, value)

            def _answer(self, status: int, body: str) -> None:
                self._send(Answer(status, body.encode()))

            def _send(self, answer: Answer) -> None:
                self.send_response(answer.status)
                headers = dict(answer.headers)
                headers.setdefault("Content-Length", str(len(answer.body)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(answer.body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - keep test output clean
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._lock = threading.Lock()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def _record(self, handler: BaseHTTPRequestHandler) -> None:
        with self._lock:
            self.requests.append(
                Request(handler.command, handler.path, {k.lower(): v for k, v in handler.headers.items()})
            )

    def __enter__(self) -> FakeImds:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


class RawImds:
    """A TCP listener on 127.0.0.1 that sends `data` to every connection, `interval_s` seconds between
    bytes (0: all at once), then closes it; a connection whose client left is dropped. Stops on exit."""

    def __init__(self, data: bytes, interval_s: float = 0.0) -> None:
        self._data = data
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self._threads = [threading.Thread(target=self._serve, daemon=True)]
        self.endpoint = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self.connections = 0

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            sender = threading.Thread(target=self._send, args=(connection,), daemon=True)
            self._threads.append(sender)
            sender.start()

    def _send(self, connection: socket.socket) -> None:
        with connection:
            try:
                if not self._interval_s:
                    connection.sendall(self._data)
                    return
                for index in range(len(self._data)):
                    if self._stop.wait(self._interval_s):
                        return
                    connection.sendall(self._data[index : index + 1])
            except OSError:  # the client went away
                return

    def __enter__(self) -> RawImds:
        self._threads[0].start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in list(self._threads):
            thread.join(5)
        self._listener.close()
