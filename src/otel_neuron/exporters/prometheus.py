"""Prometheus /metrics: the latest exported samples, in OpenTelemetry or neuron-monitor names.

The pipeline calls `PrometheusExporter.export()` like any other exporter, with the groups that
were just collected. The exporter keeps the latest point of every series; a scrape serves that
cache and never triggers a collection, so scrapes cannot change the sampling cadence.

Two naming modes:

- `otel` (default port 9464): the OpenTelemetry names translated by
  opentelemetry-exporter-prometheus (`system.cpu.utilization` -> `system_cpu_utilization`,
  `target_info` for the resource, `otel_scope_*` labels).
- `neuron-monitor` (default port 8000): the names and labels of AWS's neuron-monitor-prometheus.py,
  read from the neuron-monitor 2.x report (`exporters.neuron_monitor_names.NeuronMonitorCompat`), so
  dashboards, CloudWatch Container Insights and Datadog's aws_neuron check written for it keep working.

    exporter = PrometheusExporter(listen=("127.0.0.1", 9464))
    exporter.export(metrics_data)         # from the pipeline
    # curl http://127.0.0.1:9464/metrics
    exporter.shutdown()
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from typing import Any

from opentelemetry.exporter.prometheus import _CustomCollector
from opentelemetry.sdk.metrics.export import (
    ExponentialHistogram,
    ExponentialHistogramDataPoint,
    HistogramDataPoint,
    Metric,
    MetricExportResult,
    MetricsData,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.sdk.metrics.export import (
    Histogram as HistogramData,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.registry import Collector

from otel_neuron.exporters.neuron_monitor_names import NeuronMonitorCompat
from otel_neuron.exporters.options import NAMING_MODES
from otel_neuron.exporters.scrape_server import CLIENT_TIMEOUT_S, ScrapeServer
from otel_neuron.exporters.temporality import (
    CUMULATIVE_PREFERRED,
    DELTA_PREFERRED,
    DeclaredTemporalityExporter,
)
from otel_neuron.report.v2 import StandingReportV2

_logger = logging.getLogger(__name__)

DEFAULT_PORTS = {"otel": 9464, "neuron-monitor": 8000}
DEFAULT_HOST = "127.0.0.1"

# Attributes that, with the metric name, scope a "replace" of series: a new sample of a group for
# one runtime replaces all that metric's series of that runtime (NeuronCores that went idle vanish),
# without touching the series of other runtimes or other groups' health points.
_SCOPE_KEYS = ("neuron.runtime.index", "neuron.monitor.group")

Report = Mapping[str, Any]
ReportBuilder = Callable[[MetricsData], Report]


def parse_listen_address(text: str | int | None, mode: str = "otel") -> tuple[str, int]:
    """`--prometheus [HOST:]PORT` -> (host, port); host defaults to 127.0.0.1, "[::1]:9464" works."""
    if mode not in NAMING_MODES:
        raise ValueError(f'--prometheus-names: "{mode}" is not one of {", ".join(NAMING_MODES)}')
    if text is None or str(text).strip() == "":
        return DEFAULT_HOST, DEFAULT_PORTS[mode]
    value = str(text).strip()
    host, port_text = DEFAULT_HOST, value
    if value.startswith("["):
        end = value.find("]")
        if end < 0 or not value[end + 1 :].startswith(":"):
            raise ValueError(f'--prometheus: "{value}" is not [HOST:]PORT')
        host, port_text = value[1:end], value[end + 2 :]
    elif ":" in value:
        host, port_text = value.rsplit(":", 1)
        host = host or DEFAULT_HOST
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f'--prometheus: "{value}" is not [HOST:]PORT (port must be a number)') from None
    if not 0 <= port <= 65535:
        raise ValueError(f"--prometheus: port {port} is out of range 0..65535")
    return host, port


class LatestMetrics:
    """The latest point of every series seen in exported MetricsData, as one MetricsData."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._resource: Resource | None = None
        self._scope: InstrumentationScope | None = None
        # metric name -> (Metric template, {series key: point})
        self._metrics: dict[str, tuple[Metric, dict[frozenset[tuple[str, Any]], Any]]] = {}

    def update(self, metrics_data: MetricsData) -> None:
        with self._lock:
            for resource_metrics in metrics_data.resource_metrics:
                self._resource = resource_metrics.resource
                for scope_metrics in resource_metrics.scope_metrics:
                    self._scope = scope_metrics.scope
                    for metric in scope_metrics.metrics:
                        self._update_metric(metric)

    def _update_metric(self, metric: Metric) -> None:
        _, series = self._metrics.get(metric.name, (metric, {}))
        fresh = {_series_key(point.attributes): point for point in metric.data.data_points}
        scopes = {_scope_of(point.attributes) for point in metric.data.data_points}
        kept = {key: point for key, point in series.items() if _scope_of(point.attributes) not in scopes}
        kept.update(fresh)
        self._metrics[metric.name] = (metric, kept)

    def snapshot(self) -> MetricsData | None:
        with self._lock:
            if self._resource is None:
                return None
            metrics = [
                _with_points(template, list(series.values())) for template, series in self._metrics.values()
            ]
            scope = self._scope or InstrumentationScope("otel_neuron")
            return MetricsData(
                resource_metrics=[
                    ResourceMetrics(
                        resource=self._resource,
                        scope_metrics=[ScopeMetrics(scope=scope, metrics=metrics, schema_url="")],
                        schema_url="",
                    )
                ]
            )


