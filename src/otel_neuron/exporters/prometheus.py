"""Prometheus /metrics: the latest exported samples, in OpenTelemetry or neuron-monitor names.

The pipeline calls `PrometheusExporter.export()` like any other exporter, with the groups that
were just collected. The exporter keeps the latest point of every series; a scrape serves that
cache and never triggers a collection, so scrapes cannot change the sampling cadence.

Two naming modes:

- `otel` (default port 9464): the OpenTelemetry names translated by
  opentelemetry-exporter-prometheus (`system.cpu.utilization` -> `system_cpu_utilization`,
  `target_info` for the resource, `otel_scope_*` labels).
- `neuron-monitor` (default port 8000): the names and labels of AWS's neuron-monitor-prometheus.py,
  computed from the guide's JSON report (see `NeuronMonitorCompat`), so existing dashboards,
  CloudWatch Container Insights and Datadog's aws_neuron check keep working.

    exporter = PrometheusExporter(listen=("127.0.0.1", 9464))
    exporter.export(metrics_data)         # from the pipeline
    # curl http://127.0.0.1:9464/metrics
    exporter.shutdown()
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from typing import Any

from opentelemetry.exporter.prometheus import _CustomCollector
from opentelemetry.sdk.metrics.export import (
    ExponentialHistogram,
    ExponentialHistogramDataPoint,
    HistogramDataPoint,
    Metric,
    MetricExporter,
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
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

from otel_neuron.exporters.scrape_server import CLIENT_TIMEOUT_S, ScrapeServer
from otel_neuron.exporters.temporality import CUMULATIVE_PREFERRED, DELTA_PREFERRED

_logger = logging.getLogger(__name__)

NAMING_MODES = ("otel", "neuron-monitor")
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
# neuron-monitor-prometheus.py compatibility


_RUNTIME_HELP = {
    "neuroncore_utilization_ratio": "NeuronCore utilization ratio",
    "neuron_runtime_vcpu_usage_ratio": "Runtime vCPU utilization ratio",
    "neuron_runtime_memory_used_bytes": "Runtime memory used bytes",
    "execution_latency_seconds": "Execution latency in seconds",
}
_COUNTER_HELP = {
    "execution_errors": "Execution errors total",
    "execution_status": "Execution status total",
    "hardware_ecc_events": "Hardware ecc events total",
}
_SYSTEM_HELP = {
    "system_vcpu_count": "System vCPU count",
    "system_vcpu_usage_ratio": "System CPU utilization ratio",
    "system_memory_total_bytes": "System memory total_bytes bytes",
    "system_memory_used_bytes": "System memory used_bytes bytes",
    "system_swap_total_bytes": "System swap total_bytes bytes",
    "system_swap_used_bytes": "System swap used_bytes bytes",
}
_GAUGE_HELP = {**_RUNTIME_HELP, **_SYSTEM_HELP}
_ECC_EVENTS = ("mem_ecc_corrected", "mem_ecc_uncorrected", "sram_ecc_corrected", "sram_ecc_uncorrected")
_VCPU_AGGREGATION = {"user": ("user", "nice"), "system": ("system", "io_wait", "irq", "soft_irq")}

Labels = tuple[tuple[str, str], ...]
Series = tuple[str, Labels, float]  # (family name, labels in order, value)


def instance_labels(instance_data: Mapping[str, Any]) -> dict[str, str]:
    """The base labels of every neuron-monitor series, from the report's instance_data."""
    return {
        "instance_name": str(instance_data.get("instance_name", "")),
        "instance_id": str(instance_data.get("instance_id", "")),
        "instance_type": str(instance_data.get("instance_type", "")),
        "availability_zone": str(instance_data.get("instance_availability_zone", "")),
        "region": str(instance_data.get("instance_region", "")),
        "subnet_id": str(instance_data.get("subnet_id", "")),
    }


def _labels(base: Mapping[str, str], **extra: Any) -> Labels:
    return tuple(base.items()) + tuple((key, str(value)) for key, value in extra.items())


