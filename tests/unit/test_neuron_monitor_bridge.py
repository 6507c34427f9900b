"""The bridge fed fixture streams through a pipe, like `neuron-monitor | otel-neuron-monitor --from-stdin`."""

from __future__ import annotations

import io
import itertools
import json
import logging
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from neuron_monitor_mutations import hostile_lines
from opentelemetry.sdk.resources import Resource

from otel_neuron.exporters.report_json import ReportJsonExporter
from otel_neuron.groups.base import GroupSample, HistogramDelta
from otel_neuron.groups.neuron_monitor import create_bridge_groups
from otel_neuron.pipeline import MonitorPipeline, ScheduledGroup
from otel_neuron.report.section_table import SECTIONS_V1
from otel_neuron.report_schema import report_problem
from otel_neuron.semconv import INFERENCE_COUNT
from otel_neuron.sources import neuron_monitor_application
from otel_neuron.sources.line_streams import FdLines
from otel_neuron.sources.neuron_monitor_address import generated_config, parse_bridge_address
from otel_neuron.sources.neuron_monitor_bridge import BridgeRegistry

FIXTURES = Path(__file__).parents[1] / "fixtures" / "neuron-monitor"
ALL_GROUPS = [
    "neuroncore_counters",
    "inference_stats",
    "memory_used",
    "hw_counters",
    "neuron_runtime_vcpu_usage",
]


class Pipe:
    """A stdin stand-in: lines written by the test arrive at the bridge's reader thread."""

    def __init__(self) -> None:
        read_fd, self._write_fd = os.pipe()
        self.reader: IO[bytes] = os.fdopen(read_fd, "rb")

    def write_lines(self, lines: list[str]) -> None:
        os.write(self._write_fd, ("\n".join(lines) + "\n").encode())

    def close(self) -> None:
        os.close(self._write_fd)


@pytest.fixture
def pipe() -> Iterator[Pipe]:
    pipe = Pipe()
    yield pipe
    try:
        pipe.close()
    except OSError:
        pass


def lines(name: str) -> list[str]:
    return (FIXTURES / name).read_text().splitlines()


def sample_all(groups) -> dict[str, GroupSample]:  # type: ignore[no-untyped-def]
    return {group.report_key: group.sample() for group in groups}


def rendered(groups, samples: dict[str, GroupSample]) -> dict[str, dict]:  # type: ignore[no-untyped-def]
    return {
        group.report_key: SECTIONS_V1[group.report_key].render(samples[group.report_key].points)
        for group in groups
    }


def test_v1_stream_feeds_all_five_groups(pipe: Pipe) -> None:
    registry = BridgeRegistry(stdin=pipe.reader)
    groups = create_bridge_groups(0, "stdin:", ALL_GROUPS, 0.8, registry=registry)
    for group in groups:
        group.prime()
    before = sample_all(groups)
    assert all("waiting for the first report from stdin" in s.error for s in before.values())

    bridge = registry.bridges()[0]
    for line in lines("v1.jsonl"):  # each line as the stdin reader hands it over
        bridge.take(line)
    assert bridge.parser.lines == 5
    assert bridge.parser.malformed == 1
    samples = sample_all(groups)
    assert all(sample.error == "" for sample in samples.values()), samples
    report = rendered(groups, samples)
    stats = report["inference_stats"]
    assert stats["inference_summary"]["completed"] == 330
    assert stats["inference_summary"]["completed_with_err"] == 2
    assert stats["error_summary"]["generic"] == 2
    assert stats["latency_stats"]["total_latency"]["p50"] == pytest.approx(0.013, rel=0.01)
    assert stats["latency_stats"]["total_latency"]["p100"] == 0.02
    # hw_counters repeats its 2 s group on every line: each distinct body counts once (1 + 3)
    assert report["hw_counters"]["neuron_devices"] == [
        {
            "neuron_device_index": 0,
            "mem_ecc_corrected": 4,
            "mem_ecc_uncorrected": 0,
            "sram_ecc_uncorrected": 0,
        }
    ]
    cores = report["neuroncore_counters"]["neuroncores_in_use"]
    assert cores["0"]["neuroncore_utilization"] == pytest.approx(41.5, abs=0.01)  # 40..43 time-weighted
    assert cores["1"] == {"neuroncore_utilization": 10.0, "loaded_models": ["my_model:sg01"]}
    memory = report["memory_used"]
    assert memory["neuron_runtime_used_bytes"] == {"host": 1000003, "neuron_device": 2000000}
    assert memory["loaded_models"][0]["subgraphs"]["sg00"]["neuroncore_index"] == 0
    assert report["neuron_runtime_vcpu_usage"]["vcpu_usage"] == {"user": 42.01, "system": 12.34}

    # Nothing new arrived: counts of the next period are zero, amounts and utilization stay.
    again = rendered(groups, sample_all(groups))
    assert again["inference_stats"]["inference_summary"]["completed"] == 0
    assert again["inference_stats"]["latency_stats"]["total_latency"] is None
    assert again["neuroncore_counters"]["neuroncores_in_use"]["0"]["neuroncore_utilization"] == 43.0
    assert again["memory_used"]["neuron_runtime_used_bytes"]["host"] == 1000003

    pipe.close()
    assert bridge.finished.wait(timeout=5)
    closed = sample_all(groups)
    assert all(s.error == "stdin closed: no more neuron-monitor reports" for s in closed.values())
    for group in groups:
        group.close()  # type: ignore[attr-defined]