def _series_key(attributes: Mapping[str, Any] | None) -> frozenset[tuple[str, Any]]:
    return frozenset((key, _hashable(value)) for key, value in (attributes or {}).items())


def _scope_of(attributes: Mapping[str, Any] | None) -> tuple[Any, ...]:
    attributes = attributes or {}
    return tuple(_hashable(attributes.get(key)) for key in _SCOPE_KEYS)


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, (list, tuple)) else value


def _with_points(template: Metric, points: list[Any]) -> Metric:
    data = template.data
    if isinstance(data, ExponentialHistogram):
        # Prometheus text format has no exponential histogram: serve explicit buckets.
        return Metric(
            name=template.name,
            description=template.description,
            unit=template.unit,
            data=HistogramData(
                data_points=[explicit_histogram_point(point) for point in points],
                aggregation_temporality=data.aggregation_temporality,
            ),
        )
    return Metric(
        name=template.name,
        description=template.description,
        unit=template.unit,
        data=replace(data, data_points=points),  # type: ignore[arg-type]
    )


# The `le` bounds served for every latency histogram: 0, then powers of two from 2^-13 s (122 us)
# to 2^4 s (16 s). Fixed, so a series' buckets never change between scrapes (histogram_quantile
# needs that), and few: 20 series per histogram instead of one per exponential bucket.
SERVED_BOUNDS = [0.0] + [2.0**power for power in range(-13, 5)]
_LOWEST_POWER = -13


def explicit_histogram_point(point: ExponentialHistogramDataPoint) -> HistogramDataPoint:
    """The same distribution counted into SERVED_BOUNDS, exactly.

    A base-2 exponential bucket of scale s >= 0 lies inside one power-of-two range (its index
    shifted right by s), so each count lands in the bucket of its true upper bound; values below
    the first bound count there, above the last in +Inf. Negative values (never produced by this
    monitor) count in the first bucket.
    """
    counts = [0] * (len(SERVED_BOUNDS) + 1)
    counts[0] = point.zero_count + sum(point.negative.bucket_counts)
    for index, count in enumerate(point.positive.bucket_counts, start=point.positive.offset):
        if count:
            power = index >> point.scale if point.scale >= 0 else index << -point.scale
            # Values of this bucket are <= 2^(power + 1): that bound's position, clamped to the range.
            position = min(max(power + 1 - _LOWEST_POWER + 1, 1), len(SERVED_BOUNDS))
            counts[position] += count
    return HistogramDataPoint(
        attributes=point.attributes,
        start_time_unix_nano=point.start_time_unix_nano,
        time_unix_nano=point.time_unix_nano,
        count=point.count,
        sum=point.sum,
        bucket_counts=counts,
        explicit_bounds=list(SERVED_BOUNDS),
        min=point.min,
        max=point.max,
        exemplars=list(getattr(point, "exemplars", []) or []),
    )


