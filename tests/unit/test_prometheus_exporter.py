"""Prometheus exporter: scrapes serve the latest exported data, in both naming modes, with the bytes
the exporter answered before it rendered once per collection (tests/fixtures/prometheus)."""

from __future__ import annotations

import gzip
import http.client
import json
import socket
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from metrics_json import load_exports
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Buckets,
    ExponentialHistogram,
    ExponentialHistogramDataPoint,
    Gauge,
    Metric,
    MetricsData,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from prometheus_client import generate_latest
from prometheus_client.exposition import choose_encoder
from prometheus_client.parser import text_string_to_metric_families

from otel_neuron.exporters.prometheus import (
    SERVED_BOUNDS,
    PrometheusExporter,
    explicit_histogram_point,
    parse_listen_address,
)
from otel_neuron.exporters.scrape_server import MAX_REQUEST_HEAD, WORKERS

FIXTURES = Path(__file__).parent.parent / "fixtures" / "reports"
# A neuron-monitor 2.x report, what the neuron-monitor names are read from (test_neuron_monitor_names.py).
V2_REPORT = json.loads((FIXTURES / "v2-report.json").read_text())
GOLDEN = Path(__file__).parent.parent / "fixtures" / "prometheus"
SCOPE = InstrumentationScope("otel_neuron", "0.1.0")
RESOURCE = Resource({"service.name": "otel-neuron-monitor", "host.id": "i-0011223344556677a"})


def samples(exporter: PrometheusExporter) -> dict[tuple[str, frozenset], float]:
    text = generate_latest(exporter.registry).decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value_of(found: dict, name: str, **labels: str) -> float:
    matches = [v for (n, lab), v in found.items() if n == name and set(labels.items()) <= lab]
    assert len(matches) == 1, (name, labels, matches)
    return matches[0]


def gauge_data(name: str, unit: str, points: list[tuple[dict, float]], time_ns: int = 1) -> MetricsData:
    metric = Metric(
        name, "", unit, Gauge([NumberDataPoint(attrs, 0, time_ns, value) for attrs, value in points])
    )
    return MetricsData([ResourceMetrics(RESOURCE, [ScopeMetrics(SCOPE, [metric], "")], "")])


def test_otel_names_serve_the_latest_points_and_target_info():
    exporter = PrometheusExporter(listen=None)
    exporter.export(
        gauge_data("system.cpu.utilization", "1", [({"cpu.mode": "user", "cpu.logical_number": 0}, 0.25)])
    )
    exporter.export(gauge_data("system.memory.usage", "By", [({"system.memory.state": "used"}, 1024)]))
    exporter.export(
        gauge_data("system.cpu.utilization", "1", [({"cpu.mode": "user", "cpu.logical_number": 0}, 0.5)])
    )
    found = samples(exporter)
    assert value_of(found, "system_cpu_utilization", cpu_mode="user", cpu_logical_number="0") == 0.5
    assert value_of(found, "system_memory_usage_bytes", system_memory_state="used") == 1024
    assert (
        value_of(found, "target_info", service_name="otel-neuron-monitor", host_id="i-0011223344556677a") == 1
    )


def test_a_new_sample_of_a_runtime_replaces_its_series_but_not_other_runtimes():
    exporter = PrometheusExporter(listen=None)
    name = "neuron.core.utilization"
    runtime0 = {"neuron.runtime.index": 0}
    runtime1 = {"neuron.runtime.index": 1}
    exporter.export(
        gauge_data(
            name,
            "1",
            [({**runtime0, "neuron.core.index": 0}, 0.1), ({**runtime0, "neuron.core.index": 1}, 0.2)],
        )
    )
    exporter.export(gauge_data(name, "1", [({**runtime1, "neuron.core.index": 0}, 0.3)]))
    exporter.export(gauge_data(name, "1", [({**runtime0, "neuron.core.index": 1}, 0.4)]))
    found = samples(exporter)
    series = {
        (dict(lab)["neuron_runtime_index"], dict(lab)["neuron_core_index"]): v
        for (n, lab), v in found.items()
        if n == "neuron_core_utilization"
    }
    assert series == {("0", "1"): 0.4, ("1", "0"): 0.3}


