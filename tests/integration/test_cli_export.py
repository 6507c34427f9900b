"""The CLI as a subprocess exporting to real peers: rotel over OTLP, Prometheus, the Grafana dashboard.

The runtime groups come from the built-in simulator (address "sim:?seed=1").
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from peers import REPO, Prometheus, RotelFactory, free_port, stop, wait_for_port

DASHBOARD = REPO / "dashboards" / "otel-neuron.json"
RUNTIME_GROUPS = [
    "neuroncore_counters",
    "memory_used",
    "neuron_runtime_vcpu_usage",
    "inference_stats",
    "hw_counters",
]


def write_config(directory: Path, period: str = "1s") -> Path:
    config = {
        "period": period,
        "neuron_runtimes": [{"address": "sim:?seed=1", "metrics": [{"type": t} for t in RUNTIME_GROUPS]}],
        "system_metrics": [{"type": "vcpu_usage"}, {"type": "memory_info"}],
    }
    path = directory / "monitor.conf"
    path.write_text(json.dumps(config))
    return path


class Monitor:
    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.reports: list[tuple[float, dict]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.reports.append((time.monotonic(), json.loads(line)))

    def wait_reports(self, count: int, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.reports) < count:
            assert self.process.poll() is None, self.process.stderr.read() if self.process.stderr else ""
            assert time.monotonic() < deadline, f"only {len(self.reports)} reports in {timeout} s"
            time.sleep(0.1)


@contextmanager
def monitor(*arguments: str, env: dict[str, str] | None = None) -> Iterator[Monitor]:
    import os

    environment = {**os.environ, "AWS_EC2_METADATA_DISABLED": "true", **(env or {})}
    process = subprocess.Popen(
        [sys.executable, "-m", "otel_neuron", "--imds", "off", *arguments],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
    )
    try:
        yield Monitor(process)
    finally:
        stop(process)


def test_cli_exports_every_group_over_otlp_and_stdout_keeps_its_cadence(rotel: RotelFactory, tmp_path: Path):
    collector = rotel.start("gateway.env")
    config = write_config(tmp_path)
    env = {
        "OTEL_SERVICE_NAME": "neuron-fleet",
        "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment.name=test",
    }
    with monitor("-c", str(config), "--otlp", f"127.0.0.1:{collector.grpc_port}", env=env) as running:
        running.wait_reports(4)
        expected = {
            "system.cpu.utilization",
            "system.memory.usage",
            "neuron.core.utilization",
            "neuron.inference.count",
            "neuron.inference.latency",
            "neuron.runtime.memory.usage",
            "neuron.runtime.cpu.utilization",
            "neuron.device.ecc.errors",
            "neuron.monitor.group.period",
        }
        points = collector.wait_for(lambda pts: expected <= {p.name for p in pts})
    assert all(p.resource.get("service.name") == "neuron-fleet" for p in points)
    assert all(p.resource.get("deployment.environment.name") == "test" for p in points)
    core = [p for p in points if p.name == "neuron.core.utilization"]
    assert all(p.unit == "1" and "neuron.core.index" in p.attributes for p in core)
    latency = [p for p in points if p.name == "neuron.inference.latency"]
    assert latency and latency[0].unit == "s"
    groups = {
        p.attributes.get("neuron.monitor.group") for p in points if p.name == "neuron.monitor.group.period"
    }
    assert groups == {"vcpu_usage", "memory_info", *RUNTIME_GROUPS}


def test_cli_with_the_collector_down_keeps_writing_reports_on_time(tmp_path: Path):
    config = write_config(tmp_path)
    port = free_port()  # nothing listens there
    with monitor("-c", str(config), "--otlp", f"127.0.0.1:{port}", "--verbose", "3") as running:
        running.wait_reports(5)
        times = [t for t, _ in running.reports]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert max(gaps) < 1.5, gaps


def test_cli_neuron_monitor_names_scraped_by_prometheus(prometheus: Prometheus, tmp_path: Path):
    config = write_config(tmp_path)
    port = free_port()
    # Off EC2 the facts are empty (and Prometheus drops empty labels): state them as resource attributes.
    facts = {
        "host.id": "i-0123456789abcdef0",
        "host.type": "trn1.2xlarge",
        "host.name": "trainer-1",
        "cloud.region": "us-west-2",
        "cloud.availability_zone": "us-west-2b",
        "aws.ec2.subnet_id": "subnet-0123abcd",
    }
    env = {"OTEL_RESOURCE_ATTRIBUTES": ",".join(f"{k}={v}" for k, v in facts.items())}
    env["NEURON_PROCESS_TAG"] = "sim_app"  # the tag of the sim: runtime, which runs in the monitor
    arguments = ("-c", str(config), "--prometheus-names", "neuron-monitor", "--prometheus", str(port))
    with monitor(*arguments, env=env) as running:
        wait_for_port(port, running.process)
        prometheus.start({"compat": f"127.0.0.1:{port}"})
        for name in (
            "neuroncore_utilization_ratio",
            "neuron_runtime_vcpu_usage_ratio",
            "neuron_runtime_memory_used_bytes",
            "execution_errors_total",
            "execution_status_total",
            "execution_latency_seconds",
            "hardware_ecc_events_total",
            "system_vcpu_count",
            "system_vcpu_usage_ratio",
            "system_memory_total_bytes",
            "system_memory_used_bytes",
            "system_swap_total_bytes",
            "system_swap_used_bytes",
            "instance_info",
        ):
            result = prometheus.wait_for(name)
            labels = result[0]["metric"]
            assert labels["instance_id"] == "i-0123456789abcdef0", name
            assert labels["instance_type"] == "trn1.2xlarge", name
            assert labels["instance_name"] == "trainer-1", name
            assert labels["availability_zone"] == "us-west-2b", name
            assert labels["region"] == "us-west-2", name
            assert labels["subnet_id"] == "subnet-0123abcd", name
        series = prometheus.wait_for("neuroncore_utilization_ratio")
        assert all(s["metric"]["runtime_tag"] == "sim_app" and "neuroncore" in s["metric"] for s in series)
        assert all(0.0 <= float(s["value"][1]) <= 1.0 for s in series)
        memory = float(prometheus.wait_for("system_memory_total_bytes")[0]["value"][1])
        report = running.reports[-1][1]
        assert memory == report["system_data"]["memory_info"]["memory_total_bytes"]


def dashboard_queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [(panel["title"], target["expr"]) for panel in dashboard["panels"] for target in panel["targets"]]


def test_dashboard_covers_every_group():
    dashboard = json.loads(DASHBOARD.read_text())
    groups = {panel["description"].removeprefix("Report group: ") for panel in dashboard["panels"]}
    assert groups >= {"vcpu_usage", "memory_info", *RUNTIME_GROUPS, "health"}


def test_every_dashboard_query_returns_data(prometheus: Prometheus, tmp_path: Path):
    config = write_config(tmp_path)
    port = free_port()
    with monitor("-c", str(config), "--prometheus", str(port)) as running:
        wait_for_port(port, running.process)
        prometheus.start({"otel-neuron": f"127.0.0.1:{port}"})
        empty = []
        for title, expr in dashboard_queries():
            promql = expr.replace("$instance", ".*")
            try:
                prometheus.wait_for(promql, timeout=30)
            except AssertionError:
                empty.append((title, promql))
        assert not empty, f"panels without data: {empty}"


@pytest.mark.parametrize(
    "bad", [["--otlp", "ftp://x"], ["--prometheus", "host:"], ["--prometheus-names", "x"]]
)
def test_bad_export_options_are_one_line_errors(bad):
    result = subprocess.run(
        [sys.executable, "-m", "otel_neuron", *bad], capture_output=True, text=True, timeout=20
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()[-1]) > 0 and "Traceback" not in result.stderr
