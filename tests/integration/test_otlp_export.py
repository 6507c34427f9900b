"""OTLP export to a real collector (rotel): gRPC, HTTP, agent -> gateway, collector down at start."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from monitor_harness import FACTS, running_pipeline
from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult
from peers import RotelFactory, free_port

from otel_neuron.exporters.otlp import BackgroundExporter, build_otlp_exporter

EXPECTED_RESOURCE = {
    "service.name": "otel-neuron-monitor",
    "host.id": FACTS.instance_id,
    "host.type": FACTS.instance_type,
    "cloud.region": FACTS.instance_region,
    "cloud.availability_zone": FACTS.instance_availability_zone,
    "cloud.provider": "aws",
}


def has_system_metrics(points) -> bool:
    names = {point.name for point in points}
    return {"system.cpu.utilization", "system.memory.usage", "neuron.monitor.group.period"} <= names


def assert_system_metrics(points) -> None:
    cpu = [p for p in points if p.name == "system.cpu.utilization"]
    assert cpu and all(p.unit == "1" and p.data_type == "Gauge" for p in cpu)
    assert {p.attributes["cpu.mode"] for p in cpu} >= {"user", "system", "idle", "iowait"}
    assert all("cpu.logical_number" in p.attributes for p in cpu)
    assert all(0.0 <= p.value <= 1.0 for p in cpu)
    memory = [p for p in points if p.name == "system.memory.usage"]
    assert memory and all(p.unit == "By" for p in memory)
    periods = {
        p.attributes["neuron.monitor.group"] for p in points if p.name == "neuron.monitor.group.period"
    }
    assert periods == {"vcpu_usage", "memory_info"}
    for point in points:
        assert point.scope == "otel_neuron"
        for key, value in EXPECTED_RESOURCE.items():
            assert point.resource.get(key) == value, (point.name, key, point.resource)


def test_metrics_arrive_over_grpc(rotel: RotelFactory, monkeypatch):
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_PROTOCOL", raising=False)
    collector = rotel.start("gateway.env")
    exporter = BackgroundExporter(build_otlp_exporter(f"127.0.0.1:{collector.grpc_port}", environ={}))
    with running_pipeline([exporter]):
        points = collector.wait_for(has_system_metrics)
    assert_system_metrics(points)


def test_metrics_arrive_over_http_protobuf(rotel: RotelFactory):
    collector = rotel.start("gateway.env")
    environ = {"OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "http/protobuf"}
    inner = build_otlp_exporter(f"127.0.0.1:{collector.http_port}", environ=environ)
    assert "http" in type(inner).__module__
    with running_pipeline([BackgroundExporter(inner)]):
        points = collector.wait_for(has_system_metrics)
    assert_system_metrics(points)


def test_agent_forwards_to_gateway(rotel: RotelFactory):
    gateway = rotel.start("gateway.env")
    agent = rotel.start(
        "agent.env",
        overrides={
            "ROTEL_OTLP_EXPORTER_ENDPOINT": gateway.grpc_endpoint,
            "ROTEL_BATCH_TIMEOUT": "200ms",
        },
    )
    exporter = BackgroundExporter(build_otlp_exporter(agent.grpc_endpoint, environ={}))
    with running_pipeline([exporter]):
        points = gateway.wait_for(has_system_metrics, timeout=20)
    assert_system_metrics(points)
    # The agent's site-wide attribute from agent.env was added on the way.
    assert all(p.resource.get("deployment.environment.name") == "production" for p in points)


class TimedExporter(MetricExporter):
    """Records when the pipeline handed it each tick (the stand-in for the stdout JSON writer)."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []

    def export(self, metrics_data, timeout_millis=10_000, **kwargs):
        self.times.append(time.monotonic())
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis=10_000):
        return True

    def shutdown(self, timeout_millis=30_000, **kwargs):
        pass


def test_collector_down_at_start_then_started_catches_up_without_stalling_the_cadence(rotel: RotelFactory):

    grpc_port, http_port = free_port(), free_port()
    otlp = BackgroundExporter(
        build_otlp_exporter(f"127.0.0.1:{grpc_port}", environ={"OTEL_EXPORTER_OTLP_TIMEOUT": "2"}),
        retry_initial=0.2,
        retry_max=1.0,
    )
    stdout = TimedExporter()
    with running_pipeline([stdout, otlp], vcpu_period=0.5, memory_period=0.5):
        time.sleep(3.0)
        assert otlp.exported == 0
        waiting = otlp.backlog
        assert waiting >= 3
        collector = rotel.start("gateway.env", grpc_port=grpc_port, http_port=http_port)
        deadline = time.monotonic() + 20
        while otlp.exported < waiting and time.monotonic() < deadline:
            time.sleep(0.2)
        assert otlp.exported >= waiting, "the backlog was not delivered after the collector came up"
        collector.wait_for(has_system_metrics)
    gaps = [b - a for a, b in zip(stdout.times, stdout.times[1:], strict=False)]
    assert len(stdout.times) >= 8
    assert max(gaps) < 0.75, f"the stdout cadence stalled: {max(gaps):.2f} s between reports"
    # Every tick produced while the collector was down reached it, in order (cumulative counters grow).
    switches = [p.value for p in collector.points() if p.name == "system.cpu.context_switches"]
    assert len(switches) >= waiting
    assert switches == sorted(switches)


@pytest.mark.parametrize("bad", ["1m", "-1"])
def test_a_bad_export_interval_is_a_one_line_error(bad, tmp_path):
    config = tmp_path / "monitor.conf"
    config.write_text('{"period": "1s", "system_metrics": [{"type": "memory_info"}]}')
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "otel_neuron",
            "-c",
            str(config),
            "--imds",
            "off",
            "--otlp",
            f"127.0.0.1:{free_port()}",
        ],
        env={**os.environ, "OTEL_METRIC_EXPORT_INTERVAL": bad},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    expected = f'OTEL_METRIC_EXPORT_INTERVAL: "{bad}" is not a number of milliseconds (like 60000)'
    assert result.stderr.strip().splitlines() == [f"otel-neuron-monitor: {expected}"]
