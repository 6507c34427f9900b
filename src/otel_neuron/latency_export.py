"""The app's latency histograms exported as the recorder keeps them: no work per inference.

OpenTelemetry has no observable histogram, so by default `NeuronInstrumentor` records each
period's latencies into two SDK Histograms when a reader collects: one `Histogram.record` per
inference and histogram, which costs the app more than the recording itself. An app that pushes
its metrics through a `MetricExporter` (OTLP, console...) can wrap that exporter instead:

    exporter = otel_neuron.LatencyExporter(OTLPMetricExporter())
    provider = MeterProvider(metric_readers=[PeriodicExportingMetricReader(exporter)])
    otel_neuron.NeuronInstrumentor().instrument(meter_provider=provider, latency_exporter=exporter)

The instrumentor then hands the wrapper each collection's period histograms (the recorder's own
base-2 exponential buckets at scale 6), and the wrapper adds `neuron.inference.latency` and
`neuron.inference.device.latency` to every export, built from those buckets: exact count, sum,
minimum, maximum and buckets, in work proportional to the buckets (the spec's MetricProducer idea;
the Python SDK has no such API yet). A pull reader (Prometheus) cannot be wrapped this way and
keeps the default.

The wrapper declares its temporality to the reader (`DeclaredTemporalityExporter`): by default the
wrapped exporter's when it declares one, else OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE as
the SDK's OTLP exporters read it. For another exporter with a preference of its own, pass the
same `preferred_temporality` to both.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry.sdk.metrics import Histogram
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    ExponentialHistogram,
    Metric,
    MetricExporter,
    MetricExportResult,
    MetricsData,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.sdk.metrics.view import Aggregation
from opentelemetry.sdk.resources import Resource

from otel_neuron.exporters.temporality import DeclaredTemporalityExporter, otlp_preferred_temporality
from otel_neuron.groups.base import HistogramDelta, Point
from otel_neuron.histogram import merge_histograms
from otel_neuron.producer import SCOPE, histogram_data_point
from otel_neuron.semconv import DEVICE_LATENCY, INFERENCE_LATENCY, InstrumentSpec

LATENCY_INSTRUMENTS: tuple[InstrumentSpec, ...] = (INFERENCE_LATENCY, DEVICE_LATENCY)


@dataclass
class _Series:
    """One latency series: its attributes, the histogram since `start` (ns), and its latest `end`."""

    attributes: Mapping[str, Any]
    start: int
    end: int
    histogram: HistogramDelta


class LatencyExporter(DeclaredTemporalityExporter):
    """Wraps `exporter`, adding the recorder's latency histograms to each export (module docs)."""

    def __init__(
        self,
        exporter: MetricExporter,
        preferred_temporality: Mapping[type, AggregationTemporality] | None = None,
        preferred_aggregation: dict[type, Aggregation] | None = None,
    ) -> None:
        if preferred_temporality is None:
            if isinstance(exporter, DeclaredTemporalityExporter):
                preferred_temporality = exporter.preferred_temporality
            else:
                preferred_temporality = otlp_preferred_temporality()
        super().__init__(preferred_temporality, preferred_aggregation)
        self._exporter = exporter
        self._temporality = self.preferred_temporality.get(Histogram, AggregationTemporality.CUMULATIVE)
        self._lock = threading.Lock()
        # Per (instrument, attribute values): since the last export (delta) or since it began.
        self._series: dict[tuple[str, frozenset[tuple[str, Any]]], _Series] = {}

    def add_period(self, points: Mapping[str, Sequence[Point]], start: int, end: int) -> None:
        """One collection's period histograms by instrument name, over [start, end] (ns); called by
        the instrumentor as its reader collects, just before this exporter's export."""
        with self._lock:
            for spec in LATENCY_INSTRUMENTS:
                for attributes, value in points.get(spec.name, ()):
                    if isinstance(value, HistogramDelta):
                        self._add(spec.name, attributes, value, start, end)

    def _add(
        self, name: str, attributes: Mapping[str, Any], value: HistogramDelta, start: int, end: int
    ) -> None:
        key = (name, frozenset(attributes.items()))
        series = self._series.get(key)
        if series is None:
            self._series[key] = _Series(attributes, start, end, value)
            return
        merged = merge_histograms(series.histogram, value)
        assert merged is not None  # both are histograms
        series.histogram, series.end = merged, end

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        return self._exporter.export(
            with_metrics(metrics_data, self._take_metrics()), timeout_millis=timeout_millis, **kwargs
        )

    def _take_metrics(self) -> list[Metric]:
        with self._lock:
            series = list(self._series.items())
            if self._temporality is AggregationTemporality.DELTA:
                self._series = {}  # each export carries what happened since the previous one
        metrics = []
        for spec in LATENCY_INSTRUMENTS:
            points = [
                histogram_data_point(s.attributes, s.histogram, s.start, s.end)
                for (name, _), s in series
                if name == spec.name
            ]
            if points:
                data = ExponentialHistogram(points, self._temporality)
                metrics.append(Metric(spec.name, spec.description, spec.unit, data))
        return metrics

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self._exporter.force_flush(timeout_millis=timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self._exporter.shutdown(timeout_millis=timeout_millis, **kwargs)


def with_metrics(data: MetricsData, metrics: Sequence[Metric]) -> MetricsData:
    """`data` with `metrics` added to the otel_neuron scope of its first resource (made if absent)."""
    if not metrics:
        return data
    resources = list(data.resource_metrics) or [ResourceMetrics(Resource.get_empty(), [], "")]
    first = resources[0]
    scopes = list(first.scope_metrics)
    place = next((i for i, scope in enumerate(scopes) if scope.scope.name == SCOPE.name), None)
    if place is None:
        scopes.append(ScopeMetrics(SCOPE, list(metrics), ""))
    else:
        scope = scopes[place]
        scopes[place] = ScopeMetrics(scope.scope, [*scope.metrics, *metrics], scope.schema_url)
    resources[0] = ResourceMetrics(first.resource, scopes, first.schema_url)
    return MetricsData(resources)
