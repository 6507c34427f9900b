"""The 2.x report rendered from MetricsData, the 1.x fold of several applications, the standing 2.x report."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from guide_example import GUIDE_FACTS

import otel_neuron.semconv as semconv
from otel_neuron.exporters.report_json import ReportJsonExporter
from otel_neuron.groups.base import GroupSample, HistogramDelta, MetricGroup, Point, PointsByMetric
from otel_neuron.histogram import bucket_index, dense_buckets, percentiles
from otel_neuron.producer import Collected, MetricsDataProducer
from otel_neuron.report import StandingReportV2, report_from_metrics, report_v2_from_metrics
from otel_neuron.report.fold import FOLDS
from otel_neuron.resource import build_resource
from otel_neuron.semconv import (
    APPLICATION_ERROR,
    CORE_EFFECTIVE_FLOPS,
    CORE_FLOPS,
    CORE_INDEX,
    CORE_MEMORY_BY_CATEGORY,
    CORE_PHYSICAL_UTILIZATION,
    CORE_UTILIZATION,
    DEVICE_CORES,
    DEVICE_INDEX,
    DEVICE_INFO,
    DEVICE_LATENCY,
    ECC_ERRORS,
    ERROR_MESSAGE,
    ERROR_TYPE,
    GROUP,
    GROUP_PERIOD,
    HOST_MEMORY_BY_CATEGORY,
    HW_ERROR_TYPE,
    INFERENCE_COUNT,
    INFERENCE_ERRORS,
    INFERENCE_LATENCY,
    INFERENCE_LATENCY_PERCENTILE,
    LATENCY_PERCENTILE,
    MEMORY_CATEGORY,
    MEMORY_LOCATION,
    MODEL_ID,
    MODEL_NAME,
    MODEL_RUNNING,
    MODEL_UUID,
    OUTCOME,
    PHYSICAL_CORE,
    PROCESS_PID,
    RUNTIME_CPU,
    RUNTIME_INDEX,
    RUNTIME_MEMORY,
    RUNTIME_TAG,
    SUBGRAPH_MEMORY,
    SUBGRAPH_MEMORY_BY_CATEGORY,
    SUBGRAPH_NAME,
    InstrumentSpec,
)

T0 = 1_700_000_000_000_000_000


class Group(MetricGroup):
    """A group of the given key and instruments whose samples the test builds by hand."""

    def __init__(
        self, key: str, index: int | None, instruments: Sequence[InstrumentSpec], error: str = ""
    ) -> None:
        super().__init__(index)
        self.report_key = key
        self.instruments = tuple(instruments)
        self._error = error

    def runtime_error(self) -> str:
        return self._error

    def _sample_points(self, period: float) -> PointsByMetric:
        raise NotImplementedError


CORES = Group(
    "neuroncore_counters",
    0,
    [CORE_UTILIZATION, CORE_FLOPS, CORE_EFFECTIVE_FLOPS, CORE_PHYSICAL_UTILIZATION, APPLICATION_ERROR],
)
STATS = Group(
    "inference_stats",
    0,
    [
        INFERENCE_COUNT,
        INFERENCE_ERRORS,
        INFERENCE_LATENCY,
        DEVICE_LATENCY,
        INFERENCE_LATENCY_PERCENTILE,
        APPLICATION_ERROR,
    ],
)
MEMORY = Group(
    "memory_used",
    0,
    [
        RUNTIME_MEMORY,
        HOST_MEMORY_BY_CATEGORY,
        CORE_MEMORY_BY_CATEGORY,
        MODEL_RUNNING,
        SUBGRAPH_MEMORY,
        SUBGRAPH_MEMORY_BY_CATEGORY,
    ],
)
VCPU = Group("neuron_runtime_vcpu_usage", 0, [RUNTIME_CPU, APPLICATION_ERROR])

A = {RUNTIME_INDEX: 0, PROCESS_PID: 1234, RUNTIME_TAG: "app_a"}
B = {RUNTIME_INDEX: 0, PROCESS_PID: 2345, RUNTIME_TAG: "app_b"}


def histogram(values: Sequence[float]) -> HistogramDelta:
    counts: dict[int, int] = {}
    for value in values:
        counts[bucket_index(value)] = counts.get(bucket_index(value), 0) + 1
    offset, dense = dense_buckets(counts)
    return HistogramDelta(6, 0, offset, dense, len(values), sum(values), min(values), max(values))


A_LATENCIES = [0.010, 0.011, 0.012, 0.020]
B_LATENCIES = [0.005, 0.030]


def at(app: Mapping[str, Any], **attributes: Any) -> dict[str, Any]:
    return {**app, **attributes}


def cores_points(app: Mapping[str, Any], shares: dict[int, float]) -> dict[str, list[Point]]:
    return {CORE_UTILIZATION.name: [(at(app, **{CORE_INDEX: core}), share) for core, share in shares.items()]}


def stats_points(
    app: Mapping[str, Any], completed: int, model_errors: int, latencies: Sequence[float]
) -> dict[str, list[Point]]:
    """As a runtime's group gives them: a count for every outcome and every 2.x error type."""
    outcomes = {**dict.fromkeys(semconv.OUTCOMES, 0), "completed": completed}
    errors = {**dict.fromkeys(semconv.ERROR_TYPES_V2, 0), "model": model_errors, "numerical": 1}
    return {
        INFERENCE_COUNT.name: [(at(app, **{OUTCOME: name}), count) for name, count in outcomes.items()],
        INFERENCE_ERRORS.name: [(at(app, **{ERROR_TYPE: name}), count) for name, count in errors.items()],
        INFERENCE_LATENCY.name: [(at(app), histogram(latencies))],
    }


