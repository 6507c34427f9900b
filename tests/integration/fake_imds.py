"""A fake EC2 instance metadata service (IMDSv2) on 127.0.0.1, recording every request it gets."""

from __future__ import annotations

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


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]  # names in lower case


@dataclass
class FakeImds:
    metadata: dict[str, str] = field(default_factory=lambda: dict(GUIDE_METADATA))
    requests: list[Request] = field(default_factory=list)

    def __post_init__(self) -> None:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self) -> None:  # noqa: N802 - http.server's naming
                fake._record(self)
                if (
                    self.path != "/latest/api/token"
                    or "X-aws-ec2-metadata-token-ttl-seconds" not in self.headers
                ):
                    self._answer(400, "")
                else:
                    self._answer(200, TOKEN)

            def do_GET(self) -> None:  # noqa: N802
                fake._record(self)
                if self.headers.get("X-aws-ec2-metadata-token") != TOKEN:
                    self._answer(401, "")  # IMDSv2 only: no token, no data
                    return
                prefix = "/latest/meta-data/"
                value = fake.metadata.get(self.path[len(prefix) :]) if self.path.startswith(prefix) else None
                self._answer(404, "") if value is None else self._answer(200, value)

            def _answer(self, status: int, body: str) -> None:
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

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
