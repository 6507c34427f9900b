"""The JSON report as built from OpenTelemetry MetricsData, and the system groups' per-period math.

The CPU percentages below are worked out by hand from tests/fixtures/proc/{a,b}/stat (see its README).
"""

from __future__ import annotations

import copy
import io
import json
import math
import random
from pathlib import Path

import numpy
import psutil
import pytest
from guide_example import GUIDE_FACTS
from hypothesis import given
from hypothesis import strategies as st

from otel_neuron.exporters.report_json import ReportJsonExporter, encode_line
from otel_neuron.groups.base import AttributeColumn, GroupSample, Point, PointColumns
from otel_neuron.groups.system import (
    CONTEXT_SWITCHES,
    CPU_COUNT,
    CPU_UTILIZATION,
    MEMORY_LIMIT,
    MEMORY_USAGE,
    PAGING_USAGE,
    SEMCONV_CPU_MODE,
    MemoryInfoGroup,
    VcpuUsageGroup,
)
from otel_neuron.producer import Collected, MetricsDataProducer
from otel_neuron.report.routing import SectionPoints
from otel_neuron.report.system import percents_of, render_vcpu_usage
from otel_neuron.report.v1 import merge_report, report_from_metrics
from otel_neuron.report_schema import report_problem
from otel_neuron.resource import build_resource
from otel_neuron.sources.instance import InstanceFacts
from otel_neuron.sources.procfs import CPU_MODES, read_cpu_times, read_memory

PROC = Path(__file__).resolve().parents[1] / "fixtures" / "proc"
KIB = 1024
T0 = 1_700_000_000_000_000_000

FACTS = GUIDE_FACTS

# By hand from the fixture: cpu0 moved 100 ticks, cpu1 300 (40 of them steal, which is in no mode).
CPU0 = {"user": 30.0, "nice": 10.0, "system": 20.0, "idle": 35.0, "io_wait": 2.0, "irq": 1.0, "soft_irq": 2.0}
CPU1 = {
    "user": 33.33,
    "nice": 0.0,
    "system": 16.67,
    "idle": 36.67,
    "io_wait": 0.0,
    "irq": 0.0,
    "soft_irq": 0.0,
}
# Average of the two vCPUs' exact fractions (not of the rounded percentages).
AVERAGE = {
    "user": 31.67,
    "nice": 5.0,
    "system": 18.33,
    "idle": 35.83,
    "io_wait": 1.0,
    "irq": 0.5,
    "soft_irq": 1.0,
}