def sample(points: Mapping[str, Sequence[Point]], period: float = 1.0, error: str = "") -> GroupSample:
    return GroupSample(period, error, T0, dict(points))


def metrics(*collected: Collected) -> Any:
    return MetricsDataProducer(build_resource(GUIDE_FACTS)).produce(list(collected))


def two_applications() -> Any:
    """app_a and app_b under runtime 0: core 0 shared, core 1 app_b's; counts, histograms, memory."""
    cores = {
        **cores_points(A, {0: 0.7}),
        CORE_UTILIZATION.name: [
            *cores_points(A, {0: 0.7})[CORE_UTILIZATION.name],
            *cores_points(B, {0: 0.6, 1: 0.2})[CORE_UTILIZATION.name],
        ],
    }
    stats_a, stats_b = stats_points(A, 50, 12, A_LATENCIES), stats_points(B, 5, 1, B_LATENCIES)
    stats = {name: [*stats_a[name], *stats_b[name]] for name in stats_a}
    stats[INFERENCE_LATENCY_PERCENTILE.name] = [
        (at(A, **{LATENCY_PERCENTILE: "p50"}), 0.0113),
        (at(A, **{LATENCY_PERCENTILE: "p0"}), 0.010),
    ]
    memory = {
        RUNTIME_MEMORY.name: [
            (at(A, **{MEMORY_LOCATION: "host"}), 100),
            (at(A, **{MEMORY_LOCATION: "neuron_device"}), 1000),
            (at(B, **{MEMORY_LOCATION: "host"}), 10),
            (at(B, **{MEMORY_LOCATION: "neuron_device"}), 20),
        ],
    }
    return metrics(
        Collected(CORES, sample(cores)), Collected(STATS, sample(stats)), Collected(MEMORY, sample(memory))
    )


# --- one MetricsData, two applications


def test_two_applications_under_one_runtime_are_two_2x_entries_in_pid_order() -> None:
    report = report_v2_from_metrics(two_applications())
    first, second = report["neuron_runtime_data"]
    assert list(first) == ["pid", "neuron_runtime_tag", "error", "report"]
    assert (first["pid"], first["neuron_runtime_tag"], second["pid"], second["neuron_runtime_tag"]) == (
        1234,
        "app_a",
        2345,
        "app_b",
    )
    assert first["report"]["neuroncore_counters"]["neuroncores_in_use"] == {
        "0": {"neuroncore_utilization": 70.0}
    }
    assert second["report"]["neuroncore_counters"]["neuroncores_in_use"] == {
        "0": {"neuroncore_utilization": 60.0},
        "1": {"neuroncore_utilization": 20.0},
    }
    assert set(first["report"]) == {"neuroncore_counters", "execution_stats", "memory_used"}
    a_stats, b_stats = first["report"]["execution_stats"], second["report"]["execution_stats"]
    assert a_stats["execution_summary"]["completed"] == 50 and b_stats["execution_summary"]["completed"] == 5
    assert list(a_stats["error_summary"]) == list(semconv.ERROR_TYPES_V2)
    assert (a_stats["error_summary"]["model"], b_stats["error_summary"]["model"]) == (12, 1)
    assert list(a_stats["execution_summary"]) == list(semconv.OUTCOMES)
    # Upstream's exact percentiles, only those it gave, in order; the other application's from its histogram.
    assert a_stats["latency_stats"]["total_latency"] == {"p0": 0.010, "p50": 0.0113}
    assert b_stats["latency_stats"]["total_latency"] == percentiles(histogram(B_LATENCIES))
    assert a_stats["latency_stats"]["device_latency"] is None
    assert first["report"]["memory_used"]["neuron_runtime_used_bytes"]["host"] == 100
    assert second["report"]["memory_used"]["neuron_runtime_used_bytes"]["neuron_device"] == 20
    assert report["system_data"] == {} and report["neuron_hardware_info"] is None
    assert report["instance_info"] == GUIDE_FACTS.as_report()


