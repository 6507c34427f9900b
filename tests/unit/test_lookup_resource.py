"""Reports follow the instance lookup: "in progress" while it runs, its outcome from then on."""

from __future__ import annotations

import io
import json

from otel_neuron.exporters.report_json import ReportJsonExporter
from otel_neuron.groups.base import InstrumentSpec, Kind, MetricGroup, PointsByMetric
from otel_neuron.pipeline import MonitorPipeline, ScheduledGroup
from otel_neuron.resource import LookupResource
from otel_neuron.sources.bounded_http import Deadline
from otel_neuron.sources.instance import DEADLINE_S, LOOKUP_IN_PROGRESS, InstanceFacts, InstanceLookup

LOAD = InstrumentSpec("test.load", "1", "a gauge", Kind.GAUGE)
ENDPOINT = "http://127.0.0.1:9"  # never contacted: the lookup's thread is not started here


class SteadyGroup(MetricGroup):
    report_key = "steady"
    instruments = (LOAD,)

    def _sample_points(self, period: float) -> PointsByMetric:
        return {LOAD.name: [({}, 1.0)]}


def test_reports_say_in_progress_until_the_deadline_then_carry_the_outcome_for_good() -> None:
    now = [50.0]
    lookup = InstanceLookup(None, ENDPOINT, Deadline(DEADLINE_S, clock=lambda: now[0]))
    out = io.StringIO()
    exporter = ReportJsonExporter(runtime_count=0, out=out)
    pipeline = MonitorPipeline([ScheduledGroup(SteadyGroup(), 0.5)], [exporter], LookupResource(lookup))
    try:
        pipeline.tick([0.5])
        now[0] += DEADLINE_S
        pipeline.tick([0.5])
        pipeline.tick([0.5])
    finally:
        pipeline.shutdown()

    instance = [json.loads(line)["instance_data"] for line in out.getvalue().splitlines()]
    timed_out = InstanceFacts(error=f"instance metadata at {ENDPOINT}: timed out")
    assert instance == [LOOKUP_IN_PROGRESS.as_report()] + [timed_out.as_report()] * 2


def test_a_known_outcome_is_in_the_first_report() -> None:
    off = InstanceFacts(error="instance metadata disabled (--imds off)")
    lookup = InstanceLookup(off, ENDPOINT, Deadline(DEADLINE_S))
    out = io.StringIO()
    pipeline = MonitorPipeline(
        [ScheduledGroup(SteadyGroup(), 0.5)],
        [ReportJsonExporter(runtime_count=0, out=out)],
        LookupResource(lookup),
    )
    try:
        pipeline.tick([0.5])
    finally:
        pipeline.shutdown()

    assert json.loads(out.getvalue())["instance_data"] == off.as_report()
