"""The real pipeline loop on the real clock: slow collections and slow exporters do not make it drift."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData

from otel_neuron.groups.base import MetricGroup, PointsByMetric
from otel_neuron.pipeline import MonitorPipeline, ScheduledGroup
from otel_neuron.resource import build_resource
from otel_neuron.sources.instance import InstanceFacts

PERIOD = 0.2
TICKS = 15


class SlowGroup(MetricGroup):
    """Takes 30 % of its period to sample and remembers when each collection began."""

    def __init__(self) -> None:
        super().__init__()
        self.instants: list[float] = []
        self.periods: list[float] = []

    def _sample_points(self, period: float) -> PointsByMetric:
        self.instants.append(time.monotonic())
        self.periods.append(period)
        time.sleep(0.3 * PERIOD)
        return {}

    @staticmethod
    def render(points: PointsByMetric) -> dict[str, Any]:
        return {}


class SlowExporter(MetricExporter):
    """Takes 20 % of the period per export."""

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        time.sleep(0.2 * PERIOD)
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        pass


def test_half_the_period_spent_collecting_and_exporting_causes_no_drift() -> None:
    group = SlowGroup()
    pipeline = MonitorPipeline(
        [ScheduledGroup(group, PERIOD)], [SlowExporter()], build_resource(InstanceFacts())
    )
    began = time.monotonic()
    try:
        pipeline.run(threading.Event(), max_reports=TICKS)
    finally:
        pipeline.shutdown()

    assert len(group.instants) == TICKS
    # A loop that sleeps a full period after its work would take 0.3 s per tick here, 50 % slow.
    mean_interval = (group.instants[-1] - group.instants[0]) / (TICKS - 1)
    assert mean_interval == pytest.approx(PERIOD, rel=0.01)
    assert sum(group.periods) / TICKS == pytest.approx(PERIOD, rel=0.01)
    assert group.instants[-1] - began == pytest.approx(TICKS * PERIOD, abs=0.05)
