"""A real Prometheus scrapes otel-neuron in both naming modes; PromQL agrees with the JSON report.

And the CLI's /metrics holds under load: many concurrent scrapers, idle and slow clients."""

from __future__ import annotations

import http.client
import io
import json
import socket
import threading
from pathlib import Path

import pytest
from monitor_cli import start_monitor
from monitor_harness import FACTS
from peers import Prometheus, free_port, stop, wait_for_port

from otel_neuron.exporters.prometheus import PrometheusExporter
from otel_neuron.exporters.report_json import ReportJsonExporter
from otel_neuron.groups.system import MemoryInfoGroup, VcpuUsageGroup
from otel_neuron.pipeline import MonitorPipeline, ScheduledGroup
from otel_neuron.resource import build_resource


def one(prometheus: Prometheus, promql: str) -> float:
    result = prometheus.wait_for(promql)
    assert len(result) == 1, (promql, result)
    return float(result[0]["value"][1])


@pytest.fixture
def scraped(prometheus: Prometheus):
    """Runs 4 ticks, then freezes: the scrape endpoints keep serving the last tick's values."""
    out = io.StringIO()
    report_exporter = ReportJsonExporter(runtime_count=0, out=out)
    otel = PrometheusExporter(listen=("127.0.0.1", 0), names="otel")
    compat = PrometheusExporter(listen=("127.0.0.1", 0), names="neuron-monitor")
    groups = [ScheduledGroup(VcpuUsageGroup(), 0.25), ScheduledGroup(MemoryInfoGroup(), 0.5)]
    pipeline = MonitorPipeline(groups, [report_exporter, otel, compat], build_resource(FACTS))
    pipeline.run(threading.Event(), max_reports=4)
    ticks = pipeline.stats.ticks
    prometheus.start({"otel": f"127.0.0.1:{otel.address[1]}", "compat": f"127.0.0.1:{compat.address[1]}"})
    try:
        report = json.loads(out.getvalue().splitlines()[-1])
        yield prometheus, report
        assert pipeline.stats.ticks == ticks, "a scrape triggered a collection"
    finally:
        otel.shutdown()
        compat.shutdown()
        pipeline.shutdown()


def test_neuron_monitor_names_match_the_report(scraped):
    prometheus, report = scraped
    memory = report["system_data"]["memory_info"]
    vcpu = report["system_data"]["vcpu_usage"]
    job = '{job="compat"}'
    assert one(prometheus, f"system_memory_total_bytes{job}") == memory["memory_total_bytes"]
    assert one(prometheus, f"system_memory_used_bytes{job}") == memory["memory_used_bytes"]
    assert one(prometheus, f"system_swap_total_bytes{job}") == memory["swap_total_bytes"]
    assert one(prometheus, f"system_swap_used_bytes{job}") == memory["swap_used_bytes"]
    assert one(prometheus, f"system_vcpu_count{job}") == len(vcpu["usage_data"])
    average = vcpu["average_usage"]
    user = one(prometheus, 'system_vcpu_usage_ratio{job="compat",usage_type="user"}')
    system = one(prometheus, 'system_vcpu_usage_ratio{job="compat",usage_type="system"}')
    assert user == pytest.approx(min(average["user"] + average["nice"], 100) / 100, abs=1e-9)
    expected_system = sum(average[m] for m in ("system", "io_wait", "irq", "soft_irq"))
    assert system == pytest.approx(min(expected_system, 100) / 100, abs=1e-9)
    info = prometheus.wait_for('instance_info{job="compat"}')[0]["metric"]
    assert info["instance_id"] == FACTS.instance_id
    assert info["availability_zone"] == FACTS.instance_availability_zone
    assert info["region"] == FACTS.instance_region
    assert info["subnet_id"] == FACTS.subnet_id
    assert info["instance_type"] == FACTS.instance_type
    assert info["instance_name"] == FACTS.instance_name