def group_series(
    group: str, body: Mapping[str, Any], base: Mapping[str, str]
) -> tuple[list[Series], list[Series]]:
    """(gauge series, counter increments) of one metric group's JSON body, as the AWS script maps it.

    Gauges are the values of the period; counter increments are the period's counts, which
    the caller adds to running totals (the script's `Counter.inc`).
    """
    gauges: list[Series] = []
    increments: list[Series] = []
    if group == "neuroncore_counters":
        for core, data in (body.get("neuroncores_in_use") or {}).items():
            value = data.get("neuroncore_utilization")
            if value is not None:
                gauges.append(
                    ("neuroncore_utilization_ratio", _labels(base, neuroncore=int(core)), value / 100.0)
                )
    elif group in ("neuron_runtime_vcpu_usage", "vcpu_usage") and "vcpu_usage" in body:
        usage = body.get("vcpu_usage") or {}
        for field in ("user", "system"):
            if field in usage:
                gauges.append(
                    ("neuron_runtime_vcpu_usage_ratio", _labels(base, usage_type=field), usage[field] / 100.0)
                )
    elif group == "memory_used":
        used = body.get("neuron_runtime_used_bytes") or {}
        for location in ("host", "neuron_device"):
            if location in used:
                gauges.append(
                    (
                        "neuron_runtime_memory_used_bytes",
                        _labels(base, memory_location=location),
                        used[location],
                    )
                )
    elif group == "inference_stats":
        for error_type, count in (body.get("error_summary") or {}).items():
            increments.append(("execution_errors", _labels(base, error_type=error_type), count))
        summary = body.get("inference_summary") or body.get("execution_summary") or {}
        for status_type, count in summary.items():
            increments.append(("execution_status", _labels(base, status_type=status_type), count))
        total = (body.get("latency_stats") or {}).get("total_latency")
        if total is not None:
            for percentile, seconds in total.items():
                gauges.append(("execution_latency_seconds", _labels(base, percentile=percentile), seconds))
    elif group == "hw_counters":
        for device in body.get("neuron_devices") or []:
            for event in _ECC_EVENTS:
                if event in device:
                    labels = _labels(
                        base, event_type=event, neuron_device_index=device["neuron_device_index"]
                    )
                    increments.append(("hardware_ecc_events", labels, device[event]))
    elif group == "vcpu_usage":
        gauges.append(("system_vcpu_count", _labels(base), float(len(body.get("usage_data") or {}))))
        average = body.get("average_usage") or {}
        for usage_type, fields in _VCPU_AGGREGATION.items():
            value = min(sum(average.get(field, 0.0) for field in fields), 100.0)
            gauges.append(("system_vcpu_usage_ratio", _labels(base, usage_type=usage_type), value / 100.0))
    elif group == "memory_info":
        for kind, prefix in (("memory", "system_memory"), ("swap", "system_swap")):
            for stat in ("total_bytes", "used_bytes"):
                key = f"{kind}_{stat}"
                if key in body:
                    gauges.append((f"{prefix}_{stat}", _labels(base), float(body[key])))
    return gauges, increments


class NeuronMonitorCompat(Collector):
    """The state neuron-monitor-prometheus.py keeps, fed with (partial) JSON reports.

    `ingest(report)` takes the groups present in the report as freshly sampled: their gauges
    replace the previous values of that group, their counts are added to the `*_total` counters.
    A group or runtime whose `error` is not empty is skipped (its last values stay), as the script
    does. Runtime series carry `runtime_tag` (the runtime's `neuron_runtime_tag`, or its index).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._instance: dict[str, str] | None = None
        self._gauges: dict[tuple[str, str], list[Series]] = {}  # (runtime tag or "", group) -> series
        self._totals: dict[tuple[str, Labels], float] = {}
        self._created: dict[tuple[str, Labels], float] = {}

    def ingest(self, report: Report) -> None:
        with self._lock:
            instance_data = report.get("instance_data")
            if instance_data is not None or self._instance is None:
                self._instance = instance_labels(instance_data or {})
            base = self._instance
            for runtime in report.get("neuron_runtime_data") or []:
                tag = str(runtime.get("neuron_runtime_tag", runtime.get("neuron_runtime_index", "")))
                if runtime.get("error"):
                    _logger.debug("runtime %s error: %s", tag, runtime["error"])
                    continue
                self._ingest_groups(runtime.get("report") or {}, {**base, "runtime_tag": tag}, tag)
            self._ingest_groups(report.get("system_data") or {}, base, "")

    def _ingest_groups(self, groups: Mapping[str, Any], base: Mapping[str, str], tag: str) -> None:
        now = time.time()
        for group, body in groups.items():
            if not isinstance(body, Mapping) or body.get("error"):
                continue
            gauges, increments = group_series(group, body, base)
            self._gauges[(tag, group)] = gauges
            for name, labels, value in increments:
                key = (name, labels)
                self._totals[key] = self._totals.get(key, 0.0) + float(value)
                self._created.setdefault(key, now)

    def collect(self) -> Iterator[Any]:
        with self._lock:
            gauges = [series for group in self._gauges.values() for series in group]
            totals = dict(self._totals)
            created = dict(self._created)
            instance = self._instance
        families: dict[str, Any] = {}
        for name, labels, value in gauges:
            family = families.get(name)
            if family is None:
                family = families[name] = GaugeMetricFamily(
                    name, _GAUGE_HELP.get(name, name), labels=[key for key, _ in labels]
                )
            family.add_metric([item for _, item in labels], value)
        for (name, labels), value in totals.items():
            family = families.get(name)
            if family is None:
                family = families[name] = CounterMetricFamily(
                    name, _COUNTER_HELP.get(name, name), labels=[key for key, _ in labels]
                )
            family.add_metric([item for _, item in labels], value, created=created[(name, labels)])
        if instance is not None:
            info = InfoMetricFamily("instance", "EC2 instance information")
            info.add_metric([], instance)
            families["instance_info"] = info
        return iter(list(families.values()))


def _default_report_builder(metrics_data: MetricsData) -> Report:
    from otel_neuron.exporters.report_json import report_from_metrics

    return report_from_metrics(metrics_data)


# ---------------------------------------------------------------------------------------------
# The exporter the pipeline drives


class PrometheusExporter(MetricExporter):
    """A MetricExporter that serves what it was last given on an HTTP /metrics endpoint.

    `names="otel"` wants cumulative data (Prometheus counters are totals) and keeps the latest
    point per series. `names="neuron-monitor"` wants per-period (delta) data, renders it as the
    guide's JSON report with `report_builder`, and accumulates the counters itself.
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
        self._report_builder = report_builder or _default_report_builder
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
    "group_series",
    "instance_labels",
    "parse_listen_address",
]