def test_scrapes_never_sample_and_an_empty_cache_serves_nothing():
    calls = []
    exporter = PrometheusExporter(
        listen=None, names="neuron-monitor", report_builder=lambda m: calls.append(m) or {}
    )
    generate_latest(exporter.registry)
    generate_latest(exporter.registry)
    assert calls == []
    assert samples(PrometheusExporter(listen=None)) == {}


def test_exponential_histograms_become_explicit_buckets():
    point = ExponentialHistogramDataPoint(
        attributes={},
        start_time_unix_nano=0,
        time_unix_nano=1,
        count=6,
        sum=9.0,
        scale=0,
        zero_count=1,
        positive=Buckets(0, [2, 3]),
        negative=Buckets(0, []),
        flags=0,
        min=0.0,
        max=4.0,
    )
    explicit = explicit_histogram_point(point)
    assert explicit.explicit_bounds == SERVED_BOUNDS
    counts = dict(zip([*SERVED_BOUNDS, "+Inf"], explicit.bucket_counts))
    # scale 0: bucket 0 is (1, 2], bucket 1 is (2, 4]
    assert counts == {**dict.fromkeys([*SERVED_BOUNDS, "+Inf"], 0), 0.0: 1, 2.0: 2, 4.0: 3}
    exporter = PrometheusExporter(listen=None)
    metric = Metric(
        "neuron.execution.latency", "", "s", ExponentialHistogram([point], AggregationTemporality.CUMULATIVE)
    )
    exporter.export(MetricsData([ResourceMetrics(RESOURCE, [ScopeMetrics(SCOPE, [metric], "")], "")]))
    found = samples(exporter)
    assert value_of(found, "neuron_execution_latency_seconds_bucket", le="4.0") == 6
    assert value_of(found, "neuron_execution_latency_seconds_count") == 6


def test_scale_6_buckets_land_in_the_power_of_two_bucket_of_their_upper_bound():
    # Values 0.003 (in (2^-9, 2^-8]), 0.0049 and 0.005 (both in (2^-8, 2^-7]), 20 s (above 2^4).
    indexes = {0.003: -537, 0.0049: -492, 0.005: -490, 20.0: 276}
    for value, index in indexes.items():
        assert 2 ** (index / 64) < value <= 2 ** ((index + 1) / 64)
    offset = min(indexes.values())
    buckets = [0] * (max(indexes.values()) - offset + 1)
    for index in indexes.values():
        buckets[index - offset] += 1
    point = ExponentialHistogramDataPoint(
        attributes={},
        start_time_unix_nano=0,
        time_unix_nano=1,
        count=4,
        sum=20.0129,
        scale=6,
        zero_count=0,
        positive=Buckets(offset, buckets),
        negative=Buckets(0, []),
        flags=0,
        min=0.003,
        max=20.0,
    )
    counts = dict(zip([*SERVED_BOUNDS, "+Inf"], explicit_histogram_point(point).bucket_counts))
    assert {bound: count for bound, count in counts.items() if count} == {2.0**-8: 1, 2.0**-7: 2, "+Inf": 1}


def test_served_over_http_on_an_ephemeral_port():
    exporter = PrometheusExporter(listen=("127.0.0.1", 0), names="neuron-monitor", report_builder=lambda r: r)
    try:
        exporter.export(V2_REPORT)  # type: ignore[arg-type]
        host, port = exporter.address
        body = urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5).read().decode()
        assert "neuroncore_utilization_ratio{" in body
    finally:
        exporter.shutdown()


