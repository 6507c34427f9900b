"""`--prometheus-names neuron-monitor` through the CLI: AWS's script's series from a bridged 2.x stream;
and its counters through the real pipeline.

A writer thread keeps feeding the fixture's reports (two applications, app_a and app_b) on stdin,
several per period, so every period of the monitor has both; then only app_a's. /metrics is read
after the report that follows the one of interest: the Prometheus exporter takes each period's data
right after the JSON report of that period is written.
"""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from monitor_cli import FIXTURES, clean_environment, monitor_command, write_config
from monitor_harness import FACTS
from opentelemetry.sdk.metrics.export import MetricExportResult
from peers import free_port, stop, wait_for_port
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from otel_neuron.config import parse_config
from otel_neuron.exporters.prometheus import PrometheusExporter
from otel_neuron.exporters.temporality import DELTA_PREFERRED, DeclaredTemporalityExporter
from otel_neuron.pipeline import MonitorPipeline, build_groups
from otel_neuron.report.v2 import report_v2_from_metrics
from otel_neuron.resource import build_resource

STREAM = FIXTURES / "neuron-monitor" / "v2.jsonl"
PERIOD_S = 0.5
# Upstream reports are written this often: several in every period of the monitor.
WRITE_EVERY_S = 0.05
# Longer than anything here takes, by far: reached only if the monitor stops reporting.
GENEROUS_S = 30.0
V2_RUNTIME_GROUPS = ("neuroncore_counters", "memory_used", "neuron_runtime_vcpu_usage", "execution_stats")
V2_SYSTEM_GROUPS = ("vcpu_usage", "memory_info", "neuron_hw_counters")
SIM_GROUPS = (
    "neuroncore_counters",
    "inference_stats",
    "memory_used",
    "neuron_runtime_vcpu_usage",
    "hw_counters",
)

Sample = tuple[str, dict[str, str], float]


class Upstream:
    """Writes the fixture's first report (app_a is pid 1234, app_b pid 2345) to the monitor's stdin
    until stopped, with the applications of `tags` only."""

    def __init__(self, stdin: Any) -> None:
        self._stdin = stdin
        self._report = json.loads(STREAM.read_text().splitlines()[0])
        self.tags = frozenset({"app_a", "app_b"})
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._write, daemon=True)
        self._thread.start()

    def _write(self) -> None:
        step = 0
        while not self._stop.wait(WRITE_EVERY_S):
            step += 1
            report = json.loads(json.dumps(self._report))
            report["neuron_runtime_data"] = [
                entry for entry in report["neuron_runtime_data"] if entry["neuron_runtime_tag"] in self.tags
            ]
            # A new period each time: the bridge counts a body equal to the last one only once.
            sections = [*report["system_data"].values()]
            sections += [
                group for entry in report["neuron_runtime_data"] for group in entry["report"].values()
            ]
            for section in sections:
                section["period"] = WRITE_EVERY_S + step * 1e-6
            try:
                self._stdin.write(json.dumps(report) + "\n")
                self._stdin.flush()
            except (BrokenPipeError, ValueError):  # the monitor is gone
                return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=GENEROUS_S)


class Monitor:
    """otel-neuron-monitor with neuron-monitor names on /metrics; stdin is a pipe."""

    def __init__(self, config: Path, *args: str) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            [
                *monitor_command(),
                "-c",
                str(config),
                *args,
                "--imds",
                "off",
                "--prometheus",
                f"127.0.0.1:{self.port}",
                "--prometheus-names",
                "neuron-monitor",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=clean_environment(),
        )
        self.reports: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.reports.put(json.loads(line))

    def next_report(self) -> dict[str, Any]:
        return self.reports.get(timeout=GENEROUS_S)

    def scrape(self) -> list[Sample]:
        url = f"http://127.0.0.1:{self.port}/metrics"
        text = urllib.request.urlopen(url, timeout=GENEROUS_S).read().decode()
        return [
            (sample.name, sample.labels, sample.value)
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        ]


def tags_of(report: dict[str, Any]) -> list[str]:
    return [entry["neuron_runtime_tag"] for entry in report["neuron_runtime_data"]]


def with_labels(samples: list[Sample], name: str, **labels: str) -> list[Sample]:
    return [s for s in samples if s[0] == name and labels.items() <= s[1].items()]


@contextmanager
def bridged(directory: Path, *args: str) -> Iterator[tuple[Monitor, Upstream]]:
    """The monitor reading the upstream stream from stdin, with neuron-monitor 2.x's example config
    (its user guide's: one tag_filter for every application)."""
    config = write_config(
        directory,
        {
            "period": f"{int(PERIOD_S * 1000)}ms",
            "neuron_runtimes": [{"tag_filter": ".*", "metrics": [{"type": g} for g in V2_RUNTIME_GROUPS]}],
            "system_metrics": [{"type": g} for g in V2_SYSTEM_GROUPS],
        },
    )
    monitor = Monitor(config, "--from-stdin", *args)
    assert monitor.process.stdin is not None
    upstream = Upstream(monitor.process.stdin)
    try:
        wait_for_port(monitor.port, monitor.process)
        yield monitor, upstream
    finally:
        upstream.stop()
        stop(monitor.process)
    stderr = monitor.process.stderr.read() if monitor.process.stderr else ""
    assert "Traceback" not in stderr, stderr


