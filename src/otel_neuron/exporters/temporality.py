"""The temporality maps exporters declare (`MetricExporter(preferred_temporality=...)`).

The producer reads an exporter's preference for counters to decide between per-period
increases (DELTA: the JSON report, the neuron-monitor Prometheus names) and running totals.
Current amounts (up-down counters, gauges) are always reported as they stand.
"""

from __future__ import annotations

from opentelemetry.sdk.metrics import (
    Counter,
    Histogram,
    ObservableCounter,
    ObservableGauge,
    ObservableUpDownCounter,
    UpDownCounter,
)
from opentelemetry.sdk.metrics.export import AggregationTemporality

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