class _OtelNamesCollector(Collector):
    """Serves the cache through opentelemetry-exporter-prometheus's translation (no callback)."""

    def __init__(self, cache: LatestMetrics) -> None:
        self._cache = cache

    def collect(self) -> Iterator[Any]:
        snapshot = self._cache.snapshot()
        if snapshot is None:
            return iter(())
        translator = _CustomCollector()
        translator.add_metrics_data(snapshot)
        return iter(list(translator.collect()))


# ---------------------------------------------------------------------------------------------
# The exporter the pipeline drives


class PrometheusExporter(DeclaredTemporalityExporter):
    """A MetricExporter that serves what it was last given on an HTTP /metrics endpoint.

    `names="otel"` wants cumulative data (Prometheus counters are totals) and keeps the latest
    point per series. `names="neuron-monitor"` wants per-period (delta) data, renders it with
    `report_builder` as the standing neuron-monitor 2.x report (what `--output-format 2` writes;
    default `report.v2.StandingReportV2().update`) and hands that to `NeuronMonitorCompat`, which
    accumulates the counters itself.
    `listen=None` starts no server (tests read `registry` directly). A scraper has `client_timeout`
    seconds to send its request and as long again to read the answer (see `scrape_server`).
    """

    def __init__(
        self,
        listen: tuple[str, int] | None = (DEFAULT_HOST, DEFAULT_PORTS["otel"]),
        names: str = "otel",
        report_builder: ReportBuilder | None = None,
        client_timeout: float = CLIENT_TIMEOUT_S,
    ) -> None:
        if names not in NAMING_MODES:
            raise ValueError(f'--prometheus-names: "{names}" is not one of {", ".join(NAMING_MODES)}')
        super().__init__(preferred_temporality=CUMULATIVE_PREFERRED if names == "otel" else DELTA_PREFERRED)
        self.names = names
        self.registry = CollectorRegistry(auto_describe=False)
        self._cache = LatestMetrics()
        self._compat = NeuronMonitorCompat()
        self._report_builder = report_builder or StandingReportV2().update
        if names == "otel":
            self.registry.register(_OtelNamesCollector(self._cache))
        else:
            self.registry.register(self._compat)
        self._server: ScrapeServer | None = None
        self.address: tuple[str, int] | None = None
        if listen is not None:
            host, port = listen
            try:
                self._server = ScrapeServer(make_wsgi_app(self.registry), host, port, client_timeout)
            except OSError as error:
                raise OSError(
                    f"--prometheus: cannot listen on {host}:{port}: {error.strerror or error}"
                ) from None
            self.address = self._server.address

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: object
    ) -> MetricExportResult:
        try:
            if self.names == "otel":
                self._cache.update(metrics_data)
            else:
                self._compat.ingest(self._report_builder(metrics_data))
        except Exception:  # noqa: BLE001 - never break the pipeline over the scrape cache
            _logger.exception("Prometheus exporter could not take the latest metrics")
            return MetricExportResult.FAILURE
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: object) -> None:
        if self._server is not None:
            self._server.shutdown(timeout_millis / 1000)
            self._server = None


__all__ = [
    "DEFAULT_PORTS",
    "LatestMetrics",
    "NeuronMonitorCompat",
    "PrometheusExporter",
    "explicit_histogram_point",
    "parse_listen_address",
]