def scrape_when(monitor: Monitor, ready: Callable[[list[Sample]], bool]) -> list[Sample]:
    """The first /metrics, read after each report, that `ready` accepts."""
    for _ in range(40):
        monitor.next_report()
        samples = monitor.scrape()
        if ready(samples):
            return samples
    raise AssertionError("/metrics never had what was waited for")


def both_applications_reported(monitor: Monitor) -> dict[str, Any]:
    """The first report with app_a and app_b and all their groups error-free, after one more report
    (so /metrics has taken it)."""
    for _ in range(40):
        report = monitor.next_report()
        entries = report["neuron_runtime_data"]
        if tags_of(report) == ["app_a", "app_b"] and all(
            entry["error"] == "" and all(group["error"] == "" for group in entry["report"].values())
            for entry in entries
        ):
            monitor.next_report()
            return report
    raise AssertionError("no report with both applications")


def both_applications_scraped(samples: list[Sample]) -> bool:
    return all(
        with_labels(samples, family, runtime_tag=tag)
        for family in (
            "neuroncore_utilization_ratio",
            "execution_latency_seconds",
            "neuroncore_memory_usage_tensors",
        )
        for tag in ("app_a", "app_b")
    ) and bool(with_labels(samples, "neuron_hardware_info"))


def test_the_scripts_series_with_each_applications_tag(tmp_path: Path) -> None:
    # The JSON report in its default (1.x) format: the Prometheus names need no 2.x output.
    with bridged(tmp_path) as (monitor, _):
        samples = scrape_when(monitor, both_applications_scraped)
    upstream = json.loads(STREAM.read_text().splitlines()[0])
    for application in upstream["neuron_runtime_data"]:
        # runtime_tag is the application's neuron_runtime_tag, with its own NeuronCores.
        tag, body = application["neuron_runtime_tag"], application["report"]
        cores = body["neuroncore_counters"]["neuroncores_in_use"]
        utilization = with_labels(samples, "neuroncore_utilization_ratio", runtime_tag=tag)
        assert {labels["neuroncore"]: value for _, labels, value in utilization} == {
            core: data["neuroncore_utilization"] / 100 for core, data in cores.items()
        }
        breakdown = body["memory_used"]["neuron_runtime_used_bytes"]["usage_breakdown"]
        for category in ("constants", "model_code", "model_shared_scratchpad", "runtime_memory", "tensors"):
            memory = with_labels(samples, f"neuroncore_memory_usage_{category}", runtime_tag=tag)
            assert {labels["neuroncore"]: value for _, labels, value in memory} == {
                core: by_category[category]
                for core, by_category in breakdown["neuroncore_memory_usage"].items()
            }
            assert {labels["memory_location"] for _, labels, _ in memory} == {"None"}
        stats = body["execution_stats"]
        errors = with_labels(samples, "execution_errors_total", runtime_tag=tag)
        assert {labels["error_type"] for _, labels, _ in errors} == set(stats["error_summary"])
        (model,) = [value for _, labels, value in errors if labels["error_type"] == "model"]
        assert model >= stats["error_summary"]["model"] > 0
        statuses = with_labels(samples, "execution_status_total", runtime_tag=tag)
        assert {labels["status_type"] for _, labels, _ in statuses} == set(stats["execution_summary"])
        # The percentiles upstream gave, and only those.
        latency = with_labels(samples, "execution_latency_seconds", runtime_tag=tag)
        assert {labels["percentile"] for _, labels, _ in latency} == set(
            stats["latency_stats"]["total_latency"]
        )
    # All four ECC kinds of every device, sram_ecc_corrected counted; no runtime_tag, as in the script.
    ecc = with_labels(samples, "hardware_ecc_events_total")
    devices = upstream["system_data"]["neuron_hw_counters"]["neuron_devices"]
    assert {(labels["neuron_device_index"], labels["event_type"]) for _, labels, _ in ecc} == {
        (str(device["neuron_device_index"]), kind)
        for device in devices
        for kind in ("mem_ecc_corrected", "mem_ecc_uncorrected", "sram_ecc_corrected", "sram_ecc_uncorrected")
    }
    assert all("runtime_tag" not in labels for _, labels, _ in ecc)
    assert sum(value for _, labels, value in ecc if labels["event_type"] == "sram_ecc_corrected") > 0
    hardware = upstream["neuron_hardware_info"]
    (info,) = [labels for _, labels, _ in with_labels(samples, "neuron_hardware_info")]
    for field in ("neuron_device_count", "neuroncore_per_device_count", "neuron_device_memory_size"):
        assert info[field] == str(hardware[field])
    assert len(with_labels(samples, "instance_info")) == 1


