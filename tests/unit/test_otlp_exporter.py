"""BackgroundExporter keeps the caller fast and the backlog bounded; protocol, endpoint and temporality."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    MetricExporter,
    MetricExportResult,
    MetricsData,
)
from opentelemetry.sdk.resources import Resource

from otel_neuron.exporters.otlp import (
    BackgroundExporter,
    build_otlp_exporter,
    normalize_endpoint,
    otlp_protocol,
    otlp_requested,
)
from otel_neuron.groups.base import InstrumentSpec, Kind, MetricGroup, PointsByMetric
from otel_neuron.pipeline import MonitorPipeline, ScheduledGroup

EVENTS = InstrumentSpec("test.events", "{event}", "a counter", Kind.COUNTER)


class FakeExporter(MetricExporter):
    """Succeeds only while `up` is set; with `hang`, each call waits until `release` is set (a
    collector that does not answer), saying in `entered` that it has begun."""

    def __init__(self, up: bool = True, hang: bool = False) -> None:
        super().__init__()
        self.up = threading.Event()
        if up:
            self.up.set()
        self.entered = threading.Event()
        self.release = threading.Event()
        if not hang:
            self.release.set()
        self.received: list[MetricsData] = []
        self.shut = False

    def export(self, metrics_data, timeout_millis=10_000, **kwargs):
        self.entered.set()
        self.release.wait()
        if not self.up.is_set():
            return MetricExportResult.FAILURE
        self.received.append(metrics_data)
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis=10_000):
        return True

    def shutdown(self, timeout_millis=30_000, **kwargs):
        self.shut = True


def batch(n: int) -> MetricsData:
    return MetricsData(resource_metrics=[]), n  # type: ignore[return-value]


def test_export_returns_at_once_while_the_collector_hangs():
    inner = FakeExporter(hang=True)
    exporter = BackgroundExporter(inner)
    assert exporter.export(batch(0)) is MetricExportResult.SUCCESS
    assert inner.entered.wait(10)  # the first batch is on its way and stuck there
    for index in range(1, 20):  # the caller is never held by it
        assert exporter.export(batch(index)) is MetricExportResult.SUCCESS
    assert not inner.received
    inner.release.set()
    exporter.shutdown(timeout_millis=2000)
    assert [item[1] for item in inner.received][:1] == [0]


def test_backlog_is_bounded_drops_oldest_and_catches_up_in_order():
    inner = FakeExporter(up=False)
    exporter = BackgroundExporter(inner, max_backlog=5, retry_initial=0.05, retry_max=0.1)
    for index in range(12):
        exporter.export(batch(index))
    assert exporter.dropped >= 6
    assert exporter.backlog <= 5
    inner.up.set()
    assert exporter.force_flush(timeout_millis=3000)
    delivered = [item[1] for item in inner.received]
    assert delivered == sorted(delivered)
    assert delivered[-1] == 11
    assert len(delivered) <= 6
    exporter.shutdown(timeout_millis=500)
    assert inner.shut


def test_shutdown_returns_when_the_collector_never_answers():
    inner = FakeExporter(up=False, hang=True)
    exporter = BackgroundExporter(inner, retry_initial=5.0)
    exporter.export(batch(0))
    assert inner.entered.wait(10)
    closing = threading.Thread(target=exporter.shutdown, kwargs={"timeout_millis": 600})
    closing.start()
    closing.join(30)  # far past its deadline: a shutdown that waited for the collector would not return
    try:
        assert not closing.is_alive()
        assert exporter.export(batch(1)) is MetricExportResult.FAILURE
    finally:
        inner.release.set()


class CountingGroup(MetricGroup):
    """Five events a period."""

    report_key = "counting"
    instruments = (EVENTS,)

    def _sample_points(self, period: float) -> PointsByMetric:
        return {EVENTS.name: [({}, 5)]}


def events_sent(preference: str | None, monkeypatch: pytest.MonkeyPatch) -> list[tuple[object, object]]:
    """(value, temporality) of the events counter in each of three ticks sent through OTLP."""
    if preference is None:
        monkeypatch.delenv("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", raising=False)
    else:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", preference)
    inner = FakeExporter()
    exporter = BackgroundExporter(inner)
    pipeline = MonitorPipeline([ScheduledGroup(CountingGroup(), 1.0)], [exporter], Resource.get_empty())
    try:
        for _ in range(3):
            pipeline.tick([1.0])
        assert exporter.force_flush(timeout_millis=2000)
    finally:
        pipeline.shutdown()
    sent = []
    for data in inner.received:
        (metric,) = [
            metric
            for resource_metrics in data.resource_metrics
            for scope_metrics in resource_metrics.scope_metrics
            for metric in scope_metrics.metrics
            if metric.name == EVENTS.name
        ]
        sent.append((metric.data.data_points[0].value, metric.data.aggregation_temporality))
    return sent


@pytest.mark.parametrize("preference", ["delta", "DELTA", "lowmemory"])
def test_otlp_gets_per_period_counts_when_the_environment_prefers_delta(preference, monkeypatch):
    assert events_sent(preference, monkeypatch) == [(5, AggregationTemporality.DELTA)] * 3


@pytest.mark.parametrize("preference", [None, "cumulative", "neither"])
def test_otlp_gets_running_totals_by_default(preference, monkeypatch):
    cumulative = AggregationTemporality.CUMULATIVE
    assert events_sent(preference, monkeypatch) == [(5, cumulative), (10, cumulative), (15, cumulative)]


def test_protocol_selection():
    assert otlp_protocol({}) == "grpc"
    assert otlp_protocol({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}) == "http/protobuf"
    env = {"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "grpc"}
    assert otlp_protocol(env) == "grpc"
    with pytest.raises(ValueError, match="http/json"):
        otlp_protocol({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"})


def test_exporter_class_follows_protocol():
    grpc = build_otlp_exporter(None, environ={})
    http = build_otlp_exporter("127.0.0.1:4318", environ={"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"})
    assert "grpc" in type(grpc).__module__
    assert "http" in type(http).__module__


def test_http_protobuf_posts_to_the_signal_path_when_the_endpoint_has_none():
    paths: list[str] = []

    class Collector(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the name http.server calls
            self.rfile.read(int(self.headers["Content-Length"]))
            paths.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        environ = {"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}
        exporter = build_otlp_exporter(f"127.0.0.1:{server.server_address[1]}", environ=environ)
        pipeline = MonitorPipeline([ScheduledGroup(CountingGroup(), 1.0)], [exporter], Resource.get_empty())
        try:
            pipeline.tick([1.0])
        finally:
            pipeline.shutdown()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    assert paths == ["/v1/metrics"]


def test_otlp_requested_by_flag_or_environment():
    assert otlp_requested(True, {})
    assert otlp_requested(False, {"OTEL_METRICS_EXPORTER": "console, otlp"})
    assert not otlp_requested(False, {"OTEL_METRICS_EXPORTER": "none"})


@pytest.mark.parametrize(
    ("given", "protocol", "expected"),
    [
        ("127.0.0.1:4317", "grpc", "http://127.0.0.1:4317"),
        ("https://collector:4317", "grpc", "https://collector:4317"),
        ("collector:4318", "http/protobuf", "http://collector:4318/v1/metrics"),
        ("http://c:4318/custom", "http/protobuf", "http://c:4318/custom"),
    ],
)
def test_normalize_endpoint(given, protocol, expected):
    assert normalize_endpoint(given, protocol) == expected


@pytest.mark.parametrize("bad", ["", "ftp://x:1", "http://:4317", "host:99999"])
def test_bad_endpoint_is_one_clear_error(bad):
    with pytest.raises(ValueError, match="--otlp"):
        normalize_endpoint(bad, "grpc")
