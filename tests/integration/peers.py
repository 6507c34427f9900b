"""Real peers for the export tests: rotel (an OpenTelemetry collector) and Prometheus.

Each peer runs on 127.0.0.1 on free ports, with bounded start-up waits, and is stopped by the
fixture that started it. A peer whose binary is absent makes its tests skip with the reason.

rotel is configured the way collector-config/rotel/*.env documents it: the env files are read,
the addresses are replaced with the test's free ports, and the result is rotel's environment.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
COLLECTOR_CONFIG = REPO / "collector-config"
START_TIMEOUT = 15.0


def rotel_binary() -> str | None:
    try:
        import rotel  # noqa: F401
    except ImportError:
        return None
    candidate = Path(sys.modules["rotel"].__file__).parent / "rotel-agent"  # type: ignore[arg-type]
    return str(candidate) if candidate.exists() else shutil.which("rotel-agent")


def prometheus_binary() -> str | None:
    return shutil.which("prometheus")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[Any], timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listened on 127.0.0.1:{port} within {timeout} s")


def stop(process: subprocess.Popen[Any], timeout: float = 5.0) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines; blank lines and # comments ignored (the format of systemd and docker)."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip().strip('"')
    return values


# ---------------------------------------------------------------------------------------------
# rotel


@dataclass
class ReceivedPoint:
    resource: dict[str, str]
    scope: str
    name: str
    unit: str
    data_type: str
    attributes: dict[str, str]
    value: float | None
    temporality: str = ""


_ATTRIBUTE = re.compile(r"^\s*-> ([^:]+): \w+\((.*)\)$")
_DESCRIPTOR = re.compile(r"^\s*-> (Name|Description|Unit|DataType|AggregationTemporality): ?(.*)$")


def parse_rotel_debug_log(text: str) -> list[ReceivedPoint]:
    """The data points of rotel's `--debug-log metrics --debug-log-verbosity detailed` output."""
    points: list[ReceivedPoint] = []
    resource: dict[str, str] = {}
    scope = ""
    descriptor: dict[str, str] = {}
    attributes: dict[str, str] = {}
    section = ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("ResourceMetrics #"):
            resource, section = {}, "resource"
        elif stripped == "Resource attributes:":
            section = "resource"
        elif stripped.startswith("InstrumentationScope"):
            scope = stripped.split(" ", 2)[1] if " " in stripped else ""
        elif stripped == "Descriptor:":
            descriptor, section = {}, "descriptor"
        elif re.match(r"^(NumberDataPoints|HistogramDataPoints|ExponentialHistogramDataPoints) #", stripped):
            attributes, section = {}, "point"
            descriptor.setdefault("PointKind", stripped.split(" ")[0])
        elif stripped == "Data point attributes:":
            section = "point"
        elif section == "descriptor" and (match := _DESCRIPTOR.match(line)):
            descriptor[match.group(1)] = match.group(2)
        elif (match := _ATTRIBUTE.match(line)) and section in ("resource", "point"):
            target = resource if section == "resource" else attributes
            target[match.group(1)] = match.group(2)
        elif section == "point" and (stripped.startswith("Value: ") or stripped.startswith("Count: ")):
            number = stripped.split(": ", 1)[1]
            points.append(
                ReceivedPoint(
                    resource=dict(resource),
                    scope=scope,
                    name=descriptor.get("Name", ""),
                    unit=descriptor.get("Unit", ""),
                    data_type=descriptor.get("DataType", ""),
                    attributes=dict(attributes),
                    value=_number(number),
                    temporality=descriptor.get("AggregationTemporality", ""),
                )
            )
    return points


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


@dataclass
class Rotel:
    """One rotel-agent process; `points()` parses what it has logged so far."""

    process: subprocess.Popen[bytes]
    grpc_port: int
    http_port: int
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def grpc_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.grpc_port}"

    @property
    def http_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def points(self) -> list[ReceivedPoint]:
        return parse_rotel_debug_log(self.text())

    def wait_for(self, predicate: Any, timeout: float = 15.0) -> list[ReceivedPoint]:
        deadline = time.monotonic() + timeout
        while True:
            points = self.points()
            if predicate(points):
                return points
            if time.monotonic() > deadline:
                names = sorted({point.name for point in points})
                raise AssertionError(
                    f"rotel did not receive the expected data within {timeout} s; got {names}"
                )
            time.sleep(0.2)

    def stop(self) -> None:
        stop(self.process)