def test_the_1x_report_folds_the_applications_into_one_entry() -> None:
    (entry,) = report_from_metrics(two_applications())["neuron_runtime_data"]
    assert entry["neuron_runtime_index"] == 0
    body = entry["report"]
    cores = body["neuroncore_counters"]["neuroncores_in_use"]
    assert cores["0"]["neuroncore_utilization"] == 100.0  # 70 % + 60 %, capped at the whole core
    assert cores["1"]["neuroncore_utilization"] == 20.0
    stats = body["inference_stats"]
    assert stats["inference_summary"]["completed"] == 55
    assert stats["error_summary"]["numerical"] == 2
    merged = percentiles(histogram(A_LATENCIES + B_LATENCIES))
    assert stats["latency_stats"]["total_latency"] == merged  # from the merged histogram, not app_a's p50
    assert (merged["p0"], merged["p100"]) == (0.005, 0.030)
    assert body["memory_used"]["neuron_runtime_used_bytes"] == {"host": 110, "neuron_device": 1020}


def test_a_single_application_renders_the_same_1x_report_as_points_without_one() -> None:
    with_app = metrics(Collected(STATS, sample(stats_points(A, 50, 12, A_LATENCIES))))
    plain = {RUNTIME_INDEX: 0}
    without = metrics(Collected(STATS, sample(stats_points(plain, 50, 12, A_LATENCIES))))
    assert json.dumps(report_from_metrics(with_app)) == json.dumps(report_from_metrics(without))


def test_every_semconv_instrument_has_a_fold_rule() -> None:
    specs = [value for value in vars(semconv).values() if isinstance(value, InstrumentSpec)]
    assert specs and [spec.name for spec in specs if spec.name not in FOLDS] == []


# --- the 2.x fields


def test_error_types_are_those_the_points_carry_and_all_when_none() -> None:
    # An inf2 stream has no `generic` error type: the 2.x report does not invent one.
    inf2 = [(at(A, **{ERROR_TYPE: name}), 1) for name in ("hardware", "model", "numerical")]
    report = report_v2_from_metrics(metrics(Collected(STATS, sample({INFERENCE_ERRORS.name: inf2}))))
    stats = report["neuron_runtime_data"][0]["report"]["execution_stats"]
    assert stats["error_summary"] == {"numerical": 1, "model": 1, "hardware": 1}
    assert list(stats["error_summary"]) == ["numerical", "model", "hardware"]
    assert stats["execution_summary"] == dict.fromkeys(semconv.OUTCOMES, 0)  # nothing counted: every key


def test_flops_under_the_key_upstream_used_and_v3d_per_physical_core() -> None:
    points = {
        CORE_UTILIZATION.name: [(at(A, **{CORE_INDEX: 0}), 0.4201)],
        CORE_EFFECTIVE_FLOPS.name: [(at(A, **{CORE_INDEX: 0}), 1.2e12)],
        CORE_FLOPS.name: [(at(A, **{CORE_INDEX: 1}), 1234567891021)],
        CORE_PHYSICAL_UTILIZATION.name: [
            (at(A, **{CORE_INDEX: 1, PHYSICAL_CORE: "nc_v3.2"}), 0.2102),
            (at(A, **{CORE_INDEX: 1, PHYSICAL_CORE: "nc_v3.3"}), 0.6302),
        ],
    }
    report = report_v2_from_metrics(metrics(Collected(CORES, sample(points))))
    cores = report["neuron_runtime_data"][0]["report"]["neuroncore_counters"]["neuroncores_in_use"]
    assert cores == {
        "0": {"neuroncore_utilization": 42.01, "effective_flops": 1.2e12},
        "1": {
            "neuroncore_utilization": 0.0,
            "flops": 1234567891021,
            "v3d": {
                "nc_v3.2": {"neuroncore_utilization": 21.02},
                "nc_v3.3": {"neuroncore_utilization": 63.02},
            },
        },
    }


