"""The temporality maps exporters declare, and how the pipeline reads them back.

The producer reads an exporter's preference for counters to decide between per-period
increases (DELTA: the JSON report, the neuron-monitor Prometheus names) and running totals.
Current amounts (up-down counters, gauges) are always reported as they stand.

The SDK keeps what `MetricExporter(preferred_temporality=...)` was given to itself, so an exporter
the pipeline should feed per-period counts derives from `DeclaredTemporalityExporter`, which also
keeps it as a public attribute. OTLP's preference comes from the environment, read as the SDK's
OTLP exporters read it (`otlp_preferred_temporality`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from types import MappingProxyType

from opentelemetry.sdk.environment_variables import OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE
from opentelemetry.sdk.metrics import (
    Counter,
    Histogram,
    ObservableCounter,
    ObservableGauge,
    ObservableUpDownCounter,
    UpDownCounter,
)
from opentelemetry.sdk.metrics.export import AggregationTemporality, MetricExporter
from opentelemetry.sdk.metrics.view import Aggregation

CUMULATIVE = AggregationTemporality.CUMULATIVE
DELTA = AggregationTemporality.DELTA

CUMULATIVE_PREFERRED: dict[type, AggregationTemporality] = dict.fromkeys(
    (Counter, UpDownCounter, Histogram, ObservableCounter, ObservableUpDownCounter, ObservableGauge),
    CUMULATIVE,
)
DELTA_PREFERRED: dict[type, AggregationTemporality] = {
    **CUMULATIVE_PREFERRED,
    Counter: DELTA,
    Histogram: DELTA,
    ObservableCounter: DELTA,
}
# OTLP's "lowmemory": delta for the synchronous counters and histograms only.
LOW_MEMORY_PREFERRED: dict[type, AggregationTemporality] = {
    **CUMULATIVE_PREFERRED,
    Counter: DELTA,
    Histogram: DELTA,
}
_OTLP_PREFERENCES = {
    "CUMULATIVE": CUMULATIVE_PREFERRED,
    "DELTA": DELTA_PREFERRED,
    "LOWMEMORY": LOW_MEMORY_PREFERRED,
}


class DeclaredTemporalityExporter(MetricExporter):
    """A MetricExporter whose temporality preference can be read back: `preferred_temporality`."""

    def __init__(
        self,
        preferred_temporality: Mapping[type, AggregationTemporality],
        preferred_aggregation: dict[type, Aggregation] | None = None,
    ) -> None:
        super().__init__(
            preferred_temporality=dict(preferred_temporality), preferred_aggregation=preferred_aggregation
        )
        self.preferred_temporality: Mapping[type, AggregationTemporality] = MappingProxyType(
            dict(preferred_temporality)
        )


def counter_temporality(exporter: MetricExporter) -> AggregationTemporality:
    """How `exporter` wants counters: as it declares (`DeclaredTemporalityExporter`), else running
    totals, the SDK's default."""
    if isinstance(exporter, DeclaredTemporalityExporter):
        return exporter.preferred_temporality.get(Counter, CUMULATIVE)
    return CUMULATIVE


def otlp_preferred_temporality(
    environ: Mapping[str, str] | None = None,
) -> dict[type, AggregationTemporality]:
    """OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE as the SDK's OTLP exporters read it:
    "cumulative" (the default), "delta" or "lowmemory", in any case; anything else is cumulative
    (the SDK exporter logs a warning about it)."""
    env = os.environ if environ is None else environ
    value = env.get(OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE, "CUMULATIVE").strip().upper()
    return dict(_OTLP_PREFERENCES.get(value, CUMULATIVE_PREFERRED))