def test_opentelemetry_names_match_the_report(scraped):
    prometheus, report = scraped
    memory = report["system_data"]["memory_info"]
    vcpu = report["system_data"]["vcpu_usage"]
    used = one(prometheus, 'system_memory_usage_bytes{job="otel",system_memory_state="used"}')
    assert used == memory["memory_used_bytes"]
    assert one(prometheus, 'system_memory_limit_bytes{job="otel"}') == memory["memory_total_bytes"]
    for cpu, modes in vcpu["usage_data"].items():
        for guide_mode, semconv_mode in (("user", "user"), ("system", "system"), ("idle", "idle")):
            promql = (
                f'system_cpu_utilization{{job="otel",cpu_logical_number="{cpu}",cpu_mode="{semconv_mode}"}}'
            )
            assert round(one(prometheus, promql) * 100, 2) == modes[guide_mode]
    mean_idle = one(prometheus, 'avg(system_cpu_utilization{job="otel",cpu_mode="idle"})')
    assert mean_idle * 100 == pytest.approx(vcpu["average_usage"]["idle"], abs=0.01)
    period = one(
        prometheus, 'neuron_monitor_group_period_seconds{job="otel",neuron_monitor_group="vcpu_usage"}'
    )
    assert period == pytest.approx(vcpu["period"], abs=1e-6)
    target = prometheus.wait_for('target_info{job="otel"}')[0]["metric"]
    assert target["host_id"] == FACTS.instance_id
    assert target["service_name"] == "otel-neuron-monitor"


# ---------------------------------------------------------------------------------------------
# Under load: the CLI's /metrics with 50 concurrent scrapers, an idle connection and a slow client

SCRAPERS = 50
SCRAPES_EACH = 20
# As long as Prometheus waits for a scrape by default (scrape_timeout: 10s).
SCRAPE_TIMEOUT_S = 10.0
# Longer than the server's deadline for a client to send its request, by far.
IDLE_WAIT_S = 30.0


def scrape(port: int) -> tuple[int, str, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=SCRAPE_TIMEOUT_S)
    try:
        connection.request("GET", "/metrics")
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type") or "", response.read()
    finally:
        connection.close()


def storm(port: int) -> list[str]:
    """Every scrape's failure, as text; SCRAPERS threads scrape SCRAPES_EACH times each at once."""
    failures: list[str] = []
    start = threading.Barrier(SCRAPERS)

    def scraper() -> None:
        start.wait()
        for _ in range(SCRAPES_EACH):
            try:
                status, content_type, body = scrape(port)
            except OSError as error:
                failures.append(repr(error))
                continue
            if status != 200 or not content_type.startswith("text/plain") or b"target_info" not in body:
                failures.append(f"{status} {content_type} {body[:80]!r}")

    threads = [threading.Thread(target=scraper) for _ in range(SCRAPERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return failures


def test_fifty_concurrent_scrapers_all_succeed_beside_idle_and_slow_clients(tmp_path: Path) -> None:
    config = tmp_path / "monitor.conf"
    config.write_text(
        json.dumps(
            {
                "period": "1s",
                "neuron_runtimes": [{"address": "sim:?seed=1", "metrics": [{"type": "neuroncore_counters"}]}],
                "system_metrics": [{"type": "vcpu_usage"}, {"type": "memory_info"}],
            }
        )
    )
    port = free_port()
    process = start_monitor(["--imds", "off", "-c", str(config), "--prometheus", f"127.0.0.1:{port}"])
    try:
        assert process.stdout is not None
        assert process.stdout.readline(), "no report"  # the first export is done: /metrics has data
        wait_for_port(port, process)
        idle = socket.create_connection(("127.0.0.1", port))
        slow = socket.create_connection(("127.0.0.1", port))
        slow.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and never the end of its headers
        try:
            assert storm(port) == []
            idle.settimeout(IDLE_WAIT_S)
            slow.settimeout(IDLE_WAIT_S)
            assert idle.recv(1) == b"", "the server answered a connection that asked nothing"
            assert slow.recv(1) == b"", "the server answered a request that never ended"
        finally:
            idle.close()
            slow.close()
        assert process.poll() is None
    finally:
        stop(process)
    assert "Traceback" not in (process.stderr.read() if process.stderr else "")