def test_memory_usage_breakdown_per_core_with_all_five_categories_and_per_subgraph() -> None:
    subgraph = {MODEL_ID: 10005, MODEL_NAME: "neff", SUBGRAPH_NAME: "sg_00", CORE_INDEX: 0, DEVICE_INDEX: 12}
    points = {
        RUNTIME_MEMORY.name: [(at(A, **{MEMORY_LOCATION: "host"}), 6997643264)],
        HOST_MEMORY_BY_CATEGORY.name: [(at(A, **{MEMORY_CATEGORY: "dma_buffers"}), 1048576)],
        CORE_MEMORY_BY_CATEGORY.name: [
            (at(A, **{CORE_INDEX: 1, MEMORY_CATEGORY: "constants"}), 193986816),
            (at(A, **{CORE_INDEX: 0, MEMORY_CATEGORY: "tensors"}), 20971520),
        ],
        MODEL_RUNNING.name: [(at(A, **{MODEL_ID: 10005, MODEL_NAME: "neff", MODEL_UUID: "91f2"}), 0)],
        SUBGRAPH_MEMORY.name: [(at(A, **subgraph, **{MEMORY_LOCATION: "neuron_device"}), 21001024)],
        SUBGRAPH_MEMORY_BY_CATEGORY.name: [
            (at(A, **subgraph, **{MEMORY_LOCATION: "host", MEMORY_CATEGORY: "application_memory"}), 20480),
            (at(A, **subgraph, **{MEMORY_LOCATION: "neuron_device", MEMORY_CATEGORY: "constants"}), 20971520),
        ],
    }
    report = report_v2_from_metrics(metrics(Collected(MEMORY, sample(points))))
    memory = report["neuron_runtime_data"][0]["report"]["memory_used"]
    used = memory["neuron_runtime_used_bytes"]
    assert (used["host"], used["neuron_device"]) == (6997643264, 0)
    assert used["usage_breakdown"]["host"] == {
        "application_memory": 0,
        "constants": 0,
        "dma_buffers": 1048576,
        "tensors": 0,
    }
    zero = dict.fromkeys(semconv.CORE_MEMORY_CATEGORIES, 0)
    assert used["usage_breakdown"]["neuroncore_memory_usage"] == {
        "0": {**zero, "tensors": 20971520},
        "1": {**zero, "constants": 193986816},
    }
    assert memory["loaded_models"] == [
        {
            "name": "neff",
            "uuid": "91f2",
            "model_id": 10005,
            "is_running": False,
            "subgraphs": {
                "sg_00": {
                    "memory_used_bytes": {
                        "host": 0,
                        "neuron_device": 21001024,
                        "usage_breakdown": {
                            "host": {
                                "application_memory": 20480,
                                "constants": 0,
                                "dma_buffers": 0,
                                "tensors": 0,
                            },
                            "neuron_device": {
                                "constants": 20971520,
                                "model_code": 0,
                                "runtime_memory": 0,
                                "tensors": 0,
                            },
                        },
                    },
                    "neuroncore_index": 0,
                    "neuron_device_index": 12,
                }
            },
        }
    ]


def test_ecc_counts_of_every_runtime_become_system_neuron_hw_counters_with_four_kinds() -> None:
    sim_hw = Group("hw_counters", 0, [ECC_ERRORS])
    sysfs_hw = Group("hw_counters", 1, [ECC_ERRORS])
    first = [(at(A, **{DEVICE_INDEX: 0, HW_ERROR_TYPE: "sram_ecc_corrected"}), 6)]
    second = [
        (
            {RUNTIME_INDEX: 1, DEVICE_INDEX: 0, HW_ERROR_TYPE: "mem_ecc_corrected"},
            99,
        ),  # device 0 is runtime 0's
        ({RUNTIME_INDEX: 1, DEVICE_INDEX: 1, HW_ERROR_TYPE: "mem_ecc_uncorrected"}, 2),
        ({RUNTIME_INDEX: 1, DEVICE_INDEX: 1, HW_ERROR_TYPE: "mem_ecc_repairable_uncorrected"}, 3),
    ]
    report = report_v2_from_metrics(
        metrics(
            Collected(sim_hw, sample({ECC_ERRORS.name: first})),
            Collected(sysfs_hw, sample({ECC_ERRORS.name: second})),
        )
    )
    zero = dict.fromkeys(semconv.ECC_KINDS, 0)
    assert report["system_data"]["neuron_hw_counters"] == {
        "period": 1.0,
        "neuron_devices": [
            {"neuron_device_index": 0, **zero, "sram_ecc_corrected": 6},
            {"neuron_device_index": 1, **zero, "mem_ecc_uncorrected": 2},
        ],
        "error": "",
    }
    assert report["neuron_runtime_data"] == []  # groups that 2.x reports elsewhere make no entry


