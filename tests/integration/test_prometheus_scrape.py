"""A real Prometheus scrapes otel-neuron in both naming modes; PromQL agrees with the JSON report."""

from __future__ import annotations

import io
import json
import threading

import pytest
from monitor_harness import FACTS
from peers import Prometheus

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