@pytest.mark.parametrize(
    ("text", "mode", "expected"),
    [
        (None, "otel", ("127.0.0.1", 9464)),
        (None, "neuron-monitor", ("127.0.0.1", 8000)),
        ("9100", "otel", ("127.0.0.1", 9100)),
        ("0.0.0.0:9100", "otel", ("0.0.0.0", 9100)),
        ("[::1]:9100", "otel", ("::1", 9100)),
        (":9100", "otel", ("127.0.0.1", 9100)),
    ],
)
def test_parse_listen_address(text, mode, expected):
    assert parse_listen_address(text, mode) == expected


@pytest.mark.parametrize("bad", ["x", "host:", "70000", "[::1]9100"])
def test_parse_listen_address_rejects(bad):
    with pytest.raises(ValueError, match="--prometheus"):
        parse_listen_address(bad)


# ---------------------------------------------------------------------------------------------
# The HTTP server: answers as prometheus_client's would, bounded threads, no client holds it

CLIENT_TIMEOUT_S = 0.2
# Far longer than any deadline of the server: reached only if the server never acts.
GENEROUS_S = 30.0


@pytest.fixture
def served() -> Iterator[PrometheusExporter]:
    exporter = PrometheusExporter(
        listen=("127.0.0.1", 0),
        names="neuron-monitor",
        report_builder=lambda r: r,
        client_timeout=CLIENT_TIMEOUT_S,
    )
    exporter.export(V2_REPORT)  # type: ignore[arg-type]
    try:
        yield exporter
    finally:
        exporter.shutdown()


