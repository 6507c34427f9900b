"""A report section whose points did not change is not rendered again, and a change always shows."""

from __future__ import annotations

import io
import json

import pytest

from otel_neuron.exporters.report_json import ReportJsonExporter
from otel_neuron.groups.base import AttributeColumn, GroupSample, PointColumns
from otel_neuron.groups.system import MEMORY_LIMIT, MEMORY_USAGE, PAGING_USAGE, MemoryInfoGroup
from otel_neuron.producer import Collected, MetricsDataProducer
from otel_neuron.report.section_table import SECTIONS_V1
from otel_neuron.resource import build_resource
from otel_neuron.sources.instance import InstanceFacts

T0 = 1_700_000_000_000_000_000


def memory_points(total: int, used: int) -> dict:  # type: ignore[type-arg]
    return {
        MEMORY_LIMIT.name: [({}, total)],
        MEMORY_USAGE.name: [({"system.memory.state": "used"}, used)],
        PAGING_USAGE.name: [({"system.paging.state": "used"}, 0), ({"system.paging.state": "free"}, 0)],
    }


def counted_renderings(monkeypatch: pytest.MonkeyPatch, repeats: bool = True) -> list[int]:
    """memory_info's 1.x renderer, counting its calls, and said to repeat (or not): the memo is asked
    for (or not)."""
    renders: list[int] = []
    section = SECTIONS_V1["memory_info"]

    def render(points: dict) -> dict:  # type: ignore[type-arg]
        renders.append(1)
        return section.render(points)

    monkeypatch.setitem(SECTIONS_V1, "memory_info", section._replace(render=render, repeats=repeats))  # type: ignore[arg-type]
    return renders


class Exports:
    """An exporter fed by one producer; `send` exports one sample of the memory group."""

    def __init__(self) -> None:
        self.out = io.StringIO()
        self.exporter = ReportJsonExporter(runtime_count=0, out=self.out)
        self.producer = MetricsDataProducer(build_resource(InstanceFacts(error="test")))
        self.group = MemoryInfoGroup()

    def send(self, period: float, points: dict, error: str = "") -> dict:  # type: ignore[type-arg]
        sample = GroupSample(period, error, T0, points if not error else {})
        self.exporter.export(self.producer.produce([Collected(self.group, sample)]))
        return json.loads(self.out.getvalue().splitlines()[-1])["system_data"]["memory_info"]


def test_unchanged_points_give_the_same_section_with_this_periods_period(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    renders = counted_renderings(monkeypatch)
    exports = Exports()
    first = exports.send(1.0, memory_points(100, 40))
    kept = exports.exporter.report["system_data"]["memory_info"]
    second = exports.send(2.5, memory_points(100, 40))  # equal points in new objects

    assert first == {**second, "period": 1.0} and second["period"] == 2.5
    assert len(renders) == 1  # rendered once: the second report reused it
    assert exports.send(1.0, memory_points(100, 41))["memory_used_bytes"] == 41
    assert exports.send(1.0, {}, error="cannot read /proc/meminfo")["error"] == "cannot read /proc/meminfo"
    assert exports.send(1.0, memory_points(100, 41))["memory_used_bytes"] == 41
    assert kept["memory_used_bytes"] == 40  # what went out earlier is never changed afterwards


def test_points_a_group_changes_in_place_are_rendered_again(monkeypatch: pytest.MonkeyPatch) -> None:
    counted_renderings(monkeypatch)
    exports = Exports()
    points = memory_points(100, 40)
    assert exports.send(1.0, points)["memory_used_bytes"] == 40
    points[MEMORY_USAGE.name][0] = ({"system.memory.state": "used"}, 70)  # the same list, refilled
    assert exports.send(1.0, points)["memory_used_bytes"] == 70

    columns = PointColumns(AttributeColumn([{}]), [100])
    assert exports.send(1.0, {**points, MEMORY_LIMIT.name: columns})["memory_total_bytes"] == 100
    columns.values[0] = 200  # a column's values refilled in place
    assert exports.send(1.0, {**points, MEMORY_LIMIT.name: columns})["memory_total_bytes"] == 200


def test_sections_of_groups_that_do_not_repeat_are_rendered_every_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    renders = counted_renderings(monkeypatch, repeats=False)
    exports = Exports()
    assert exports.send(1.0, memory_points(100, 40))["memory_used_bytes"] == 40
    assert exports.send(1.0, memory_points(100, 40))["memory_used_bytes"] == 40
    assert len(renders) == 2