def test_an_application_that_leaves_loses_its_series_within_two_periods(tmp_path: Path) -> None:
    with bridged(tmp_path, "--output-format", "2") as (monitor, upstream):
        both_applications_reported(monitor)
        assert with_labels(monitor.scrape(), "execution_errors_total", runtime_tag="app_b")
        upstream.tags = frozenset({"app_a"})
        # The period under way may still hold app_b; the next one cannot (one more report for a
        # report already in the pipe when the writer switched).
        after = [tags_of(monitor.next_report()) for _ in range(3)]
        gone_at = next((i for i, tags in enumerate(after) if "app_b" not in tags), None)
        assert gone_at is not None and gone_at <= 2, after
        monitor.next_report()  # /metrics has taken the report without app_b
        samples = monitor.scrape()
        assert not [s for s in samples if s[1].get("runtime_tag") == "app_b"], "app_b's series stayed"
        assert with_labels(samples, "neuroncore_utilization_ratio", runtime_tag="app_a")
        assert with_labels(samples, "execution_errors_total", runtime_tag="app_a", error_type="model")


def test_sim_runtime_exports_the_scripts_families(tmp_path: Path) -> None:
    groups = [{"type": group} for group in SIM_GROUPS]
    config = write_config(
        tmp_path,
        {
            "period": f"{int(PERIOD_S * 1000)}ms",
            "neuron_runtimes": [{"address": "sim:?seed=3", "metrics": groups}],
            "system_metrics": [{"type": "vcpu_usage"}, {"type": "memory_info"}],
        },
    )
    monitor = Monitor(config, "--output-format", "2")
    try:
        wait_for_port(monitor.port, monitor.process)
        for _ in range(3):
            monitor.next_report()
        report = monitor.next_report()
        samples = monitor.scrape()
    finally:
        stop(monitor.process)
    assert "Traceback" not in (monitor.process.stderr.read() if monitor.process.stderr else "")
    (tag,) = tags_of(report)
    names = {name for name, _, _ in samples}
    assert {
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
        "instance_info",
    } <= names
    assert {labels["runtime_tag"] for _, labels, _ in with_labels(samples, "execution_status_total")} == {tag}
    # Every error type and ECC kind the 2.x report has, with the script's labels.
    errors = {labels["error_type"] for _, labels, _ in with_labels(samples, "execution_errors_total")}
    assert errors == set(report["neuron_runtime_data"][0]["report"]["execution_stats"]["error_summary"])
    devices = report["system_data"]["neuron_hw_counters"]["neuron_devices"]
    ecc = {
        (labels["neuron_device_index"], labels["event_type"])
        for _, labels, _ in with_labels(samples, "hardware_ecc_events_total")
    }
    assert ecc == {
        (str(d["neuron_device_index"]), kind) for d in devices for kind in d if kind != "neuron_device_index"
    }


# --- counters through the real pipeline: a section the standing report carries over counts once


class FreshSections(DeclaredTemporalityExporter):
    """Records the 2.x rendering of each period's own data: only the groups collected then."""

    def __init__(self) -> None:
        super().__init__(preferred_temporality=DELTA_PREFERRED)
        self.reports: list[dict[str, Any]] = []

    def export(self, metrics_data: Any, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        self.reports.append(report_v2_from_metrics(metrics_data))
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        return None


def test_counters_count_each_period_once_when_groups_have_different_periods() -> None:
    config = parse_config(
        json.dumps(
            {
                "period": "400ms",
                "neuron_runtimes": [
                    {
                        "address": "sim:?seed=5",
                        "metrics": [
                            {"type": "neuroncore_counters", "period": "100ms"},
                            {"type": "inference_stats"},
                        ],
                    }
                ],
                "system_metrics": [],
            }
        )
    )
    fresh = FreshSections()
    compat = PrometheusExporter(listen=None, names="neuron-monitor")
    pipeline = MonitorPipeline(build_groups(config), [fresh, compat], build_resource(FACTS))
    try:
        pipeline.run(threading.Event(), max_reports=20)
    finally:
        pipeline.shutdown()
    # The application of the last period (the first may be the runtime's, before its pid is known).
    live_tag = fresh.reports[-1]["neuron_runtime_data"][0]["neuron_runtime_tag"]
    expected: dict[str, float] = {}
    carried_over = 0
    for document in fresh.reports:
        entries = {entry["neuron_runtime_tag"]: entry for entry in document["neuron_runtime_data"]}
        if entries and live_tag not in entries:
            expected = {}  # it left this period (a slow answer): its counters start again
        stats = entries[live_tag]["report"].get("execution_stats") if live_tag in entries else None
        if live_tag in entries and stats is None:
            carried_over += 1  # not due: the standing 2.x report carries the last one over
        for outcome, count in (stats or {}).get("execution_summary", {}).items():
            expected[outcome] = expected.get(outcome, 0.0) + count
    assert carried_over > 0 and expected["completed"] > 0, (carried_over, expected)
    served = {
        labels["status_type"]: value
        for family in text_string_to_metric_families(generate_latest(compat.registry).decode())
        for name, labels, value, *_ in family.samples
        if name == "execution_status_total" and labels["runtime_tag"] == live_tag
    }
    assert served == expected
