"""OTLP requests encoded from the producer's columns are the SDK exporter's requests, field for field,
they reach a collector through the SDK exporters' own send paths, and OTEL_METRIC_EXPORT_INTERVAL
decides how many collections are sent."""

from __future__ import annotations

import gzip
import threading
import tracemalloc
from collections.abc import Iterator, Sequence
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
import numpy
import pytest
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    InMemoryMetricReader,
    MetricExporter,
    MetricExportResult,
    MetricsData,
)
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource

from otel_neuron.exporters.export_interval import ExportInterval, export_interval_millis
from otel_neuron.exporters.otlp import BackgroundExporter
from otel_neuron.exporters.otlp_encoding import RequestEncoder
from otel_neuron.exporters.otlp_grpc import EncodedGrpcMetricExporter
from otel_neuron.exporters.otlp_http import EncodedHttpMetricExporter
from otel_neuron.exporters.temporality import CUMULATIVE_PREFERRED, DELTA_PREFERRED
from otel_neuron.groups.base import (
    AttributeColumn,
    FrozenAttributes,
    GroupSample,
    HistogramDelta,
    InstrumentSpec,
    Kind,
    MetricGroup,
    PointColumns,
    PointsByMetric,
)
from otel_neuron.producer import Collected, MetricsDataProducer

UTILIZATION = InstrumentSpec("test.utilization", "1", "a gauge", Kind.GAUGE)
FLOPS = InstrumentSpec("test.flops", "{flop}", "", Kind.GAUGE)  # no description: left out
EVENTS = InstrumentSpec("test.events", "{event}", "a counter", Kind.COUNTER)
IN_USE = InstrumentSpec("test.in_use", "By", "an up-down counter", Kind.UPDOWN)
LATENCY = InstrumentSpec("test.latency", "s", "an exponential histogram", Kind.HISTOGRAM)
EMPTY = InstrumentSpec("test.empty", "1", "no points this time", Kind.COUNTER)
RESOURCE = Resource(
    {"service.name": "otel-neuron-monitor", "host.id": "i-0123", "neuron.instance.error": ""},
    schema_url="https://opentelemetry.io/schemas/1.24.0",
)

CORES = AttributeColumn({"neuron.runtime.index": 1, "neuron.core.index": n} for n in range(70))
MODES = AttributeColumn({"cpu.mode": mode, "cpu.logical_number": 3} for mode in ("user", "system", "idle"))
EVENT_ATTRIBUTES = [
    FrozenAttributes({"neuron.runtime.index": 1, "outcome": outcome, "ok": outcome == "success"})
    for outcome in ("success", "failure", "timeout")
]
ODD_ATTRIBUTES = FrozenAttributes(
    {
        "negative": -7,
        "huge": 2**62,
        "ratio": 0.25,
        "empty": "",
        "false": False,
        "unicode": "café ☃",
        "list": ("a", "b"),
        "blob": b"\x00\xff",
    }
)


class TableGroup(MetricGroup):
    """A group whose points are handed to it (sample() is not used here)."""

    report_key = "test_table"
    instruments = (UTILIZATION, FLOPS, EVENTS, IN_USE, LATENCY, EMPTY)

    def _sample_points(self, period: float) -> PointsByMetric:
        raise AssertionError("not sampled in these tests")


def histogram(scale: int, offset: int, counts: Sequence[int], zero_count: int = 0) -> HistogramDelta:
    return HistogramDelta(
        scale=scale,
        zero_count=zero_count,
        offset=offset,
        bucket_counts=counts,
        count=sum(counts) + zero_count,
        sum=1.5 * sum(counts),
        min=0.001,
        max=2.5,
    )


def tick_points(step: int) -> PointsByMetric:
    """Every shape of block the groups hand over, with values that move from step to step."""
    return {
        UTILIZATION.name: PointColumns(CORES, numpy.linspace(0.0, 1.0, 70) * step),  # a float numpy column
        FLOPS.name: [(ODD_ATTRIBUTES, 3 + step), ({"plain": "dict"}, 2.5)],  # int and float, plain dict
        EVENTS.name: [(attributes, index + step) for index, attributes in enumerate(EVENT_ATTRIBUTES)],
        IN_USE.name: PointColumns(MODES, [100 * step, 2**40, -3]),  # an int list
        LATENCY.name: [
            (EVENT_ATTRIBUTES[0], histogram(6, -550 + step, [0, 3, 0, 200, 2**35, 1])),
            (EVENT_ATTRIBUTES[1], histogram(-2, 4, [], zero_count=step)),  # no buckets: no positive field
        ],
    }