def test_v2_runtimes_are_selected_by_tag_and_survive_a_restart(pipe: Pipe) -> None:
    registry = BridgeRegistry(stdin=pipe.reader)
    app_a = create_bridge_groups(0, "stdin:?tag_filter=^app_a$", ALL_GROUPS, 0.8, registry=registry)
    app_b = create_bridge_groups(1, "stdin:?tag_filter=app_b", ALL_GROUPS, 0.8, registry=registry)
    assert len(registry.bridges()) == 1  # one stream shared by both configured runtimes
    for group in [*app_a, *app_b]:
        group.prime()
    stream = lines("v2.jsonl")
    bridge = registry.bridges()[0]

    for line in stream[:2]:  # each line as the stdin reader hands it over
        bridge.take(line)
    first = {group.report_key: group.sample() for group in app_a}
    for line in stream[2:]:  # a truncated line, garbage, then app_a restarted as pid 1300
        bridge.take(line)
    assert bridge.parser.lines == 5
    second = {group.report_key: group.sample() for group in app_a}

    def completed(sample: GroupSample) -> int:
        points = sample.points[INFERENCE_COUNT.name]
        return sum(
            int(value)
            for attributes, value in points
            if attributes["neuron.inference.outcome"] == "completed"
        )

    assert completed(first["inference_stats"]) == 110
    assert completed(second["inference_stats"]) == 70  # the restarted runtime's counts add on, no reset
    errors = {a["error.type"]: v for a, v in first["inference_stats"].points["neuron.inference.errors"]}
    assert errors["model"] == 2  # 2.x model errors travel through OTel
    report_a = rendered(app_a, second)
    # Memory is the restarted runtime's alone: the old pid left the stream.
    assert report_a["memory_used"]["neuron_runtime_used_bytes"] == {
        "host": 6997643264,
        "neuron_device": 12519788544,
    }
    assert set(report_a["neuroncore_counters"]["neuroncores_in_use"]) == {"0", "1"}
    categories = {
        a["neuron.memory.category"]: v
        for a, v in second["memory_used"].points["neuron.runtime.host_memory.usage"]
    }
    assert categories["dma_buffers"] == 1048576
    flops = dict(
        (a["neuron.core.index"], v)
        for a, v in second["neuroncore_counters"].points["neuron.core.effective_flops"]
    )
    assert flops == {0: 1.2e12, 1: 1.1e12}

    samples_b = {group.report_key: group.sample() for group in app_b}
    report_b = rendered(app_b, samples_b)
    assert report_b["inference_stats"]["inference_summary"]["completed"] == 15
    assert set(report_b["neuroncore_counters"]["neuroncores_in_use"]) == {"2", "3"}
    # 2.x ECC is a system group: each configured runtime sees every device, counted once per body
    ecc = {
        (a["neuron.device.index"], a["hw.error.type"]): v
        for a, v in samples_b["hw_counters"].points["neuron.device.ecc.errors"]
    }
    assert ecc[(0, "sram_ecc_corrected")] == 3
    assert ecc[(1, "mem_ecc_uncorrected")] == 0
    for group in [*app_a, *app_b]:
        group.close()  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("stdin:/path", "takes no path"),
        ("stdin:?config=x.json", "config= applies to neuron-monitor"),
        ("neuron-monitor:?colour=red", "unknown option 'colour'"),
        ("neuron-monitor:?tag_filter=(", "is not a regular expression"),
        ("neuron-monitor:?index=first", "index must be a runtime index"),
        ("unix:/run/neuron.sock", "is not a neuron-monitor: or stdin: address"),
    ],
)
def test_bad_addresses_are_rejected_with_the_reason(address: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_bridge_address(address)


def test_addresses() -> None:
    default = parse_bridge_address("neuron-monitor:")
    assert default.binary == "/opt/aws/neuron/bin/neuron-monitor" and default.config is None
    custom = parse_bridge_address("neuron-monitor:/usr/bin/nm?config=/etc/nm.json&tag_filter=a.*&index=2")
    assert (custom.binary, custom.config, custom.tag_filter, custom.index) == (
        "/usr/bin/nm",
        "/etc/nm.json",
        "a.*",
        2,
    )


def test_generated_config_is_a_2x_config_for_the_requested_groups() -> None:
    config = generated_config({"inference_stats": 1.0, "hw_counters": 2.0, "memory_used": 0.5})
    assert config["period"] == "500ms"
    assert config["neuron_runtimes"] == [
        {
            "tag_filter": ".*",
            "metrics": [
                {"type": "execution_stats", "period": "1s"},
                {"type": "memory_used", "period": "500ms"},
            ],
        }
    ]
    assert config["system_metrics"] == [{"type": "neuron_hw_counters", "period": "2s"}]


def test_unknown_group_is_refused() -> None:
    with pytest.raises(ValueError, match="does not provide the group 'vcpu_usage'"):
        create_bridge_groups(0, "stdin:", ["vcpu_usage"], 0.8, registry=BridgeRegistry())


# --------------------------------------------------------------------------- one line never ends the bridge


def completed(sample: GroupSample) -> int:
    return sum(
        int(value)  # type: ignore[arg-type]
        for attributes, value in sample.points[INFERENCE_COUNT.name]
        if attributes["neuron.inference.outcome"] == "completed"
    )


def test_a_line_of_400_digits_is_survived_and_the_next_line_bridged(pipe: Pipe) -> None:
    registry = BridgeRegistry(stdin=pipe.reader)
    (stats,) = create_bridge_groups(0, "stdin:", ["inference_stats"], 0.8, registry=registry)
    stats.prime()
    hostile = lines("out-of-range.jsonl")
    pipe.write_lines([hostile[0], hostile[-1]])  # a percentile of 400 digits, then a good line
    pipe.close()
    bridge = registry.bridges()[0]
    assert bridge.finished.wait(timeout=5)  # the reader went on to the end of the stream
    assert (bridge.parser.lines, bridge.parser.reports, bridge.parser.malformed) == (2, 2, 0)
    sample = stats.sample()
    assert sample.error == ""
    assert completed(sample) == 50 + 80
    stats.close()  # type: ignore[attr-defined]


def test_every_hostile_line_is_used_or_skipped_and_the_reader_goes_on(pipe: Pipe) -> None:
    registry = BridgeRegistry(stdin=pipe.reader)
    groups = create_bridge_groups(0, "stdin:", ALL_GROUPS, 0.8, registry=registry)
    for group in groups:
        group.prime()
    pipe.write_lines(lines("out-of-range.jsonl"))
    pipe.close()
    bridge = registry.bridges()[0]
    assert bridge.finished.wait(timeout=5)
    assert (bridge.parser.lines, bridge.parser.reports, bridge.parser.malformed) == (5, 4, 1)
    assert "line 4: not JSON" in bridge.parser.last_problem  # 20,000 nested arrays
    samples = sample_all(groups)
    assert all(sample.error == "" for sample in samples.values()), samples
    assert completed(samples["inference_stats"]) == 50 + 60 + 70 + 80
    for group in groups:
        group.close()  # type: ignore[attr-defined]


class FailingStream:
    """A stream whose reading fails once after its first line; read again, it gives the rest."""

    def __init__(self, first: list[bytes], rest: list[bytes]) -> None:
        self._reads = [first, rest]
        self.drained = False

    def __iter__(self) -> Iterator[bytes]:
        first = not self.drained
        lines = self._reads[0] if first else self._reads[1]
        self.drained = True
        yield from lines
        if first:
            raise RuntimeError("the stream broke")


def test_a_reader_that_fails_says_so_in_the_groups_error_and_the_end_of_input_ends_it() -> None:
    good = [line.encode() for line in lines("v2.jsonl")]
    stream = FailingStream(good[:1], good[1:])
    registry = BridgeRegistry(stdin=stream)  # type: ignore[arg-type]
    groups = create_bridge_groups(0, "stdin:", ["inference_stats", "memory_used"], 0.8, registry=registry)
    for group in groups:
        group.prime()
    bridge = registry.bridges()[0]
    assert bridge.finished.wait(timeout=5)
    assert stream.drained  # read to its end, so a writer never blocks on it
    for group in groups:
        assert group.sample().error == "reading stdin failed: the stream broke"
        assert group.source_finished()  # the monitor ends, as at the end of its input
        group.close()  # type: ignore[attr-defined]


def test_a_report_that_cannot_be_folded_is_skipped_counted_and_the_next_one_used(
    pipe: Pipe, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real = neuron_monitor_application.histogram_from_percentiles

    def fails_for_a_single_execution(percentiles: Mapping[str, float], count: int) -> HistogramDelta:
        if count == 1:  # a fault nobody foresaw, in folding rather than parsing
            raise ArithmeticError("cannot place the percentiles")
        return real(percentiles, count)

    monkeypatch.setattr(
        neuron_monitor_application, "histogram_from_percentiles", fails_for_a_single_execution
    )
    registry = BridgeRegistry(stdin=pipe.reader)
    (stats,) = create_bridge_groups(0, "stdin:", ["inference_stats"], 0.8, registry=registry)
    stats.prime()
    document = json.loads(lines("v1.jsonl")[0])
    document["neuron_runtime_data"][0]["report"]["inference_stats"]["inference_summary"]["completed"] = 1
    with caplog.at_level(logging.WARNING):
        pipe.write_lines([json.dumps(document), lines("v1.jsonl")[1]])
        pipe.close()
        bridge = registry.bridges()[0]
        assert bridge.finished.wait(timeout=5)
    assert (bridge.parser.lines, bridge.parser.reports, bridge.parser.malformed) == (2, 1, 1)
    assert (
        "line 1: could not be used: ArithmeticError: cannot place the percentiles"
        in bridge.parser.last_problem
    )
    assert any("skipped malformed report line 1" in record.message for record in caplog.records)
    assert completed(stats.sample()) == 110  # the second line's
    stats.close()  # type: ignore[attr-defined]


class BridgedReports:
    """The monitor's JSON report (schema-checked) of the five bridge groups, made after each line the
    bridge's reader takes."""

    def __init__(self) -> None:
        self._pipe = Pipe()  # stays empty: lines are handed to the reader's per-line step
        registry = BridgeRegistry(stdin=self._pipe.reader)
        self.groups = create_bridge_groups(0, "stdin:", ALL_GROUPS, 0.8, registry=registry)
        self.bridge = registry.bridges()[0]
        self._out, self.problems = io.StringIO(), io.StringIO()
        exporter = ReportJsonExporter(1, out=self._out, validate=report_problem, problems=self.problems)
        scheduled = [ScheduledGroup(group, 1.0) for group in self.groups]
        self.pipeline = MonitorPipeline(scheduled, [exporter], Resource.create({}))
        for group in self.groups:
            group.prime()

    def after(self, line: str) -> dict:  # type: ignore[type-arg]
        self.bridge.take(line)
        self._out.seek(0)
        self._out.truncate()
        self.pipeline.tick([1.0])
        return json.loads(self._out.getvalue())

    def close(self) -> None:
        self.pipeline.shutdown()
        self._pipe.close()


@pytest.fixture(scope="module")
def bridged_reports() -> Iterator[BridgedReports]:
    reports = BridgedReports()
    yield reports
    reports.close()


_sentinels = itertools.count(1_000_001)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(hostile_lines(), min_size=1, max_size=3))
def test_fuzz_every_report_written_matches_the_schema_and_the_reader_goes_on(
    bridged_reports: BridgedReports, hostile: list[str]
) -> None:
    parser = bridged_reports.bridge.parser
    lines_before = parser.lines
    for line in hostile:
        bridged_reports.after(line)
        assert bridged_reports.problems.getvalue() == ""  # --validate's complaint, had there been one
    assert parser.lines == lines_before + len(hostile)
    assert parser.reports + parser.malformed == parser.lines
    # A good line after them is bridged as if nothing had happened.
    good = json.loads(lines("v1.jsonl")[0])
    count = next(_sentinels)
    good["neuron_runtime_data"][0]["report"]["inference_stats"]["inference_summary"]["completed"] = count
    report = bridged_reports.after(json.dumps(good))
    assert bridged_reports.problems.getvalue() == ""
    stats = report["neuron_runtime_data"][0]["report"]["inference_stats"]
    assert stats["error"] == "" and stats["inference_summary"]["completed"] == count


# --------------------------------------------------------------------------- applications, and nothing lost


class Bridged:
    """Bridge groups of one configured runtime fed line by line through the reader's per-line step."""

    def __init__(
        self, address: str = "stdin:", groups: list[str] | None = None, hardware_info: bool = True
    ) -> None:
        self._pipe = Pipe()  # stays empty: lines are handed to `take`
        self.registry = BridgeRegistry(stdin=self._pipe.reader)
        created = create_bridge_groups(
            0, address, groups or ALL_GROUPS, 0.8, registry=self.registry, hardware_info=hardware_info
        )
        self.groups = {group.report_key: group for group in created}
        self.bridge = self.registry.bridges()[0]
        for group in created:
            group.prime()

    def feed(self, *lines: str) -> None:
        for line in lines:
            assert self.bridge.take(line) is not None, self.bridge.parser.last_problem

    def sample(self, key: str) -> GroupSample:
        sample = self.groups[key].sample()
        assert sample.error == "", sample.error
        return sample

    def close(self) -> None:
        for group in self.groups.values():
            group.close()  # type: ignore[attr-defined]
        self._pipe.close()


@pytest.fixture
def bridged() -> Iterator[Bridged]:
    made: list[Bridged] = []

    def make(*args: object, **kwargs: object) -> Bridged:
        made.append(Bridged(*args, **kwargs))  # type: ignore[arg-type]
        return made[-1]

    yield make  # type: ignore[misc]
    for bridge in made:
        bridge.close()


App = tuple[object, object]


def app_of(attributes: Mapping[str, object]) -> App:
    return attributes.get("process.pid"), attributes.get("neuron.runtime.tag")


def points_of(sample: GroupSample, name: str, app: App | None = None) -> list[tuple[dict, object]]:
    return [
        (dict(attributes), value)
        for attributes, value in sample.points.get(name, ())
        if app is None or app_of(attributes) == app
    ]


def values_by(sample: GroupSample, name: str, *keys: str, app: App | None = None) -> dict:
    found = {}
    for attributes, value in points_of(sample, name, app):
        found[tuple(attributes.get(key) for key in keys) if len(keys) > 1 else attributes.get(keys[0])] = (
            value
        )
    return found


INF2 = lines("inf2-xlarge.jsonl")
TRN1 = lines("trn1-32xlarge.jsonl")
INF2_APP = (7685, "7685")
TRAINING = (457402, "367")
SERVING = (461023, "llama_b")
RUNTIME_KEYS = ["neuroncore_counters", "inference_stats", "memory_used", "neuron_runtime_vcpu_usage"]


def test_every_application_point_carries_its_pid_tag_and_configured_index(bridged) -> None:  # type: ignore[no-untyped-def]
    source = bridged()
    source.feed(INF2[0])
    for key in RUNTIME_KEYS:
        sample = source.sample(key)
        assert sample.points and any(sample.points.values())
        for name, points in sample.points.items():
            for attributes, _ in points:
                assert attributes["neuron.runtime.index"] == 0, (key, name)
                assert app_of(attributes) == INF2_APP, (key, name)
    # neuron_hw_counters is a system group in 2.x: device facts, no application
    ecc = source.sample("hw_counters").points["neuron.device.ecc.errors"]
    assert ecc and all(app_of(attributes) == (None, None) for attributes, _ in ecc)


def test_two_applications_of_one_configured_runtime_stay_two(bridged) -> None:  # type: ignore[no-untyped-def]
    source = bridged("stdin:?tag_filter=.*")
    source.feed(TRN1[0])
    upstream = {
        (entry["pid"], entry["neuron_runtime_tag"]): entry["report"]
        for entry in json.loads(TRN1[0])["neuron_runtime_data"]
    }
    memory = source.sample("memory_used")
    cores = source.sample("neuroncore_counters")
    for app in (TRAINING, SERVING):
        used = upstream[app]["memory_used"]["neuron_runtime_used_bytes"]
        assert values_by(memory, "neuron.runtime.memory.usage", "neuron.memory.location", app=app) == {
            "host": used["host"],
            "neuron_device": used["neuron_device"],
        }
        in_use = upstream[app]["neuroncore_counters"]["neuroncores_in_use"]
        utilization = values_by(cores, "neuron.core.utilization", "neuron.core.index", app=app)
        assert utilization == {
            int(core): body["neuroncore_utilization"] / 100 for core, body in in_use.items()
        }
    assert {app_of(a) for a, _ in cores.points["neuron.core.utilization"]} == {TRAINING, SERVING}
    # The application's own tag, not the configured index, names it.
    assert len(values_by(cores, "neuron.core.utilization", "neuron.core.index", app=SERVING)) == 16


def test_a_1x_entry_is_an_application_tagged_by_its_runtime_index(bridged) -> None:  # type: ignore[no-untyped-def]
    source = bridged(groups=["inference_stats"], hardware_info=False)
    source.feed(lines("v1.jsonl")[0])
    counts = source.sample("inference_stats").points["neuron.inference.count"]
    assert {app_of(attributes) for attributes, _ in counts} == {(None, "0")}


def test_one_report_in_the_period_gives_its_percentiles_exactly_and_only_those(bridged) -> None:  # type: ignore[no-untyped-def]
    source = bridged(groups=["inference_stats"])
    source.feed(INF2[0])
    sample = source.sample("inference_stats")
    latency = json.loads(INF2[0])["neuron_runtime_data"][0]["report"]["execution_stats"]["latency_stats"]
    total = values_by(sample, "neuron.inference.latency.percentile", "neuron.latency.percentile")
    device = values_by(sample, "neuron.inference.device.latency.percentile", "neuron.latency.percentile")
    assert total == latency["total_latency"]  # p0, p50, p99, p100: no p1, p25 or p75 invented
    assert device == latency["device_latency"]
    (histogram,) = [value for _, value in sample.points["neuron.inference.latency"]]
    assert (
        histogram.min == latency["total_latency"]["p0"] and histogram.max == latency["total_latency"]["p100"]
    )


def test_several_reports_in_the_period_merge_percentiles_min_max_exact_the_rest_estimated(bridged) -> None:  # type: ignore[no-untyped-def]
    source = bridged(groups=["inference_stats"])
    source.feed(*INF2)
    sample = source.sample("inference_stats")
    given = [
        json.loads(line)["neuron_runtime_data"][0]["report"]["execution_stats"]["latency_stats"][
            "total_latency"
        ]
        for line in INF2
    ]
    merged = values_by(sample, "neuron.inference.latency.percentile", "neuron.latency.percentile")
    assert list(merged) == ["p0", "p50", "p99", "p100"]
    assert merged["p0"] == min(report["p0"] for report in given)
    assert merged["p100"] == max(report["p100"] for report in given)
    for name in ("p50", "p99"):  # from the merged histogram: within its bucket of the reports' values
        low, high = min(report[name] for report in given), max(report[name] for report in given)
        assert low * 0.98 <= merged[name] <= high * 1.02, name


def test_model_errors_12_in_12_out_and_only_the_error_types_upstream_gave(bridged) -> None:  # type: ignore[no-untyped-def]
    source = bridged(groups=["inference_stats"])
    source.feed(*INF2)
    sample = source.sample("inference_stats")
    errors = values_by(sample, "neuron.inference.errors", "error.type")
    assert errors == {"numerical": 0, "transient": 0, "model": 12, "runtime": 0, "hardware": 0}
    outcomes = values_by(sample, "neuron.inference.count", "neuron.inference.outcome")
    assert outcomes["completed"] == 1200 + 1185 + 1213 and outcomes["completed_with_err"] == 12
    assert set(outcomes) == {
        "completed",
        "completed_with_err",
        "completed_with_num_err",
        "timed_out",
        "incorrect_input",
        "failed_to_queue",
    }
    # A period without a fresh report: the same keys, counting 0.
    again = values_by(source.sample("inference_stats"), "neuron.inference.errors", "error.type")
    assert again == dict.fromkeys(errors, 0)


def test_sram_ecc_corrected_6_in_6_out_with_all_four_kinds(bridged) -> None:  # type: ignore[no-untyped-def]
    source = bridged(groups=["hw_counters"])
    source.feed(*INF2)
    ecc = values_by(
        source.sample("hw_counters"), "neuron.device.ecc.errors", "neuron.device.index", "hw.error.type"
    )
    assert ecc == {
        (0, "mem_ecc_corrected"): 0,
        (0, "mem_ecc_uncorrected"): 0,
        (0, "sram_ecc_uncorrected"): 0,
        (0, "sram_ecc_corrected"): 6,
    }


def test_usage_breakdown_of_the_runtime_each_core_and_each_subgraph(bridged) -> None:  # type: ignore[no-untyped-def]
    source = bridged(groups=["memory_used"])
    source.feed(TRN1[0])
    sample = source.sample("memory_used")
    report = {
        (entry["pid"], entry["neuron_runtime_tag"]): entry["report"]["memory_used"]
        for entry in json.loads(TRN1[0])["neuron_runtime_data"]
    }[SERVING]
    breakdown = report["neuron_runtime_used_bytes"]["usage_breakdown"]
    host = values_by(sample, "neuron.runtime.host_memory.usage", "neuron.memory.category", app=SERVING)
    assert host == breakdown["host"]
    per_core = values_by(
        sample, "neuron.core.memory.usage", "neuron.core.index", "neuron.memory.category", app=SERVING
    )
    assert per_core == {
        (int(core), category): amount
        for core, categories in breakdown["neuroncore_memory_usage"].items()
        for category, amount in categories.items()
    }
    by_category = values_by(
        sample,
        "neuron.subgraph.memory.category.usage",
        "neuron.model.id",
        "neuron.subgraph.name",
        "neuron.memory.location",
        "neuron.memory.category",
        app=SERVING,
    )
    expected = {
        (model["model_id"], name, location, category): amount
        for model in report["loaded_models"]
        for name, subgraph in model["subgraphs"].items()
        for location, categories in subgraph["memory_used_bytes"]["usage_breakdown"].items()
        for category, amount in categories.items()
    }
    assert by_category == expected and len(expected) == 24 * 2 * 8
    running = values_by(sample, "neuron.model.running", "neuron.model.id", app=SERVING)
    assert running == {model["model_id"]: int(model["is_running"]) for model in report["loaded_models"]}
    assert points_of(sample, "neuron.model.memory.usage") == []  # 2.x models have no memory of their own


def test_flops_come_out_under_the_key_upstream_used(bridged) -> None:  # type: ignore[no-untyped-def]
    inf2 = bridged(groups=["neuroncore_counters"])
    inf2.feed(INF2[0])
    sample = inf2.sample("neuroncore_counters")
    assert points_of(sample, "neuron.core.flops") == []
    assert values_by(sample, "neuron.core.effective_flops", "neuron.core.index") == {
        0: 3617392064,
        1: 3584012288,
    }
    trn1 = bridged(groups=["neuroncore_counters"])
    trn1.feed(TRN1[0])
    sample = trn1.sample("neuroncore_counters")
    assert points_of(sample, "neuron.core.effective_flops") == []
    assert points_of(sample, "neuron.core.flops", TRAINING) == []  # its cores gave utilization only
    assert values_by(sample, "neuron.core.flops", "neuron.core.index", app=SERVING)[16] == 1.9e12 + 16e9


def test_v3d_gives_each_physical_neuroncore_its_utilization(bridged) -> None:  # type: ignore[no-untyped-def]
    document = json.loads(INF2[0])
    cores = document["neuron_runtime_data"][0]["report"]["neuroncore_counters"]["neuroncores_in_use"]
    cores["0"]["v3d"] = {
        "nc_v3.0": {"neuroncore_utilization": 21.01},
        "nc_v3.1": {"neuroncore_utilization": 63.01},
    }
    source = bridged(groups=["neuroncore_counters"])
    source.feed(json.dumps(document))
    physical = values_by(
        source.sample("neuroncore_counters"),
        "neuron.core.physical.utilization",
        "neuron.core.index",
        "neuron.core.physical",
    )
    assert physical == {(0, "nc_v3.0"): 0.2101, (0, "nc_v3.1"): 0.6301}


def test_upstream_errors_of_the_entry_and_of_each_group_are_points(bridged) -> None:  # type: ignore[no-untyped-def]
    source = bridged()
    document = json.loads(TRN1[0])
    document["neuron_runtime_data"][1]["error"] = "lost contact with the runtime"
    source.feed(json.dumps(document))
    vcpu = source.sample("neuron_runtime_vcpu_usage")
    errors = {
        (app_of(attributes), attributes.get("neuron.monitor.group")): (attributes["error.message"], value)
        for attributes, value in vcpu.points["neuron.monitor.application.error"]
    }
    assert errors == {
        (TRAINING, None): ("", 0),
        (TRAINING, "neuron_runtime_vcpu_usage"): ("open/proc/457402/stat:nosuchfileordirectory", 1),
        (SERVING, None): ("lost contact with the runtime", 1),
        (SERVING, "neuron_runtime_vcpu_usage"): ("", 0),
    }
    # The failed group's numbers, as upstream gave them, still come through.
    assert values_by(vcpu, "neuron.runtime.cpu.utilization", "cpu.mode", app=TRAINING) == {
        "user": 0,
        "system": 0,
    }


def test_an_application_that_leaves_has_no_points_from_the_next_period_on(bridged) -> None:  # type: ignore[no-untyped-def]
    source = bridged()
    source.feed(TRN1[0])
    assert all(
        TRAINING in {app_of(a) for points in source.sample(key).points.values() for a, _ in points}
        for key in RUNTIME_KEYS
    )
    without_training = json.loads(TRN1[1])
    del without_training["neuron_runtime_data"][0]
    source.feed(json.dumps(without_training))
    for _ in range(2):  # the next period and the one after
        for key in RUNTIME_KEYS:
            apps = {app_of(a) for points in source.sample(key).points.values() for a, _ in points}
            assert apps == {SERVING}, key


def test_an_application_that_leaves_mid_period_gives_its_last_counts_once(bridged) -> None:  # type: ignore[no-untyped-def]
    source = bridged(groups=["inference_stats", "memory_used"])
    source.feed(TRN1[0])
    source.sample("inference_stats"), source.sample("memory_used")
    source.feed(TRN1[1])  # the serving application counts more, then is gone
    only_training = json.loads(TRN1[1])
    del only_training["neuron_runtime_data"][1]
    source.feed(json.dumps(only_training))
    stats = source.sample("inference_stats")
    assert (
        values_by(stats, "neuron.inference.count", "neuron.inference.outcome", app=SERVING)["completed"]
        == 490
    )
    assert points_of(stats, "neuron.monitor.application.error", SERVING) == []  # counts only
    assert points_of(stats, "neuron.inference.latency.percentile", SERVING) == []
    assert points_of(source.sample("memory_used"), "neuron.runtime.memory.usage", SERVING) == []
    assert points_of(source.sample("inference_stats"), "neuron.inference.count", SERVING) == []


def test_application_state_is_bounded_the_least_recently_seen_forgotten(bridged) -> None:  # type: ignore[no-untyped-def]
    template = json.loads(INF2[0])["neuron_runtime_data"][0]
    entries = []
    for pid in range(1, 1101):
        entry = {**template, "pid": pid, "neuron_runtime_tag": f"app-{pid}"}
        entries.append(entry)
    source = bridged(groups=["inference_stats"])
    source.feed(json.dumps({"neuron_runtime_data": entries}))
    apps = {app_of(a) for a, _ in source.sample("inference_stats").points["neuron.inference.count"]}
    assert len(apps) == 1024 and (1100, "app-1100") in apps and (1, "app-1") not in apps
    source.feed(json.dumps({"neuron_runtime_data": entries[:3]}))  # the others left
    apps = {app_of(a) for a, _ in source.sample("inference_stats").points["neuron.inference.count"]}
    assert apps == {(1, "app-1"), (2, "app-2"), (3, "app-3")}


def test_neuron_hardware_info_from_the_stream_once_per_source(bridged) -> None:  # type: ignore[no-untyped-def]
    registry = BridgeRegistry(stdin=io.BytesIO())
    first = create_bridge_groups(
        0, "stdin:?tag_filter=a", ["memory_used"], 0.8, registry=registry, hardware_info=True
    )
    second = create_bridge_groups(
        1, "stdin:?tag_filter=b", ["memory_used"], 0.8, registry=registry, hardware_info=True
    )
    assert [g.report_key for g in first] == ["memory_used", "neuron_hardware_info"]
    assert [g.report_key for g in second] == ["memory_used"]
    for group in [*first, *second]:
        group.close()  # type: ignore[attr-defined]

    inf2 = bridged(groups=["memory_used"])
    inf2.feed(INF2[0])
    sample = inf2.sample("neuron_hardware_info")
    (info,) = points_of(sample, "neuron.device.info")
    assert info == (
        {
            "neuron.runtime.index": 0,
            "neuron.device.index": 0,
            "neuron.device.type": "inferentia2",
            "neuron.core.version": "v2",
            "neuron.device.memory.size": 34359738368,
        },
        1,
    )  # no device version: upstream gave none
    assert values_by(sample, "neuron.device.core.count", "neuron.device.index") == {0: 2}
    trn1 = bridged(groups=["memory_used"])
    trn1.feed(TRN1[0])
    sample = trn1.sample("neuron_hardware_info")
    infos = points_of(sample, "neuron.device.info")
    assert [a["neuron.device.index"] for a, _ in infos] == list(range(16))
    assert all(set(a) == {"neuron.runtime.index", "neuron.device.index"} for a, _ in infos)  # counts only


def test_the_streams_instance_info_is_kept_as_upstream_gave_it(bridged) -> None:  # type: ignore[no-untyped-def]
    source = bridged(groups=["memory_used"])
    assert source.registry.instance_info() == {}
    source.feed(INF2[0])
    assert source.registry.instance_info() == json.loads(INF2[0])["instance_info"]  # no name, subnet, AZ id


def test_a_16_mib_line_of_thousands_of_loaded_models_is_read(tmp_path: Path, bridged) -> None:  # type: ignore[no-untyped-def]
    document = json.loads(TRN1[0])
    memory = document["neuron_runtime_data"][1]["report"]["memory_used"]
    one_model = memory["loaded_models"][0]
    models = []
    while sum(map(len, map(json.dumps, models[:1]))) * len(models) < 16 * 1024 * 1024:
        models.append({**one_model, "model_id": 100000 + len(models)})
    memory["loaded_models"] = models
    big = json.dumps(document)
    assert len(big) >= 16 * 1024 * 1024
    stream = tmp_path / "stream.jsonl"
    stream.write_text(big + "\n" + INF2[0] + "\n")
    read = list(FdLines(os.open(stream, os.O_RDONLY)))  # what --from-stdin reads
    assert [len(line) for line in read] == [len(big), len(INF2[0])]
    source = bridged(groups=["memory_used"], hardware_info=False)
    source.feed(read[0].decode())
    running = points_of(source.sample("memory_used"), "neuron.model.running", SERVING)
    assert len(running) == len(models) > 10_000