def test_hardware_info_at_the_root_and_sysfs_groups_in_an_entry_of_pid_0() -> None:
    hardware = Group("neuron_hardware_info", 1, [DEVICE_INFO, DEVICE_CORES])
    memory = Group("memory_used", 1, [RUNTIME_MEMORY, CORE_MEMORY_BY_CATEGORY])
    facts = {
        semconv.DEVICE_TYPE: "trainium",
        semconv.CORE_VERSION: "NCv2",
        semconv.INSTANCE_TYPE: "trn1.2xlarge",
    }
    info = {
        DEVICE_INFO.name: [({RUNTIME_INDEX: 1, DEVICE_INDEX: 0, **facts}, 1)],
        DEVICE_CORES.name: [({RUNTIME_INDEX: 1, DEVICE_INDEX: 0}, 2)],
    }
    used = {
        RUNTIME_MEMORY.name: [({RUNTIME_INDEX: 1, MEMORY_LOCATION: "neuron_device"}, 5)],
        CORE_MEMORY_BY_CATEGORY.name: [
            ({RUNTIME_INDEX: 1, CORE_INDEX: 0, MEMORY_CATEGORY: "collectives"}, 5)
        ],
    }
    report = report_v2_from_metrics(
        metrics(Collected(hardware, sample(info)), Collected(memory, sample(used)))
    )
    assert report["neuron_hardware_info"] == {
        "neuron_device_type": "trainium",
        "neuroncore_version": "v2",
        "neuron_device_count": 1,
        "neuroncore_per_device_count": 2,
        "error": "",
    }
    assert list(report["neuron_hardware_info"]) == [
        "neuron_device_type",
        "neuroncore_version",
        "neuron_device_count",
        "neuroncore_per_device_count",
        "error",
    ]
    (entry,) = report["neuron_runtime_data"]
    assert (entry["pid"], entry["neuron_runtime_tag"], list(entry["report"])) == (0, "1", ["memory_used"])
    per_core = entry["report"]["memory_used"]["neuron_runtime_used_bytes"]["usage_breakdown"][
        "neuroncore_memory_usage"
    ]
    assert per_core == {"0": {**dict.fromkeys(semconv.CORE_MEMORY_CATEGORIES, 0), "collectives": 5}}


def test_hardware_facts_only_neuron_monitor_gives_come_back_when_given() -> None:
    hardware = Group("neuron_hardware_info", 0, [DEVICE_INFO, DEVICE_CORES])
    facts = {
        semconv.DEVICE_TYPE: "trainium2",
        semconv.DEVICE_VERSION: "v4",
        semconv.CORE_VERSION: "v3d",
        semconv.DEVICE_MEMORY_SIZE: 103079215104,
        semconv.LOGICAL_CORE_CONFIG: 2,
    }
    info = {
        DEVICE_INFO.name: [({RUNTIME_INDEX: 0, DEVICE_INDEX: i, **facts}, 1) for i in range(16)],
        DEVICE_CORES.name: [({RUNTIME_INDEX: 0, DEVICE_INDEX: i}, 4) for i in range(16)],
    }
    report = report_v2_from_metrics(metrics(Collected(hardware, sample(info))))
    assert report["neuron_hardware_info"] == {
        "neuron_device_type": "trainium2",
        "neuron_device_version": "v4",
        "neuroncore_version": "v3d",
        "neuron_device_count": 16,
        "neuron_device_memory_size": 103079215104,
        "neuroncore_per_device_count": 4,
        "logical_neuroncore_config": 2,
        "error": "",
    }