def stepping_reader(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """A /proc/stat reader that reads tree a, then tree b on every later call."""
    trees = [str(PROC / "a"), str(PROC / "b")]

    def read():  # type: ignore[no-untyped-def]
        monkeypatch.setattr(psutil, "PROCFS_PATH", trees[0])
        times = read_cpu_times()
        if len(trees) > 1:
            trees.pop(0)
        return times

    return read


def fake_memory(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    def read():  # type: ignore[no-untyped-def]
        monkeypatch.setattr(psutil, "PROCFS_PATH", str(PROC / "a"))
        return read_memory()

    return read


def render(collected: list[Collected], facts: InstanceFacts = FACTS) -> dict:  # type: ignore[type-arg]
    return report_from_metrics(MetricsDataProducer(build_resource(facts)).produce(collected))


# --- CPU % math


def test_first_sample_after_the_baseline_gives_the_hand_computed_percentages(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    group = VcpuUsageGroup(read=stepping_reader(monkeypatch))
    group.prime()  # reads tree a: the baseline taken at start-up
    sample = group.sample()  # reads tree b

    assert sample.error == ""
    body = render([Collected(group, sample)])["system_data"]["vcpu_usage"]
    assert body["usage_data"] == {"0": CPU0, "1": CPU1}
    assert body["average_usage"] == AVERAGE
    assert body["context_switch_count"] == 12345
    assert body["error"] == ""


def test_the_sampled_points_are_pairs_and_become_sdk_points_for_otlp(monkeypatch: pytest.MonkeyPatch) -> None:
    group = VcpuUsageGroup(read=stepping_reader(monkeypatch))
    group.prime()
    sample = group.sample()
    pairs = list(sample.points[CPU_UTILIZATION.name])
    assert len(pairs) == 14 and pairs[0] == ({"cpu.logical_number": 0, "cpu.mode": "user"}, 0.3)
    assert sample.points[CPU_UTILIZATION.name][1] == pairs[1] and sample.points[CPU_UTILIZATION.name] == pairs

    data = MetricsDataProducer(build_resource(FACTS)).produce([Collected(group, sample)])
    metrics = {metric.name: metric for metric in data.resource_metrics[0].scope_metrics[0].metrics}
    points = list(metrics[CPU_UTILIZATION.name].data.data_points)
    assert [(dict(point.attributes), point.value) for point in points] == pairs
    assert {point.time_unix_nano - point.start_time_unix_nano for point in points} == {
        int(sample.period * 1e9)
    }


def test_a_vcpu_without_steal_sums_to_100_and_steal_is_in_no_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    group = VcpuUsageGroup(read=stepping_reader(monkeypatch))
    group.prime()
    usage = render([Collected(group, group.sample())])["system_data"]["vcpu_usage"]["usage_data"]
    assert sum(usage["0"].values()) == pytest.approx(100.0, abs=0.05)
    assert sum(usage["1"].values()) == pytest.approx(
        100.0 * 260 / 300, abs=0.05
    )  # 40 of 300 ticks were steal


def test_without_a_baseline_nothing_since_boot_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    group = VcpuUsageGroup(read=stepping_reader(monkeypatch))
    body = render([Collected(group, group.sample())])["system_data"]["vcpu_usage"]
    # Tree a alone holds ~60 % idle since boot; a monitor must never print that as the period's usage.
    assert all(value == 0.0 for cpu in body["usage_data"].values() for value in cpu.values())
    assert body["context_switch_count"] == 0


def test_a_failing_reader_becomes_the_groups_error_and_the_report_stays_valid() -> None:
    def broken():  # type: ignore[no-untyped-def]
        raise FileNotFoundError(2, "No such file or directory", "/nowhere/stat")

    group = VcpuUsageGroup(read=broken)
    group.prime()
    sample = group.sample()
    report = render([Collected(group, sample)])

    assert report["system_data"]["vcpu_usage"] == {
        "period": pytest.approx(sample.period, abs=1e-9),
        "error": "[Errno 2] No such file or directory: '/nowhere/stat'",
    }
    assert report_problem(report) == ""


def test_memory_info_from_the_fake_meminfo(monkeypatch: pytest.MonkeyPatch) -> None:
    group = MemoryInfoGroup(read=fake_memory(monkeypatch))
    group.prime()
    body = render([Collected(group, group.sample())])["system_data"]["memory_info"]
    assert {k: v for k, v in body.items() if k != "period"} == {
        "memory_total_bytes": 16384000 * KIB,
        "memory_used_bytes": (16384000 - 12000000) * KIB,  # MemTotal - MemAvailable
        "swap_total_bytes": 2097152 * KIB,
        "swap_used_bytes": (2097152 - 1572864) * KIB,
        "error": "",
    }


# --- hand-built samples


def vcpu_sample(period: float, fractions: list[dict[str, float]], switches: int, at: int = T0) -> GroupSample:
    mode_names = {"io_wait": "iowait", "irq": "interrupt", "soft_irq": "softirq"}
    points: list[Point] = [
        ({"cpu.logical_number": cpu, "cpu.mode": mode_names.get(mode, mode)}, value)
        for cpu, modes in enumerate(fractions)
        for mode, value in modes.items()
    ]
    return GroupSample(
        period,
        "",
        at,
        {
            CPU_UTILIZATION.name: points,
            CONTEXT_SWITCHES.name: [({}, switches)],
            CPU_COUNT.name: [({}, len(fractions))],
        },
    )


def memory_sample(
    period: float, total: int, used: int, swap_total: int, swap_used: int, at: int = T0
) -> GroupSample:
    return GroupSample(
        period,
        "",
        at,
        {
            MEMORY_LIMIT.name: [({}, total)],
            MEMORY_USAGE.name: [({"system.memory.state": "used"}, used)],
            PAGING_USAGE.name: [
                ({"system.paging.state": "used"}, swap_used),
                ({"system.paging.state": "free"}, swap_total - swap_used),
            ],
        },
    )


ZERO = dict.fromkeys(("user", "nice", "system", "idle", "io_wait", "irq", "soft_irq"), 0.0)


def test_hand_built_samples_become_the_guides_report() -> None:
    cpu0 = {**ZERO, "user": 0.3441, "system": 0.2796, "idle": 0.3763}
    cpu1 = {**ZERO, "user": 0.5685, "system": 0.2842, "idle": 0.1473}
    collected = [
        Collected(VcpuUsageGroup(), vcpu_sample(0.999974868, [cpu0, cpu1], 123456)),
        Collected(MemoryInfoGroup(), memory_sample(5.346411129, 49345835008, 16042344448, 0, 0)),
    ]

    report = render(collected)

    assert report == {
        "neuron_runtime_data": [],
        "system_data": {
            "vcpu_usage": {
                "period": 0.999974868,
                "average_usage": {**ZERO, "user": 45.63, "system": 28.19, "idle": 26.18},
                "usage_data": {
                    "0": {**ZERO, "user": 34.41, "system": 27.96, "idle": 37.63},
                    "1": {**ZERO, "user": 56.85, "system": 28.42, "idle": 14.73},
                },
                "context_switch_count": 123456,
                "error": "",
            },
            "memory_info": {
                "period": 5.346411129,
                "memory_total_bytes": 49345835008,
                "memory_used_bytes": 16042344448,
                "swap_total_bytes": 0,
                "swap_used_bytes": 0,
                "error": "",
            },
        },
        "instance_data": {**FACTS.as_report()},
    }
    assert report_problem(report) == ""
    assert list(report["system_data"]["vcpu_usage"]["usage_data"]) == ["0", "1"]


def test_usage_data_keys_are_in_numeric_order_past_ten_vcpus() -> None:
    fractions = [{**ZERO, "idle": 1.0}] * 12
    usage = render([Collected(VcpuUsageGroup(), vcpu_sample(1.0, fractions, 0))])["system_data"]["vcpu_usage"]
    assert list(usage["usage_data"]) == [str(n) for n in range(12)]
    assert usage["average_usage"]["idle"] == 100.0


def mode_major(cpus: int, fractions: list[float], column: type = list) -> PointColumns:
    """Utilization points laid out as VcpuUsageGroup samples them: every vCPU's user share, then nice..."""
    attributes = [
        {"cpu.logical_number": cpu, "cpu.mode": SEMCONV_CPU_MODE[mode]}
        for mode in CPU_MODES
        for cpu in range(cpus)
    ]
    return PointColumns(column(attributes), fractions)


@pytest.mark.parametrize("values", [list, numpy.array], ids=["list", "array as sampled"])
@pytest.mark.parametrize("column", [list, AttributeColumn])
@pytest.mark.parametrize("seed", range(5))
def test_vcpu_rows_by_columns_are_the_point_by_point_rows(seed: int, column: type, values: type) -> None:
    rng = random.Random(seed)
    choices = [0.0, -0.0, 1.0, 0.125, 1 / 3, 2 / 97, 0.004999999999999999, 0.005, 0.02925, 0.96045, 0.71395]
    fractions = [rng.choice([*choices, rng.random()]) for _ in range(7 * 12)]
    columns = mode_major(12, values(fractions), column)
    for _ in range(2):  # the second time every fraction is one seen before
        by_columns = render_vcpu_usage({CPU_UTILIZATION.name: columns})
        point_by_point = render_vcpu_usage({CPU_UTILIZATION.name: list(columns)})
        # As the report line writes them (-0.0 is not 0.0; orjson takes no numpy number).
        assert encode_line(by_columns) == encode_line(point_by_point)
        assert by_columns["usage_data"]["0"] == {
            mode: round(share * 100.0, 2) for mode, share in zip(CPU_MODES, fractions[0::12])
        }


def test_a_numpy_column_reads_as_python_numbers_point_by_point() -> None:
    columns = mode_major(2, numpy.array([0.02925] * 14))
    assert {type(value) for _, value in columns} == {float}
    assert type(columns[3][1]) is float
    assert columns == mode_major(2, [0.02925] * 14)


@given(
    st.one_of(
        st.floats(0.0, 1.0),
        # Near ties of the two-decimal percent: (k + 1/2) / 10_000 and its neighbouring doubles.
        st.builds(
            lambda k, ulps: _nudged((k + 0.5) / 10_000, ulps), st.integers(0, 9_999), st.integers(-3, 3)
        ),
    )
)
def test_vcpu_percents_are_the_doubles_round_gives(fraction: float) -> None:
    (by_columns,) = percents_of([fraction])
    assert by_columns == round(fraction * 100.0, 2) and math.copysign(1, by_columns) == math.copysign(
        1, fraction
    )


def _nudged(value: float, ulps: int) -> float:
    for _ in range(abs(ulps)):
        value = math.nextafter(value, math.inf if ulps > 0 else -math.inf)
    return value


@pytest.mark.parametrize("column", [list, AttributeColumn])
def test_vcpu_points_in_another_layout_are_rendered_point_by_point(column: type) -> None:
    columns = mode_major(3, [0.5] * 21)
    by_cpu = column(sorted(columns.attributes, key=lambda a: a["cpu.logical_number"]))
    cpu_major = PointColumns(by_cpu, [0.5] * 21)
    floats = PointColumns(
        column([{**a, "cpu.logical_number": float(a["cpu.logical_number"])} for a in columns.attributes]),
        [0.5] * 21,
    )
    for points in (cpu_major, floats):
        assert render_vcpu_usage({CPU_UTILIZATION.name: points}) == render_vcpu_usage(
            {CPU_UTILIZATION.name: list(points)}
        )
    assert list(render_vcpu_usage({CPU_UTILIZATION.name: floats})["usage_data"]) == ["0.0", "1.0", "2.0"]


def test_a_groups_attribute_column_cannot_change_so_what_is_derived_from_it_is_kept() -> None:
    column = AttributeColumn(
        [{"neuron.runtime.index": 1, "neuron.core.index": 0}, {"neuron.runtime.index": 1}]
    )
    with pytest.raises(TypeError):
        column[0]["neuron.runtime.index"] = 2  # type: ignore[index]
    with pytest.raises(TypeError):
        column[1].update({"neuron.runtime.index": 2})
    assert column[0] == {"neuron.runtime.index": 1, "neuron.core.index": 0}
    assert copy.deepcopy(column[0]) == column[0] and dict(column[1]) == {"neuron.runtime.index": 1}
    calls: list[int] = []

    def count(attributes: AttributeColumn) -> int:
        calls.append(1)
        return len(attributes)

    assert column.view(count) == 2 and column.view(count) == 2 and len(calls) == 1


def test_a_block_spanning_runtimes_is_split_by_each_points_runtime_index() -> None:
    attributes = AttributeColumn([{"neuron.runtime.index": i % 2, "neuron.core.index": i} for i in range(4)])
    sections = SectionPoints()
    sections.file("neuron.core.utilization", [PointColumns(attributes, [0.1, 0.2, 0.3, 0.4])])
    odd = sections.of(["neuron.core.utilization"], 1)["neuron.core.utilization"]
    assert [(a["neuron.core.index"], v) for a, v in odd] == [(1, 0.2), (3, 0.4)]


def test_instance_error_travels_through_the_resource_into_instance_data() -> None:
    facts = InstanceFacts(error="not an EC2 instance")
    report = render([Collected(MemoryInfoGroup(), memory_sample(1.0, 10, 5, 0, 0))], facts)
    assert report["instance_data"] == {**InstanceFacts().as_report(), "error": "not an EC2 instance"}


# --- consolidation


def test_merge_keeps_the_last_values_of_groups_that_were_not_due() -> None:
    vcpu, memory = VcpuUsageGroup(), MemoryInfoGroup()
    producer = MetricsDataProducer(build_resource(FACTS))
    standing = report_from_metrics(producer.produce([Collected(memory, memory_sample(2.0, 100, 40, 10, 1))]))
    memory_before = json.loads(json.dumps(standing["system_data"]["memory_info"]))

    update = report_from_metrics(
        producer.produce([Collected(vcpu, vcpu_sample(1.0, [{**ZERO, "idle": 1.0}], 7))])
    )
    merge_report(standing, update)

    assert standing["system_data"]["memory_info"] == memory_before
    assert standing["system_data"]["vcpu_usage"]["context_switch_count"] == 7


def test_the_exporter_writes_one_complete_report_per_export() -> None:
    out = io.StringIO()
    exporter = ReportJsonExporter(runtime_count=0, out=out)
    vcpu, memory = VcpuUsageGroup(), MemoryInfoGroup()
    producer = MetricsDataProducer(build_resource(FACTS))

    exporter.export(
        producer.produce(
            [
                Collected(vcpu, vcpu_sample(1.0, [ZERO], 1)),
                Collected(memory, memory_sample(2.0, 100, 40, 0, 0)),
            ]
        )
    )
    exporter.export(producer.produce([Collected(vcpu, vcpu_sample(1.0, [ZERO], 2))]))
    exporter.export(
        producer.produce(
            [
                Collected(vcpu, vcpu_sample(1.0, [ZERO], 3)),
                Collected(memory, memory_sample(2.0, 100, 50, 0, 0)),
            ]
        )
    )

    lines = out.getvalue().splitlines()
    reports = [json.loads(line) for line in lines]
    assert [r["system_data"]["vcpu_usage"]["context_switch_count"] for r in reports] == [1, 2, 3]
    assert [r["system_data"]["memory_info"]["memory_used_bytes"] for r in reports] == [40, 40, 50]
    assert all(report_problem(r) == "" for r in reports)
    assert out.getvalue().endswith("\n") and len(lines) == 3


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16"])
def test_a_text_file_gets_the_lines_in_order_after_what_was_written_before(
    tmp_path: Path, encoding: str
) -> None:
    path = tmp_path / "reports.jsonl"
    producer = MetricsDataProducer(build_resource(FACTS))
    vcpu = VcpuUsageGroup()
    with open(path, "w", encoding=encoding) as out:
        exporter = ReportJsonExporter(runtime_count=0, out=out)
        out.write("# started\n")  # still in the text layer's buffer when the first report goes
        exporter.export(producer.produce([Collected(vcpu, vcpu_sample(1.0, [ZERO], 1))]))
        out.write("# between\n")
        exporter.export(producer.produce([Collected(vcpu, vcpu_sample(1.0, [ZERO], 2))]))
    lines = path.read_text(encoding=encoding).splitlines()
    assert lines[0] == "# started" and lines[2] == "# between" and len(lines) == 4
    switches = [json.loads(lines[i])["system_data"]["vcpu_usage"]["context_switch_count"] for i in (1, 3)]
    assert switches == [1, 2]


def test_a_closed_stream_marks_the_exporter_closed_without_raising() -> None:
    out = io.StringIO()
    exporter = ReportJsonExporter(runtime_count=0, out=out)
    out.close()
    producer = MetricsDataProducer(build_resource(FACTS))
    exporter.export(producer.produce([Collected(VcpuUsageGroup(), vcpu_sample(1.0, [ZERO], 1))]))
    assert exporter.closed


def test_validate_says_what_is_wrong_on_one_line_and_the_report_still_goes_out() -> None:
    out, problems = io.StringIO(), io.StringIO()
    exporter = ReportJsonExporter(runtime_count=0, out=out, validate=report_problem, problems=problems)
    producer = MetricsDataProducer(build_resource(FACTS))
    memory = MemoryInfoGroup()
    exporter.export(producer.produce([Collected(memory, memory_sample(1.0, 100, 40, 0, 0))]))
    assert problems.getvalue() == ""
    exporter.report["system_data"]["memory_info"]["swap_used_bytes"] = -1  # as a broken source might
    exporter.export(producer.produce([]))
    assert problems.getvalue() == (
        "otel-neuron-monitor: report does not match the schema: "
        "system_data.memory_info.swap_used_bytes: -1 is less than the minimum of 0\n"
    )
    assert len(out.getvalue().splitlines()) == 2
