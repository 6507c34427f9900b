"""What a bridged neuron-monitor stream becomes in MetricsData: the stream's own system groups where
the monitor does not compute them, one point per series, and the stream's instance facts when the
monitor's own lookup finds no instance."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics.export import AggregationTemporality

from otel_neuron.groups.base import MetricGroup
from otel_neuron.groups.neuron_monitor import create_bridge_groups
from otel_neuron.producer import Collected, MetricsDataProducer
from otel_neuron.report import report_v2_from_metrics
from otel_neuron.resource import LookupResource, build_resource
from otel_neuron.sources.bounded_http import Deadline
from otel_neuron.sources.instance import InstanceFacts, InstanceLookup
from otel_neuron.sources.neuron_monitor_bridge import BridgeRegistry

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "neuron-monitor"
RUNTIME_GROUPS = ["neuroncore_counters", "inference_stats", "memory_used", "neuron_runtime_vcpu_usage"]
SYSTEM_GROUPS = ("vcpu_usage", "memory_info")


def report_lines(name: str) -> list[str]:
    kept = []
    for line in (FIXTURES / name).read_text().splitlines():
        try:
            json.loads(line)
        except ValueError:
            continue
        kept.append(line)
    return kept


class Source:
    """The groups of a 2.x config's one runtime and neuron_hw_counters on one stream, lines handed
    to the bridge's per-line step."""

    def __init__(self, system_groups: tuple[str, ...] = SYSTEM_GROUPS) -> None:
        self.registry = BridgeRegistry(stdin=io.BytesIO())
        self.groups: list[MetricGroup] = [
            *create_bridge_groups(
                0,
                "stdin:?tag_filter=.*",
                RUNTIME_GROUPS,
                0.8,
                registry=self.registry,
                hardware_info=True,
                system_groups=system_groups,
            ),
            *create_bridge_groups(1, "stdin:", ["hw_counters"], 0.8, registry=self.registry),
        ]
        for group in self.groups:
            group.prime()
        self.bridge = self.registry.bridges()[0]

    def collect(self, line: str | None = None) -> list[Collected]:
        if line is not None:
            assert self.bridge.take(line) is not None, self.bridge.parser.last_problem
        return [Collected(group, group.sample()) for group in self.groups]

    def close(self) -> None:
        for group in self.groups:
            group.close()  # type: ignore[attr-defined]


@pytest.fixture
def source() -> Iterator[Any]:
    made: list[Source] = []

    def make(*args: Any) -> Source:
        made.append(Source(*args))
        return made[-1]

    yield make
    for each in made:
        each.close()


def produce(collected: list[Collected], temporality: AggregationTemporality) -> Any:
    return MetricsDataProducer(build_resource(InstanceFacts()), temporality).produce(collected)


def repeated_points(data: Any) -> list[tuple[str, dict[str, Any]]]:
    repeated = []
    for metric in data.resource_metrics[0].scope_metrics[0].metrics:
        seen: set[frozenset[tuple[str, Any]]] = set()
        for point in metric.data.data_points:
            key = frozenset((point.attributes or {}).items())
            if key in seen:
                repeated.append((metric.name, dict(point.attributes or {})))
            seen.add(key)
    return repeated


@pytest.mark.parametrize("stream", ["inf2-xlarge.jsonl", "trn1-32xlarge.jsonl", "v2.jsonl"])
def test_no_metric_has_two_points_with_the_same_attributes(source: Any, stream: str) -> None:
    bridged = source()
    producers = {t: MetricsDataProducer(build_resource(InstanceFacts()), t) for t in AggregationTemporality}
    for line in report_lines(stream):
        collected = bridged.collect(line)
        for producer in producers.values():
            data = producer.produce(collected)
            assert repeated_points(data) == [], stream


def test_the_streams_system_groups_pass_through_as_given(source: Any) -> None:
    line = report_lines("trn1-32xlarge.jsonl")[0]
    report = report_v2_from_metrics(produce(source().collect(line), AggregationTemporality.DELTA))
    upstream = json.loads(line)["system_data"]
    for key in SYSTEM_GROUPS:
        got = {name: value for name, value in report["system_data"][key].items() if name != "period"}
        assert got == {name: value for name, value in upstream[key].items() if name != "period"}


def test_a_stream_without_them_has_no_system_sections_and_nor_has_a_stream_not_yet_read(source: Any) -> None:
    bridged = source()
    before = report_v2_from_metrics(produce(bridged.collect(), AggregationTemporality.DELTA))
    assert set(before["system_data"]) == {"neuron_hw_counters"}  # waiting: said by the stream's groups
    document = json.loads(report_lines("inf2-xlarge.jsonl")[0])
    document["system_data"] = {"neuron_hw_counters": document["system_data"]["neuron_hw_counters"]}
    report = report_v2_from_metrics(
        produce(bridged.collect(json.dumps(document)), AggregationTemporality.DELTA)
    )
    assert set(report["system_data"]) == {"neuron_hw_counters"}


def test_system_groups_the_monitor_computes_are_not_the_streams(source: Any) -> None:
    bridged = source(("memory_info",))  # the config asks for vcpu_usage: read from /proc, not here
    assert [group.report_key for group in bridged.groups if group.runtime_index is None] == ["memory_info"]
    line = report_lines("inf2-xlarge.jsonl")[0]
    report = report_v2_from_metrics(produce(bridged.collect(line), AggregationTemporality.DELTA))
    assert set(report["system_data"]) == {"neuron_hw_counters", "memory_info"}


# --------------------------------------------------------------------------- instance facts

STREAM_FACTS = json.loads(report_lines("inf2-xlarge.jsonl")[0])["instance_info"]  # no name, subnet, AZ id


def instance_info(resource: LookupResource) -> dict[str, Any]:
    data = MetricsDataProducer(resource()).produce([])
    return report_v2_from_metrics(data)["instance_info"]  # type: ignore[no-any-return]


def test_the_streams_instance_facts_stand_in_when_the_lookup_is_off() -> None:
    facts: dict[str, str] = {}
    resource = LookupResource(InstanceLookup.start(mode="off"), lambda: facts)
    assert instance_info(resource)["error"] == "instance metadata disabled (--imds off)"  # none yet
    facts = dict(STREAM_FACTS)
    info = instance_info(resource)
    assert info == {**dict.fromkeys(info, ""), **STREAM_FACTS}
    assert info["instance_type"] == "inf2.xlarge" and info["error"] == ""


def test_the_lookups_own_facts_win_when_it_found_the_instance() -> None:
    own = InstanceFacts(instance_id="i-00000000000000001", instance_type="trn1.2xlarge")
    resource = LookupResource(InstanceLookup(own, "http://127.0.0.1:9", Deadline(1.0)), lambda: STREAM_FACTS)
    info = instance_info(resource)
    assert (info["instance_id"], info["instance_type"]) == ("i-00000000000000001", "trn1.2xlarge")