def test_hardware_facts_upstream_left_out_stay_out() -> None:
    """An older neuron-monitor (a real trn1 capture) gives only the counts: so does the report."""
    hardware = Group("neuron_hardware_info", 0, [DEVICE_INFO, DEVICE_CORES])
    info = {
        DEVICE_INFO.name: [({RUNTIME_INDEX: 0, DEVICE_INDEX: i}, 1) for i in range(16)],
        DEVICE_CORES.name: [({RUNTIME_INDEX: 0, DEVICE_INDEX: i}, 2) for i in range(16)],
    }
    report = report_v2_from_metrics(metrics(Collected(hardware, sample(info))))
    assert report["neuron_hardware_info"] == {
        "neuron_device_count": 16,
        "neuroncore_per_device_count": 2,
        "error": "",
    }


def vcpu_points(rows: dict[int, float], average: float | None) -> dict[str, list[Point]]:
    """A system vcpu_usage whose vCPUs spent `rows[cpu]` of the period in user mode (the rest idle),
    and, when given, the average upstream reported for user mode."""
    utilization = [
        ({semconv.CPU_LOGICAL_NUMBER: cpu, semconv.CPU_MODE: mode}, share if mode == "user" else 1 - share)
        for cpu, share in rows.items()
        for mode in ("user", "idle")
    ]
    points = {
        semconv.CPU_UTILIZATION.name: utilization,
        semconv.CPU_COUNT.name: [({}, len(rows))],
        semconv.CONTEXT_SWITCHES.name: [({}, 7)],
    }
    if average is not None:
        points[semconv.CPU_AVERAGE_UTILIZATION.name] = [
            ({semconv.CPU_MODE: "user"}, average),
            ({semconv.CPU_MODE: "idle"}, 1 - average),
        ]
    return points


def test_vcpu_average_usage_is_upstreams_when_given_else_the_mean_of_the_vcpus() -> None:
    vcpu = Group(
        "vcpu_usage",
        None,
        [
            semconv.CPU_UTILIZATION,
            semconv.CPU_AVERAGE_UTILIZATION,
            semconv.CONTEXT_SWITCHES,
            semconv.CPU_COUNT,
        ],
    )
    given = report_v2_from_metrics(
        metrics(Collected(vcpu, sample(vcpu_points({0: 0.3441, 1: 0.5684}, 0.3277))))
    )
    body = given["system_data"]["vcpu_usage"]
    assert body["average_usage"] == {**dict.fromkeys(semconv.CPU_MODES, 0.0), "user": 32.77, "idle": 67.23}
    assert body["usage_data"]["1"]["user"] == 56.84 and body["context_switch_count"] == 7
    mean = report_v2_from_metrics(metrics(Collected(vcpu, sample(vcpu_points({0: 0.3441, 1: 0.5684}, None)))))
    assert mean["system_data"]["vcpu_usage"]["average_usage"]["user"] == 45.63  # (34.41 + 56.84) / 2


def test_a_group_absent_from_its_source_has_no_section_and_no_health() -> None:
    """A neuron-monitor stream need not carry a system group: its pass-through group then says
    nothing, and no report shows a section for it."""
    absent = Group("memory_info", None, [semconv.MEMORY_LIMIT])
    absent.absent_when_empty = True  # type: ignore[attr-defined]
    data = metrics(Collected(absent, sample({})), Collected(CORES, sample(cores_points(A, {0: 0.5}))))
    assert "memory_info" not in report_v2_from_metrics(data)["system_data"]
    assert "memory_info" not in report_from_metrics(data)["system_data"]
    periods = [m for m in data.resource_metrics[0].scope_metrics[0].metrics if m.name == GROUP_PERIOD.name]
    assert [dict(p.attributes)[GROUP] for p in periods[0].data.data_points] == ["neuroncore_counters"]
    present = metrics(Collected(absent, sample({semconv.MEMORY_LIMIT.name: [({}, 1024)]})))
    assert report_v2_from_metrics(present)["system_data"]["memory_info"]["memory_total_bytes"] == 1024


def test_each_application_has_one_entry_error_point_whichever_groups_carry_it() -> None:
    """Every bridge group of a runtime carries its applications' entry errors; the MetricsData has one
    point per application, and no metric has two points with the same attributes."""
    entry_errors = [(at(A, **{ERROR_MESSAGE: ""}), 0), (at(B, **{ERROR_MESSAGE: "runtime gone"}), 1)]
    group_errors = [(at(A, **{GROUP: "neuroncore_counters", ERROR_MESSAGE: ""}), 0)]
    data = metrics(
        Collected(CORES, sample({APPLICATION_ERROR.name: [*entry_errors, *group_errors]})),
        Collected(STATS, sample({APPLICATION_ERROR.name: list(entry_errors)})),
        Collected(VCPU, sample({APPLICATION_ERROR.name: list(entry_errors)})),
    )
    assert repeated_points(data) == []
    (errors,) = [
        m for m in data.resource_metrics[0].scope_metrics[0].metrics if m.name == APPLICATION_ERROR.name
    ]
    assert len(errors.data.data_points) == 3
    tags = [entry["neuron_runtime_tag"] for entry in report_v2_from_metrics(data)["neuron_runtime_data"]]
    assert tags == ["app_a", "app_b"]


