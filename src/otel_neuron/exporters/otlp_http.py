"""The SDK's OTLP/HTTP (protobuf) metric exporter, sending requests that `otlp_encoding` wrote.

Everything but the encoding is the SDK exporter's own: endpoint, TLS files and credential
provider, headers, timeout, compression (all from its arguments and the OTEL_EXPORTER_OTLP_*
variables), and its HTTP client's retries with back-off, Retry-After and shutdown.

The SDK (1.45) has no public way to send a request it did not encode: its `export` encodes with
`encode_metrics` and hands the serialized bytes to the HTTP client it built (`_client`, whose
`export(bytes)` compresses, posts and retries). This subclass hands that client our bytes instead.
Left out with the SDK's encoding step: its optional self-telemetry of exported points and the
64 MiB request-size check (the monitor's requests are about a megabyte at trn2 scale).
tests/unit/test_otlp_encoding.py sends through this class to a local server and compares what
arrives with the SDK's encoding.
"""

from __future__ import annotations

import logging

from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics.export import MetricExportResult, MetricsData

from otel_neuron.exporters.otlp_encoding import RequestEncoder

_logger = logging.getLogger(__name__)


class EncodedHttpMetricExporter(OTLPMetricExporter):
    """`OTLPMetricExporter(endpoint=...)` whose requests are encoded from the producer's columns."""

    def __init__(self, endpoint: str | None = None) -> None:
        super().__init__(endpoint=endpoint)
        self._encoder = RequestEncoder()
        self._closed = False

    def export(
        self, metrics_data: MetricsData, timeout_millis: float | None = 10_000, **kwargs: object
    ) -> MetricExportResult:
        if self._closed:
            _logger.warning("Exporter already shutdown, ignoring batch")
            return MetricExportResult.FAILURE
        try:
            request = self._encoder.encode(metrics_data)
        except Exception as error:  # noqa: BLE001 - as the SDK: one batch fails, the exporter goes on
            _logger.error("Failed to encode metrics batch: %s", error)
            return MetricExportResult.FAILURE
        sent = self._client.export(request)  # logs its own failures, as for the SDK's requests
        return MetricExportResult.SUCCESS if sent.success else MetricExportResult.FAILURE

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: object) -> None:
        self._closed = True
        super().shutdown(timeout_millis=timeout_millis, **kwargs)