class RotelFactory:
    """Starts rotel-agents from the env files in collector-config/rotel, on free ports."""

    def __init__(self, binary: str, directory: Path) -> None:
        self._binary = binary
        self._directory = directory
        self._started: list[Rotel] = []

    def start(
        self,
        env_file: str = "gateway.env",
        overrides: Mapping[str, str] | None = None,
        grpc_port: int | None = None,
        http_port: int | None = None,
        wait: bool = True,
    ) -> Rotel:
        grpc_port = grpc_port or free_port()
        http_port = http_port or free_port()
        index = len(self._started)
        settings = read_env_file(COLLECTOR_CONFIG / "rotel" / env_file)
        settings.update(
            {
                "ROTEL_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{grpc_port}",
                "ROTEL_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{http_port}",
                "ROTEL_PID_FILE": str(self._directory / f"rotel-{index}.pid"),
                "ROTEL_LOG_FILE": str(self._directory / f"rotel-{index}.log"),
                **(overrides or {}),
            }
        )
        environment = {key: value for key, value in os.environ.items() if not key.startswith("ROTEL_")}
        environment.update(settings)
        log_path = self._directory / f"rotel-{index}.out"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                [self._binary, "start"], env=environment, stdout=log, stderr=subprocess.STDOUT
            )
        rotel = Rotel(process, grpc_port, http_port, log_path, settings)
        self._started.append(rotel)
        if wait:
            wait_for_port(grpc_port, process)
            wait_for_port(http_port, process)
        return rotel

    def stop_all(self) -> None:
        for rotel in self._started:
            rotel.stop()


@pytest.fixture
def rotel(tmp_path: Path) -> Iterator[RotelFactory]:
    binary = rotel_binary()
    if binary is None:
        pytest.skip("rotel-agent is not installed (pip install -e '.[test]' brings the rotel package)")
    factory = RotelFactory(binary, tmp_path)
    try:
        yield factory
    finally:
        factory.stop_all()


# ---------------------------------------------------------------------------------------------
# Prometheus


class Prometheus:
    """A Prometheus server scraping the given targets every second."""

    def __init__(self, binary: str, directory: Path) -> None:
        self._binary = binary
        self._directory = directory
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, targets: Mapping[str, str]) -> None:
        """`targets`: job name -> "127.0.0.1:PORT"."""
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [
                {"job_name": job, "scrape_interval": "1s", "static_configs": [{"targets": [target]}]}
                for job, target in targets.items()
            ],
        }
        config_path = self._directory / "prometheus.yml"
        config_path.write_text(json.dumps(config))  # JSON is YAML
        self.port = free_port()
        log = open(self._directory / "prometheus.log", "wb")  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen(
            [
                self._binary,
                f"--config.file={config_path}",
                f"--storage.tsdb.path={self._directory / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--storage.tsdb.retention.time=1h",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        wait_for_port(self.port, self.process)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=1).read()
                return
            except OSError:
                time.sleep(0.1)
        raise TimeoutError("Prometheus did not become ready")

    def query(self, promql: str) -> list[dict[str, Any]]:
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        body = json.loads(urllib.request.urlopen(url, timeout=5).read())
        if body.get("status") != "success":
            raise AssertionError(f"PromQL {promql!r} failed: {body}")
        return list(body["data"]["result"])

    def wait_for(self, promql: str, timeout: float = 20.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            result = self.query(promql)
            if result:
                return result
            if time.monotonic() > deadline:
                raise AssertionError(f"PromQL {promql!r} returned nothing within {timeout} s")
            time.sleep(0.5)

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Prometheus]:
    binary = prometheus_binary()
    if binary is None:
        pytest.skip("the prometheus binary is not installed (Debian: apt-get install prometheus)")
    server = Prometheus(binary, tmp_path)
    try:
        yield server
    finally:
        server.stop()