def repeated_points(data: Any) -> list[tuple[str, dict[str, Any]]]:
    """(metric, attributes) of every point whose metric already has a point with those attributes."""
    repeated = []
    for metric in data.resource_metrics[0].scope_metrics[0].metrics:
        seen: set[frozenset[tuple[str, Any]]] = set()
        for point in metric.data.data_points:
            key = frozenset((point.attributes or {}).items())
            if key in seen:
                repeated.append((metric.name, dict(point.attributes or {})))
            seen.add(key)
    return repeated


def test_upstream_errors_of_an_application_and_of_its_group() -> None:
    errors = [
        (at(A, **{ERROR_MESSAGE: ""}), 0),
        (
            at(
                A,
                **{
                    GROUP: "neuron_runtime_vcpu_usage",
                    ERROR_MESSAGE: "open/proc/457402/stat:nosuchfileordirectory",
                },
            ),
            1,
        ),
        (at(B, **{ERROR_MESSAGE: "runtime gone"}), 1),
        (at(B, **{GROUP: "neuron_runtime_vcpu_usage", ERROR_MESSAGE: ""}), 0),
    ]
    vcpu = [(at(A, **{semconv.CPU_MODE: "user"}), 0.0), (at(A, **{semconv.CPU_MODE: "system"}), 0.0)]
    report = report_v2_from_metrics(
        metrics(Collected(VCPU, sample({RUNTIME_CPU.name: vcpu, APPLICATION_ERROR.name: errors})))
    )
    a, b = report["neuron_runtime_data"]
    assert a["error"] == "" and b["error"] == "runtime gone"
    assert a["report"]["neuron_runtime_vcpu_usage"] == {
        "period": 1.0,
        "vcpu_usage": {"user": 0.0, "system": 0.0},
        "error": "open/proc/457402/stat:nosuchfileordirectory",
    }
    # app_b had no points of its own, but upstream named it: it is there, with its error.
    assert b["report"]["neuron_runtime_vcpu_usage"]["error"] == ""


def test_an_unreachable_runtime_is_one_entry_of_pid_0_with_its_error() -> None:
    down = Group("inference_stats", 2, [INFERENCE_COUNT], error="no answer from unix:/run/x.sock")
    report = report_v2_from_metrics(
        metrics(Collected(down, sample({}, error="no answer from unix:/run/x.sock")))
    )
    (entry,) = report["neuron_runtime_data"]
    assert entry == {
        "pid": 0,
        "neuron_runtime_tag": "2",
        "error": "no answer from unix:/run/x.sock",
        "report": {"execution_stats": {"period": 1.0, "error": "no answer from unix:/run/x.sock"}},
    }


# --- the standing 2.x report


def test_groups_not_due_keep_their_values_and_an_application_gone_from_the_collection_disappears() -> None:
    standing = StandingReportV2()
    standing.update(two_applications())
    # Next tick only neuroncore_counters is due, and only app_a is still running.
    report = standing.update(metrics(Collected(CORES, sample(cores_points(A, {0: 0.5})))))
    (entry,) = report["neuron_runtime_data"]
    assert entry["neuron_runtime_tag"] == "app_a"
    assert entry["report"]["neuroncore_counters"]["neuroncores_in_use"]["0"]["neuroncore_utilization"] == 50.0
    assert entry["report"]["execution_stats"]["execution_summary"]["completed"] == 50  # not due: kept
    assert entry["report"]["memory_used"]["neuron_runtime_used_bytes"]["host"] == 100


