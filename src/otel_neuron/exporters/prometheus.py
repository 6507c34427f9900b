"""Prometheus /metrics: the latest exported samples, in OpenTelemetry or neuron-monitor names.

The pipeline calls `PrometheusExporter.export()` like any other exporter, with the groups that
were just collected. The exporter keeps the latest point of every series and renders the whole
exposition then, once per collection (`exporters.exposition.Exposition`); a scrape is answered
with those bytes (gzipped once when asked) and never triggers a collection or a rendering, so
scrapes cannot change the sampling cadence and cost little however often they come.

Two naming modes:

- `otel` (default port 9464): the OpenTelemetry names translated as opentelemetry-exporter-prometheus
  translates them (`system.cpu.utilization` -> `system_cpu_utilization`, `target_info` for the
  resource, `otel_scope_*` labels: `exporters.otel_names.LatestMetrics`).
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
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from opentelemetry.sdk.metrics.export import MetricExportResult, MetricsData
from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric as Family
from prometheus_client.registry import Collector

from otel_neuron.exporters.exposition import Exposition, make_exposition_app
from otel_neuron.exporters.neuron_monitor_names import NeuronMonitorCompat
from otel_neuron.exporters.options import NAMING_MODES
from otel_neuron.exporters.otel_names import LatestMetrics
from otel_neuron.exporters.prometheus_translation import SERVED_BOUNDS, explicit_histogram_point
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


# ---------------------------------------------------------------------------------------------
# The exporter the pipeline drives


class PrometheusExporter(DeclaredTemporalityExporter):
    """A MetricExporter that serves what it was last given on an HTTP /metrics endpoint.

    `names="otel"` wants cumulative data (Prometheus counters are totals) and keeps the latest
    point per series. `names="neuron-monitor"` wants per-period (delta) data, renders it with
    `report_builder` as the standing neuron-monitor 2.x report (what `--output-format 2` writes;
    default `report.v2.StandingReportV2().update`) and hands that to `NeuronMonitorCompat`, which
    accumulates the counters itself (their `_created` times from `clock`).
    Each export renders the exposition; scrapes get its bytes. `registry` collects the same
    families (prometheus_client's encoders and `generate_latest` read it).
    `listen=None` starts no server. A scraper has `client_timeout` seconds to send its request and
    as long again to read the answer (see `scrape_server`).
    """

    def __init__(
        self,
        listen: tuple[str, int] | None = (DEFAULT_HOST, DEFAULT_PORTS["otel"]),
        names: str = "otel",
        report_builder: ReportBuilder | None = None,
        client_timeout: float = CLIENT_TIMEOUT_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if names not in NAMING_MODES:
            raise ValueError(f'--prometheus-names: "{names}" is not one of {", ".join(NAMING_MODES)}')
        super().__init__(preferred_temporality=CUMULATIVE_PREFERRED if names == "otel" else DELTA_PREFERRED)
        self.names = names
        self._latest = LatestMetrics()
        self._compat = NeuronMonitorCompat(clock)
        self._report_builder = report_builder or StandingReportV2().update
        self._exposition = Exposition.of([])
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_LatestFamilies(self))
        self._server: ScrapeServer | None = None
        self.address: tuple[str, int] | None = None
        if listen is not None:
            host, port = listen
            app = make_exposition_app(lambda: self._exposition, self.registry)
            try:
                self._server = ScrapeServer(app, host, port, client_timeout)
            except OSError as error:
                raise OSError(
                    f"--prometheus: cannot listen on {host}:{port}: {error.strerror or error}"
                ) from None
            self.address = self._server.address

    @property
    def exposition(self) -> Exposition:
        """What scrapes are answered with: the exposition of the latest export."""
        return self._exposition

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: object
    ) -> MetricExportResult:
        try:
            if self.names == "otel":
                self._latest.update(metrics_data)
                exposition = self._latest.render()
            else:
                self._compat.ingest(self._report_builder(metrics_data))
                exposition = Exposition.of(list(self._compat.collect()))
        except Exception:  # noqa: BLE001 - never break the pipeline over the scrape cache
            _logger.exception("Prometheus exporter could not take the latest metrics")
            return MetricExportResult.FAILURE
        self._exposition = exposition  # scrapes from now on get this one
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: object) -> None:
        if self._server is not None:
            self._server.shutdown(timeout_millis / 1000)
            self._server = None


class _LatestFamilies(Collector):
    """The families of the exporter's latest exposition, as a prometheus_client collector."""

    def __init__(self, exporter: PrometheusExporter) -> None:
        self._exporter = exporter

    def collect(self) -> Iterable[Family]:
        return iter(self._exporter.exposition.families)


__all__ = [
    "DEFAULT_PORTS",
    "SERVED_BOUNDS",
    "LatestMetrics",
    "NeuronMonitorCompat",
    "PrometheusExporter",
    "explicit_histogram_point",
    "parse_listen_address",
]
