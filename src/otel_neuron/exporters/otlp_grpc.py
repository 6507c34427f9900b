"""The SDK's OTLP/gRPC metric exporter, sending requests that `otlp_encoding` wrote.

Everything but the encoding is the SDK exporter's own: endpoint, TLS and credentials, headers,
timeout, compression (all from its arguments and the OTEL_EXPORTER_OTLP_* variables), its retries
with back-off and the reconnection after UNAVAILABLE, its self-telemetry and shutdown.

The SDK (1.45) has no public way to send a request it did not encode, so this subclass uses the
two hooks its gRPC mixin (`OTLPExporterMixin`) gives exporters for their signal: `_translate_data`
(abstract there: each signal's exporter implements it) returns our bytes, and
`_initialize_channel_and_stub` (its documented connect/reconnect step) puts, beside the SDK's
channel, a stub for the same Export method that sends bytes as they are (gRPC's documented
`request_serializer=None`). The request then costs one pass over the producer's columns instead of
a protobuf object per point and attribute, serialized again. tests/unit/test_otlp_encoding.py
sends through this class to a local server and compares what arrives with the SDK's encoding.

One channel option differs from the SDK's: no BDP probing (`grpc.http2.bdp_probe` 0). gRPC
estimates the bandwidth-delay product of what the channel *receives*, by answering incoming data
with a PING, to size its receive window. An exporter receives only tiny Export responses, so the
estimate is never needed, while each response's PING and its acknowledgement wake gRPC's threads
once more per request (bench/bench_otlp_transport.py measures what it costs).
"""

from __future__ import annotations

import grpc
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.sdk.metrics.export import MetricsData

from otel_neuron.exporters.otlp_encoding import RequestEncoder

# Added to the SDK's own channel options (its user agent), which an exporter's option overrides by name.
CHANNEL_OPTIONS = (("grpc.http2.bdp_probe", 0),)

_SERVICE = metrics_service_pb2.DESCRIPTOR.services_by_name["MetricsService"]
EXPORT_METHOD = f"/{_SERVICE.full_name}/{_SERVICE.methods_by_name['Export'].name}"


class _EncodedExportStub:
    """MetricsServiceStub's Export, taking the request's bytes."""

    def __init__(self, channel: grpc.Channel) -> None:
        self.Export = channel.unary_unary(  # noqa: N815 - the name the SDK's stub has
            EXPORT_METHOD,
            request_serializer=None,
            response_deserializer=metrics_service_pb2.ExportMetricsServiceResponse.FromString,
        )


class EncodedGrpcMetricExporter(OTLPMetricExporter):
    """`OTLPMetricExporter(endpoint=...)` whose requests are encoded from the producer's columns."""

    def __init__(self, endpoint: str | None = None) -> None:
        self._encoder = RequestEncoder()  # before the SDK's __init__, which connects
        # gRPC takes integer options as ints; the SDK's annotation says str.
        super().__init__(endpoint=endpoint, channel_options=CHANNEL_OPTIONS)  # type: ignore[arg-type]

    def _initialize_channel_and_stub(self) -> None:
        super()._initialize_channel_and_stub()
        self._client = _EncodedExportStub(self._channel)  # type: ignore[assignment]  # the SDK types its stub

    def _translate_data(self, data: MetricsData) -> bytes:  # type: ignore[override]  # bytes for our stub
        return self._encoder.encode(data)
