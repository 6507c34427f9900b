"""Runs the real monitor pipeline (system groups, real /proc) in-process with given exporters.

Used where the test needs to reach into the exporters (backlog, drop counts) or to run while a
peer is restarted; the CLI-subprocess tests cover the same paths end to end.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from opentelemetry.sdk.metrics.export import MetricExporter

from otel_neuron.groups.system import MemoryInfoGroup, VcpuUsageGroup
from otel_neuron.pipeline import MonitorPipeline, ScheduledGroup
from otel_neuron.resource import build_resource
from otel_neuron.sources.instance import InstanceFacts

FACTS = InstanceFacts(
    instance_name="test-host",
    instance_id="i-0123456789abcdef0",
    instance_type="trn1.2xlarge",
    instance_availability_zone="us-west-2b",
    instance_availability_zone_id="usw2-az2",
    instance_region="us-west-2",
    ami_id="ami-0123456789abcdef0",
    subnet_id="subnet-0123abcd",
)


@contextmanager
def running_pipeline(
    exporters: Sequence[MetricExporter], vcpu_period: float = 0.5, memory_period: float = 1.0
) -> Iterator[MonitorPipeline]:
    groups = [ScheduledGroup(VcpuUsageGroup(), vcpu_period), ScheduledGroup(MemoryInfoGroup(), memory_period)]
    pipeline = MonitorPipeline(groups, exporters, build_resource(FACTS))
    stop = threading.Event()
    thread = threading.Thread(target=pipeline.run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield pipeline
    finally:
        stop.set()
        thread.join(5)
        pipeline.shutdown()