def test_a_collection_of_other_runtimes_or_of_ecc_only_keeps_the_applications() -> None:
    standing = StandingReportV2()
    standing.update(two_applications())
    hw = Group("hw_counters", 0, [ECC_ERRORS])
    other = Group("inference_stats", 1, [INFERENCE_COUNT])
    report = standing.update(
        metrics(
            Collected(
                hw,
                sample(
                    {
                        ECC_ERRORS.name: [
                            ({RUNTIME_INDEX: 0, DEVICE_INDEX: 0, HW_ERROR_TYPE: "mem_ecc_corrected"}, 1)
                        ]
                    }
                ),
            ),
            Collected(other, sample({INFERENCE_COUNT.name: [({RUNTIME_INDEX: 1, OUTCOME: "completed"}, 3)]})),
        )
    )
    tags = [entry["neuron_runtime_tag"] for entry in report["neuron_runtime_data"]]
    assert tags == ["app_a", "app_b", "1"]
    assert report["system_data"]["neuron_hw_counters"]["neuron_devices"][0]["mem_ecc_corrected"] == 1


def test_the_exporter_writes_2x_lines_and_an_application_that_left_is_gone_from_the_next() -> None:
    out = io.StringIO()
    exporter = ReportJsonExporter(runtime_count=1, out=out, output_format="2")
    exporter.export(two_applications())
    exporter.export(metrics(Collected(STATS, sample(stats_points(B, 7, 0, B_LATENCIES)))))
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert [entry["neuron_runtime_tag"] for entry in first["neuron_runtime_data"]] == ["app_a", "app_b"]
    assert [entry["neuron_runtime_tag"] for entry in second["neuron_runtime_data"]] == ["app_b"]
    assert (
        second["neuron_runtime_data"][0]["report"]["execution_stats"]["execution_summary"]["completed"] == 7
    )
    assert set(second) == {"neuron_runtime_data", "system_data", "instance_info", "neuron_hardware_info"}


def test_an_unknown_output_format_is_refused() -> None:
    with pytest.raises(ValueError, match="output format '3'"):
        ReportJsonExporter(runtime_count=0, output_format="3")


def test_the_report_package_imports_no_source_and_no_grpc() -> None:
    code = (
        "import sys, otel_neuron.report, otel_neuron.report.v2, otel_neuron.report.fold;"
        "print([m for m in sys.modules if m.split('.')[0] == 'grpc' or m.startswith('otel_neuron.sources')])"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"


RENDER_BOTH_FORMATS = """
import io, json, sys
from opentelemetry.sdk.metrics.export import (
    Gauge, Metric, MetricsData, NumberDataPoint, ResourceMetrics, ScopeMetrics,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from otel_neuron.exporters.report_json import ReportJsonExporter
from otel_neuron.semconv import (
    GROUP, GROUP_PERIOD, INFERENCE_COUNT, MEMORY_LIMIT, OUTCOME, RUNTIME_INDEX,
)

def metric(name, points):
    data = [NumberDataPoint(attributes, 0, 1, value) for attributes, value in points]
    return Metric(name, "", "", Gauge(data))

runtime = {RUNTIME_INDEX: 0}
data = MetricsData([ResourceMetrics(Resource({}), [ScopeMetrics(InstrumentationScope("t"), [
    metric(GROUP_PERIOD.name, [({GROUP: "inference_stats", **runtime}, 1.0), ({GROUP: "memory_info"}, 1.0)]),
    metric(INFERENCE_COUNT.name, [({OUTCOME: "completed", **runtime}, 3)]),
    metric(MEMORY_LIMIT.name, [({}, 4096)]),
], "")], "")])
lines = []
for output_format in ("1", "2"):
    out = io.StringIO()
    ReportJsonExporter(runtime_count=1, out=out, output_format=output_format).export(data)
    lines.append(json.loads(out.getvalue()))
print(json.dumps([
    lines[0]["neuron_runtime_data"][0]["report"]["inference_stats"]["inference_summary"]["completed"],
    lines[1]["neuron_runtime_data"][0]["report"]["execution_stats"]["execution_summary"]["completed"],
    lines[0]["system_data"]["memory_info"]["memory_total_bytes"],
]))
sampling = ("otel_neuron.sources", "otel_neuron.runtime", "otel_neuron.groups.runtime",
            "otel_neuron.groups.sysfs", "otel_neuron.groups.neuron_monitor", "otel_neuron.groups.system")
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] == "grpc" or m.startswith(sampling))))
"""


def test_both_reports_render_from_metrics_without_any_source_grpc_or_sampling_group() -> None:
    result = subprocess.run(
        [sys.executable, "-c", RENDER_BOTH_FORMATS], capture_output=True, text=True, check=True, timeout=60
    )
    rendered, imported = result.stdout.splitlines()
    assert json.loads(rendered) == [3, 3, 4096]  # the reports were rendered
    assert json.loads(imported) == []