def get(
    exporter: PrometheusExporter, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    assert exporter.address is not None
    connection = http.client.HTTPConnection(*exporter.address, timeout=GENEROUS_S)
    try:
        connection.request("GET", "/metrics", headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def connect(exporter: PrometheusExporter) -> socket.socket:
    assert exporter.address is not None
    return socket.create_connection(exporter.address, timeout=GENEROUS_S)


@pytest.mark.parametrize(
    "accept",
    [
        None,
        "application/openmetrics-text; version=1.0.0",
        "text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2",
    ],
)
def test_scrapes_answer_what_prometheus_client_renders(served, accept):
    encoder, content_type = choose_encoder(accept)
    status, headers, body = get(served, {"Accept": accept} if accept else {})
    assert (status, headers["Content-Type"], body) == (200, content_type, encoder(served.registry))
    status, headers, body = get(served, {"Accept-Encoding": "gzip"})
    assert headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(body) == generate_latest(served.registry)


def test_an_idle_connection_is_closed_by_the_server(served):
    with connect(served) as idle:
        assert idle.recv(1) == b""  # closed, not answered
    assert get(served)[0] == 200


def test_slow_clients_do_not_keep_others_from_scraping(served):
    slow = [connect(served) for _ in range(2 * WORKERS)]
    try:
        for client in slow:
            client.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
        for _ in range(3):
            assert get(served)[0] == 200
        for client in slow:
            assert client.recv(1) == b""
    finally:
        for client in slow:
            client.close()


def test_a_request_head_longer_than_any_scrapers_is_cut_off(served):
    with connect(served) as client:
        client.sendall(b"GET /metrics HTTP/1.1\r\n" + b"X-Padding: " + b"x" * MAX_REQUEST_HEAD)
        try:
            assert client.recv(1) == b""
        except ConnectionResetError:  # closed with our bytes unread
            pass
    assert get(served)[0] == 200


def test_idle_connections_take_no_more_than_the_workers_threads():
    before = threading.active_count()
    exporter = PrometheusExporter(listen=("127.0.0.1", 0), client_timeout=CLIENT_TIMEOUT_S)
    idle = [connect(exporter) for _ in range(3 * WORKERS)]
    try:
        # Accepted in order: when this scrape is answered, every idle connection has been taken.
        assert get(exporter)[0] == 200
        assert threading.active_count() <= before + WORKERS + 2  # the workers, accept loop, waiting room
    finally:
        for client in idle:
            client.close()
        exporter.shutdown()


def test_shutdown_hangs_up_on_clients_still_connected():
    # The clients' deadline is far off: only shutdown() can close their connections in time.
    exporter = PrometheusExporter(listen=("127.0.0.1", 0), client_timeout=4 * GENEROUS_S)
    idle = [connect(exporter) for _ in range(WORKERS + 2)]  # every worker busy, the accept loop waiting
    try:
        exporter.shutdown()
        for client in idle:
            try:
                assert client.recv(1) == b""
            except ConnectionResetError:  # never accepted: the kernel resets it with the listening socket
                pass
    finally:
        for client in idle:
            client.close()


# ---------------------------------------------------------------------------------------------
# The exposition of before, byte for byte (golden-*.json: what e89fe91 answered, make_golden.py)

# The neuron-monitor names' counters' creation time in the goldens.
CREATED = 1700000000.25


def v2_stream() -> list[dict[str, Any]]:
    reports = []
    for line in (FIXTURES.parent / "neuron-monitor" / "v2.jsonl").read_text().splitlines():
        try:
            reports.append(json.loads(line))
        except ValueError:  # the stream's bad lines never reach the exporter
            continue
    return reports


def fed_exporter(golden: str, as_blocks: bool) -> PrometheusExporter:
    """An exporter on an ephemeral port, given what the golden's exporter was given."""
    if golden in ("v2-report", "v2-stream"):
        exporter = PrometheusExporter(
            listen=("127.0.0.1", 0), names="neuron-monitor", report_builder=lambda r: r, clock=lambda: CREATED
        )
        for report in [V2_REPORT] if golden == "v2-report" else v2_stream():
            exporter.export(report)  # type: ignore[arg-type]
        return exporter
    exporter = PrometheusExporter(listen=("127.0.0.1", 0))
    for data in load_exports(GOLDEN / f"{golden}-exports.json", as_blocks=as_blocks):
        assert exporter.export(data).name == "SUCCESS"
    return exporter


def ask(exporter: PrometheusExporter, request: dict[str, Any], **headers: str) -> tuple[int, dict, bytes]:
    assert exporter.address is not None
    connection = http.client.HTTPConnection(*exporter.address, timeout=GENEROUS_S)
    try:
        if request["accept"]:
            headers["Accept"] = request["accept"]
        connection.request(request["method"], request["path"], headers=headers)
        response = connection.getresponse()
        answer = {k: v for k, v in response.getheaders() if k not in ("Date", "Server")}
        return response.status, answer, response.read()
    finally:
        connection.close()


@pytest.mark.parametrize(
    ("golden", "as_blocks"),
    [
        ("pipeline", False),
        ("pipeline", True),
        ("edge", False),
        ("edge", True),
        ("unsafe-names", True),
        ("v2-report", False),
        ("v2-stream", False),
    ],
)
def test_every_request_is_answered_as_before(golden: str, as_blocks: bool) -> None:
    """Data as SDK points or as the producer's blocks; the text format and OpenMetrics as Prometheus
    2 and 3 ask, every escaping, name[] filters, other methods and paths."""
    expected = json.loads((GOLDEN / f"golden-{golden}.json").read_text())
    exporter = fed_exporter(golden, as_blocks)
    try:
        for name, request in expected.items():
            for _ in range(2):  # the second answer comes from what the first one kept
                status, headers, body = ask(exporter, request)
                assert (status, headers) == (request["status"], request["headers"]), name
                assert body.decode() == request["body"], name
    finally:
        exporter.shutdown()


@pytest.mark.parametrize("golden", ["pipeline", "v2-stream"])
def test_gzip_answers_hold_the_same_exposition(golden: str) -> None:
    expected = json.loads((GOLDEN / f"golden-{golden}.json").read_text())
    exporter = fed_exporter(golden, as_blocks=True)
    try:
        for name in ("text", "prometheus-2"):
            request = expected[name]
            status, headers, body = ask(exporter, request, **{"Accept-Encoding": "gzip"})
            assert (status, headers["Content-Encoding"]) == (200, "gzip")
            assert headers["Content-Type"] == request["headers"]["Content-Type"]
            assert gzip.decompress(body).decode() == request["body"]
    finally:
        exporter.shutdown()