def produce(temporality: AggregationTemporality, ticks: int = 3) -> list[MetricsData]:
    producer = MetricsDataProducer(RESOURCE, temporality)
    groups = [TableGroup(), TableGroup(runtime_index=1)]
    produced = []
    for step in range(1, ticks + 1):
        end = 1_700_000_000_000_000_000 + step * 1_000_000_000
        samples = [
            Collected(
                group, GroupSample(1.0, "" if index else "a group error", end + index, tick_points(step))
            )
            for index, group in enumerate(groups)
        ]
        produced.append(producer.produce(samples))
    return produced


def decoded(encoder: RequestEncoder, data: MetricsData) -> ExportMetricsServiceRequest:
    return ExportMetricsServiceRequest.FromString(encoder.encode(data))


@pytest.mark.parametrize("temporality", [AggregationTemporality.CUMULATIVE, AggregationTemporality.DELTA])
def test_every_instrument_kind_encodes_as_the_sdk_exporter_would(temporality):
    encoder = RequestEncoder()  # one encoder over several collections, as an exporter keeps it
    for data in produce(temporality):
        ours = decoded(encoder, data)
        assert ours == encode_metrics(data)
    metrics = {metric.name: metric for metric in ours.resource_metrics[0].scope_metrics[0].metrics}
    # What the comparison covered: each kind, with its temporality, and the SDK's choices.
    assert metrics[UTILIZATION.name].WhichOneof("data") == "gauge"
    assert metrics[EVENTS.name].sum.is_monotonic
    assert metrics[EVENTS.name].sum.aggregation_temporality == temporality.value
    assert metrics[IN_USE.name].sum.aggregation_temporality == AggregationTemporality.CUMULATIVE.value
    assert not metrics[IN_USE.name].sum.is_monotonic
    assert metrics[LATENCY.name].exponential_histogram.aggregation_temporality == temporality.value
    assert metrics[EMPTY.name].WhichOneof("data") is None  # no points: no data, as the SDK leaves it
    assert not metrics[FLOPS.name].description
    flops = metrics[FLOPS.name].gauge.data_points
    assert [point.WhichOneof("value") for point in flops[:2]] == ["as_int", "as_double"]
    assert {p.start_time_unix_nano for p in metrics[UTILIZATION.name].gauge.data_points} == {0}
    resource = ours.resource_metrics[0]
    assert resource.schema_url == RESOURCE.schema_url
    assert {kv.key for kv in resource.resource.attributes} == set(RESOURCE.attributes)
    assert resource.scope_metrics[0].scope.name == "otel_neuron"
    assert resource.scope_metrics[0].scope.version


def test_a_metric_whose_points_change_shape_between_collections_is_encoded_anew():
    """The encoder keeps each metric's layout from one request to the next: a request whose points
    differ in attribute sets, value types, count or emptiness must still be exactly the SDK's."""
    more_cores = AttributeColumn({"neuron.runtime.index": 1, "neuron.core.index": n} for n in range(71))
    shapes: list[PointsByMetric] = [
        {UTILIZATION.name: PointColumns(CORES, numpy.linspace(0.0, 1.0, 70))},
        {UTILIZATION.name: PointColumns(CORES, numpy.linspace(0.5, 1.5, 70))},  # the layout reused
        {UTILIZATION.name: PointColumns(more_cores, numpy.linspace(0.0, 1.0, 71))},  # another column
        {UTILIZATION.name: PointColumns(more_cores, numpy.arange(71))},  # integers now: as_int
        {UTILIZATION.name: PointColumns(more_cores, list(range(70)) + [0.5])},  # mixed: point by point
        {UTILIZATION.name: PointColumns(AttributeColumn([]), [])},  # no points
        {UTILIZATION.name: [(EVENT_ATTRIBUTES[0], 1.5)], IN_USE.name: PointColumns(MODES, [1, 2, 3])},
        {UTILIZATION.name: [(EVENT_ATTRIBUTES[1], 7)], IN_USE.name: PointColumns(MODES, [1.0, 2, 3])},
        {UTILIZATION.name: PointColumns(CORES, numpy.linspace(0.0, 1.0, 70))},  # the first shape again
    ]
    encoder = RequestEncoder()
    producer = MetricsDataProducer(RESOURCE, AggregationTemporality.CUMULATIVE)
    groups = [TableGroup(), TableGroup(runtime_index=1)]  # two blocks a metric, one per group
    for step, points in enumerate(shapes):
        end = 1_700_000_000_000_000_000 + step * 1_000_000_000
        data = producer.produce(
            [
                Collected(group, GroupSample(1.0, "", end + index, points))
                for index, group in enumerate(groups)
            ]
        )
        assert decoded(encoder, data) == encode_metrics(data), f"shape {step}"


