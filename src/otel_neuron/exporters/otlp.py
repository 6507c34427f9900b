"""OTLP export, off the collection path.

`build_otlp_exporter` chooses the SDK's gRPC or HTTP/protobuf OTLP exporter from `--otlp [ENDPOINT]`
and the standard `OTEL_EXPORTER_OTLP_*` variables. Only the protocol choice and the `--otlp ENDPOINT`
spelling are handled here; endpoint, headers, timeout, TLS files and compression are read by the SDK
exporters themselves, exactly as for any OpenTelemetry SDK program. The temporality preference is
read by them too, and by `BackgroundExporter` the same way (exporters/temporality.py), so that the
pipeline makes the data the preference asks for.

`BackgroundExporter` wraps any exporter so that `export()` only enqueues: a worker thread does the
network I/O. A collector that is down, slow or refusing never delays the caller (the scheduler that
writes the JSON report); the backlog is bounded (oldest dropped, drops counted and logged) and is
delivered in order once the collector answers again.

    exporter = BackgroundExporter(build_otlp_exporter("http://127.0.0.1:4317"))
    exporter.export(metrics_data)   # returns at once
    exporter.shutdown(timeout_millis=2000)
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    MetricExporter,
    MetricExportResult,
    MetricsData,
)

from otel_neuron.exporters.export_interval import VARIABLE as EXPORT_INTERVAL_VARIABLE
from otel_neuron.exporters.export_interval import ExportInterval, export_interval_millis
from otel_neuron.exporters.options import DEFAULT_BACKLOG
from otel_neuron.exporters.temporality import (
    DeclaredTemporalityExporter,
    counter_temporality,
    otlp_preferred_temporality,
)

_logger = logging.getLogger(__name__)

PROTOCOLS = ("grpc", "http/protobuf")
DEFAULT_PROTOCOL = "grpc"


def otlp_requested(flag_given: bool, environ: Mapping[str, str] | None = None) -> bool:
    """True when `--otlp` was given or OTEL_METRICS_EXPORTER lists "otlp"."""
    env = os.environ if environ is None else environ
    listed = [name.strip() for name in env.get("OTEL_METRICS_EXPORTER", "").split(",")]
    return flag_given or "otlp" in listed


def otlp_protocol(environ: Mapping[str, str] | None = None) -> str:
    """The OTLP protocol from OTEL_EXPORTER_OTLP_METRICS_PROTOCOL / OTEL_EXPORTER_OTLP_PROTOCOL."""
    env = os.environ if environ is None else environ
    for variable in ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        value = env.get(variable, "").strip()
        if value:
            if value not in PROTOCOLS:
                raise ValueError(f'{variable}: "{value}" is not one of {", ".join(PROTOCOLS)}')
            return value
    return DEFAULT_PROTOCOL


def normalize_endpoint(endpoint: str, protocol: str) -> str:
    """`--otlp ENDPOINT` as the SDK exporter wants it.

    "host:port" without a scheme means plain-text http://host:port (TLS needs https:// spelled out).
    For http/protobuf an endpoint without a path gets the signal path /v1/metrics, the way the
    SDK treats OTEL_EXPORTER_OTLP_ENDPOINT.
    """
    text = endpoint.strip()
    if not text:
        raise ValueError("--otlp: the endpoint is empty")
    if "://" not in text:
        text = "http://" + text
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f'--otlp: "{endpoint}" is not an endpoint like "http://127.0.0.1:4317"')
    try:
        parts.port  # noqa: B018 - validates the port number
    except ValueError:
        raise ValueError(f'--otlp: "{endpoint}" has an invalid port') from None
    if protocol == "http/protobuf" and parts.path in ("", "/"):
        text = text.rstrip("/") + "/v1/metrics"
    return text


def build_otlp_exporter(
    endpoint: str | None = None, environ: Mapping[str, str] | None = None
) -> MetricExporter:
    """The SDK's OTLP metric exporter for the configured protocol (not yet wrapped), sending requests
    encoded from the producer's columns (exporters/otlp_encoding.py, the same messages the SDK makes).

    `endpoint` is the `--otlp` value (None: the SDK reads OTEL_EXPORTER_OTLP_(METRICS_)ENDPOINT,
    defaulting to localhost:4317 for gRPC, localhost:4318/v1/metrics for HTTP). Raises ValueError
    for a bad protocol or endpoint.
    """
    protocol = otlp_protocol(environ)
    url = normalize_endpoint(endpoint, protocol) if endpoint else None
    if protocol == "grpc":
        from otel_neuron.exporters.otlp_grpc import EncodedGrpcMetricExporter

        return EncodedGrpcMetricExporter(endpoint=url)
    from otel_neuron.exporters.otlp_http import EncodedHttpMetricExporter

    return EncodedHttpMetricExporter(endpoint=url)


class BackgroundExporter(DeclaredTemporalityExporter):
    """Exports through `exporter` on a worker thread; `export()` never blocks on the network.

    The backlog holds at most `max_backlog` MetricsData; when full, the oldest is dropped and
    counted in `dropped`. A failed export stays at the head of the backlog and is retried after
    a back-off (`retry_initial` doubling up to `retry_max` seconds), so nothing is lost while the
    collector is briefly away and data arrives in order once it returns.
    `preferred_temporality` is what `exporter` wants (None: what an OTLP exporter wants, from
    OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE).

    `export_interval_millis` (None: OTEL_METRIC_EXPORT_INTERVAL, unset meaning every collection)
    lets it send less often than the collections arrive (exporters/export_interval.py); with
    cumulative counters the collection not sent is kept (one, the latest) and sent by
    `force_flush` and `shutdown`, so the last totals are not lost. With delta counters every
    collection is sent.
    """

    def __init__(
        self,
        exporter: MetricExporter,
        max_backlog: int = DEFAULT_BACKLOG,
        retry_initial: float = 0.5,
        retry_max: float = 5.0,
        name: str = "otlp",
        preferred_temporality: Mapping[type, AggregationTemporality] | None = None,
        export_interval_millis: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_backlog < 1:
            raise ValueError(f"max_backlog must be at least 1, not {max_backlog}")
        super().__init__(
            otlp_preferred_temporality() if preferred_temporality is None else preferred_temporality
        )
        self._exporter = exporter
        self._name = name
        self._interval = self._export_interval(export_interval_millis, clock)
        self._held: MetricsData | None = None  # the latest collection not sent (interval)
        self._backlog: deque[MetricsData] = deque()
        self._max_backlog = max_backlog
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        self._condition = threading.Condition()
        self._stopping = False
        self._busy = False
        self.dropped = 0
        self.exported = 0
        self.failures = 0
        self._last_drop_log = 0.0
        self._worker = threading.Thread(target=self._run, name=f"otel-neuron-{name}-export", daemon=True)
        self._worker.start()

    def _export_interval(self, millis: float | None, clock: Callable[[], float]) -> ExportInterval | None:
        """The schedule of sends (None: every collection)."""
        if millis is None:
            millis = export_interval_millis()
        if not millis:
            return None
        if counter_temporality(self) is not AggregationTemporality.CUMULATIVE:
            _logger.info(
                "%s export: %s is not applied with delta temporality: every collection is sent",
                self._name,
                EXPORT_INTERVAL_VARIABLE,
            )
            return None
        return ExportInterval(millis / 1000, clock)

    @property
    def backlog(self) -> int:
        with self._condition:
            return len(self._backlog)

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: object
    ) -> MetricExportResult:
        with self._condition:
            if self._stopping:
                return MetricExportResult.FAILURE
            if self._interval is not None and not self._interval.offer():
                self._held = metrics_data  # running totals: the latest supersedes the others
                return MetricExportResult.SUCCESS
            self._held = None
            self._enqueue(metrics_data)
        return MetricExportResult.SUCCESS

    def _enqueue(self, metrics_data: MetricsData) -> None:
        """Under the condition."""
        if len(self._backlog) >= self._max_backlog:
            self._backlog.popleft()
            self.dropped += 1
            self._log_drop()
        self._backlog.append(metrics_data)
        self._condition.notify_all()

    def _log_drop(self) -> None:
        now = time.monotonic()
        if self.dropped == 1 or now - self._last_drop_log >= 10.0:
            self._last_drop_log = now
            _logger.info(
                "%s export backlog full (%d batches): dropped the oldest, %d dropped so far",
                self._name,
                self._max_backlog,
                self.dropped,
            )
        else:
            _logger.debug("%s export backlog full: %d dropped so far", self._name, self.dropped)

    def _run(self) -> None:
        delay = self._retry_initial
        while True:
            with self._condition:
                while not self._backlog and not self._stopping:
                    self._condition.wait()
                if self._stopping:
                    return
                batch = self._backlog[0]
                self._busy = True
            try:
                result = self._exporter.export(batch)
            except Exception:  # noqa: BLE001 - an exporter bug must not kill the worker
                _logger.exception("%s export raised", self._name)
                result = MetricExportResult.FAILURE
            with self._condition:
                self._busy = False
                if result is MetricExportResult.SUCCESS:
                    if self._backlog and self._backlog[0] is batch:
                        self._backlog.popleft()
                    self.exported += 1
                    if delay != self._retry_initial:
                        _logger.info("%s export resumed; %d batches waiting", self._name, len(self._backlog))
                    delay = self._retry_initial
                    self._condition.notify_all()
                    continue
                self.failures += 1
                _logger.debug(
                    "%s export failed; retrying in %.1f s with %d batches waiting",
                    self._name,
                    delay,
                    len(self._backlog),
                )
                self._condition.notify_all()
                self._condition.wait_for(lambda: self._stopping, timeout=delay)
                delay = min(delay * 2, self._retry_max)

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        """Wait until the backlog (and a collection held back by the interval) is delivered, at most
        `timeout_millis`."""
        deadline = time.monotonic() + timeout_millis / 1000
        with self._condition:
            if self._held is not None and not self._stopping:
                self._enqueue(self._held)
                self._held = None
            while self._backlog or self._busy:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._stopping:
                    return False
                self._condition.wait(remaining)
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: object) -> None:
        """Stop within `timeout_millis`: a last chance to deliver the backlog, then give up on it."""
        deadline = time.monotonic() + timeout_millis / 1000
        self.force_flush(timeout_millis=timeout_millis / 2)
        with self._condition:
            self._stopping = True
            left = len(self._backlog)
            self._condition.notify_all()
        if left:
            _logger.info("%s export: %d batches not delivered at shutdown", self._name, left)
        remaining_millis = max(0.0, (deadline - time.monotonic()) * 1000)
        # The wrapped exporter's shutdown interrupts an export in progress (its retry sleep).
        closer = threading.Thread(
            target=self._exporter.shutdown, kwargs={"timeout_millis": remaining_millis}, daemon=True
        )
        closer.start()
        closer.join(max(0.0, deadline - time.monotonic()))
        self._worker.join(max(0.0, deadline - time.monotonic()))