def test_a_request_that_fails_to_encode_leaves_nothing_behind_for_the_next():
    """A collection the encoder refuses (a histogram point that is not a histogram) fails alone: the
    next request is whole, though the failed one had already laid out the metrics before it."""
    encoder = RequestEncoder()
    producer = MetricsDataProducer(RESOURCE, AggregationTemporality.DELTA)

    def collection(step: int, points: PointsByMetric) -> MetricsData:
        return producer.produce([Collected(TableGroup(), GroupSample(1.0, "", 10**18 + step, points))])

    good = {UTILIZATION.name: PointColumns(CORES, numpy.linspace(0.0, 1.0, 70))}
    decoded(encoder, collection(1, good))
    with pytest.raises(TypeError, match="histogram point"):
        encoder.encode(collection(2, {**good, LATENCY.name: [(EVENT_ATTRIBUTES[0], 1.5)]}))
    after = collection(3, good)
    assert decoded(encoder, after) == encode_metrics(after)


def test_the_sdks_own_data_points_encode_as_the_sdk_exporter_would():
    """Points that are not the producer's (the SDK's objects, as in-app readers make them)."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(
        resource=RESOURCE,
        metric_readers=[reader],
        views=[View(instrument_name="latency", aggregation=ExponentialBucketHistogramAggregation())],
    )
    meter = provider.get_meter("app", "1.2.3")
    counter, updown = meter.create_counter("requests"), meter.create_up_down_counter("queue")
    latency = meter.create_histogram("latency", unit="s")
    meter.create_observable_gauge("temperature", callbacks=[lambda options: []])
    for value in (0.002, 0.5, 0.5, 7.0, 0.0):
        latency.record(value, {"route": "/infer"})
    counter.add(3, {"route": "/infer", "ok": True})
    updown.add(-2.5)
    data = reader.get_metrics_data()
    assert data is not None
    assert decoded(RequestEncoder(), data) == encode_metrics(data)
    provider.shutdown()


def test_a_resource_that_changes_is_encoded_anew():
    encoder = RequestEncoder()
    first, second = produce(AggregationTemporality.CUMULATIVE, ticks=2)
    decoded(encoder, first)
    producer = MetricsDataProducer(Resource({"host.id": "i-after-lookup"}), AggregationTemporality.DELTA)
    later = producer.produce(
        [Collected(TableGroup(), GroupSample(1.0, "", 1_800_000_000_000_000_000, tick_points(1)))]
    )
    assert decoded(encoder, later) == encode_metrics(later)
    assert decoded(encoder, second) == encode_metrics(second)


def test_memory_stays_flat_when_attribute_sets_are_made_anew_each_collection():
    encoder = RequestEncoder()
    producer = MetricsDataProducer(RESOURCE, AggregationTemporality.DELTA)

    def encode_fresh(step: int) -> None:
        fresh = AttributeColumn({"neuron.core.index": n, "step": step} for n in range(50))
        pairs = [(FrozenAttributes({"series": n, "step": step}), n) for n in range(50)]
        points = {UTILIZATION.name: PointColumns(fresh, [0.5] * 50), EVENTS.name: pairs}
        encoder.encode(
            producer.produce([Collected(TableGroup(), GroupSample(1.0, "", 10**18 + step, points))])
        )

    tracemalloc.start()
    try:
        for step in range(50):
            encode_fresh(step)
        after_50 = tracemalloc.get_traced_memory()[0]
        for step in range(50, 1000):
            encode_fresh(step)
        after_1000 = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    # Kept for good, the 95,000 attribute sets made meanwhile would take tens of megabytes.
    assert after_1000 < after_50 + 2 * 1024 * 1024


# --- the send paths: a local collector receives the SDK's message ------------------------------


class Collector(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self) -> None:
        self.requests: list[ExportMetricsServiceRequest] = []
        self.metadata: list[dict[str, str]] = []

    def Export(self, request, context):  # noqa: N802 - the generated servicer's name
        self.requests.append(request)
        self.metadata.append(dict(context.invocation_metadata()))
        return metrics_service_pb2.ExportMetricsServiceResponse()


@pytest.fixture
def grpc_collector() -> Iterator[tuple[Collector, int]]:
    collector = Collector()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(collector, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield collector, port
    finally:
        server.stop(None).wait(5)


def test_grpc_exporter_sends_the_sdks_request_with_its_headers_and_compression(grpc_collector, monkeypatch):
    collector, port = grpc_collector
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-tenant=neuron-fleet")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")
    exporter = EncodedGrpcMetricExporter(f"http://127.0.0.1:{port}")
    data = produce(AggregationTemporality.CUMULATIVE)
    try:
        for each in data:
            assert exporter.export(each) is MetricExportResult.SUCCESS
    finally:
        exporter.shutdown()
    assert collector.requests == [encode_metrics(each) for each in data]
    assert all(metadata.get("x-tenant") == "neuron-fleet" for metadata in collector.metadata)


def test_grpc_exporter_without_a_collector_fails_the_export_and_goes_on(monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "0.5")
    exporter = EncodedGrpcMetricExporter("http://127.0.0.1:9")  # the discard port: nothing listens
    try:
        assert (
            exporter.export(produce(AggregationTemporality.DELTA, ticks=1)[0]) is MetricExportResult.FAILURE
        )
    finally:
        exporter.shutdown()


def test_http_exporter_posts_the_sdks_request_with_its_headers_and_compression(monkeypatch):
    bodies: list[bytes] = []
    headers: list[dict[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the name http.server calls
            body = self.rfile.read(int(self.headers["Content-Length"]))
            headers.append({key.lower(): value for key, value in self.headers.items()})
            bodies.append(gzip.decompress(body) if self.headers.get("Content-Encoding") == "gzip" else body)
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_HEADERS", "x-tenant=neuron-fleet")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_COMPRESSION", "gzip")
    data = produce(AggregationTemporality.DELTA, ticks=2)
    try:
        exporter = EncodedHttpMetricExporter(f"http://127.0.0.1:{server.server_address[1]}/v1/metrics")
        for each in data:
            assert exporter.export(each) is MetricExportResult.SUCCESS
        exporter.shutdown()
        assert exporter.export(data[0]) is MetricExportResult.FAILURE  # after shutdown, as the SDK's
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    assert [ExportMetricsServiceRequest.FromString(body) for body in bodies] == [
        encode_metrics(d) for d in data
    ]
    assert all(h["content-encoding"] == "gzip" and h["x-tenant"] == "neuron-fleet" for h in headers)


# --- OTEL_METRIC_EXPORT_INTERVAL ------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Counting(MetricExporter):
    def __init__(self) -> None:
        super().__init__()
        self.received: list[object] = []

    def export(self, metrics_data, timeout_millis=10_000, **kwargs):
        self.received.append(metrics_data)
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis=10_000):
        return True

    def shutdown(self, timeout_millis=30_000, **kwargs):
        pass


def offer_ticks(exporter: BackgroundExporter, clock: Clock, ticks: int, period_s: float) -> None:
    for tick in range(ticks):
        exporter.export(tick)  # type: ignore[arg-type]  # a stand-in: the exporter only passes it on
        clock.now += period_s


@pytest.mark.parametrize(
    ("interval_ms", "period_s", "expected"),
    [
        (5_000, 1.0, [0, 5, 10, 15]),  # every fifth collection
        (2_500, 1.0, [0, 2, 5, 7, 10, 12, 15, 17]),  # one per 2.5 s on average
        (500, 1.0, list(range(20))),  # an interval shorter than the period: every collection
        (0, 1.0, list(range(20))),  # 0: every collection
    ],
)
def test_cumulative_export_sends_one_collection_per_interval(interval_ms, period_s, expected):
    clock, inner = Clock(), Counting()
    exporter = BackgroundExporter(
        inner, preferred_temporality=CUMULATIVE_PREFERRED, export_interval_millis=interval_ms, clock=clock
    )
    offer_ticks(exporter, clock, 20, period_s)
    assert exporter.force_flush(timeout_millis=5_000)
    held_back = [] if expected[-1] == 19 else [19]  # the latest totals, sent at the flush
    assert inner.received == expected + held_back
    exporter.shutdown(timeout_millis=1_000)


def test_delta_export_sends_every_collection_whatever_the_interval():
    clock, inner = Clock(), Counting()
    exporter = BackgroundExporter(
        inner, preferred_temporality=DELTA_PREFERRED, export_interval_millis=5_000, clock=clock
    )
    offer_ticks(exporter, clock, 20, 1.0)
    assert exporter.force_flush(timeout_millis=5_000)
    assert inner.received == list(range(20))
    exporter.shutdown(timeout_millis=1_000)


def test_export_interval_from_the_environment():
    assert export_interval_millis({}) is None  # unset: every collection (otel-neuron's default)
    assert export_interval_millis({"OTEL_METRIC_EXPORT_INTERVAL": " 60000 "}) == 60_000
    for bad in ("1m", "-5", "nan", "inf"):
        with pytest.raises(ValueError, match=f'OTEL_METRIC_EXPORT_INTERVAL: "{bad}"'):
            export_interval_millis({"OTEL_METRIC_EXPORT_INTERVAL": bad})


def test_export_interval_restarts_after_a_stall():
    clock = Clock()
    interval = ExportInterval(5.0, clock)
    sent = []
    for tick in range(40):
        sent.append(interval.offer())
        clock.now += 30.0 if tick == 7 else 1.0  # the host stalls 30 s after the eighth tick
    times = [index for index, was_sent in enumerate(sent) if was_sent]
    assert times[:3] == [0, 5, 8]  # the first after the stall is sent at once
    assert all(b - a == 5 for a, b in zip(times[2:], times[3:], strict=False))
