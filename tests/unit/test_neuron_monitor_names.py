"""`--prometheus-names neuron-monitor`: AWS's neuron-monitor-prometheus.py's series from 2.x reports.

The reference is the script itself (its reads and handlers, ported in tests/aws_neuron_monitor_prometheus.py):
on the same reports both must serve the same samples, but for the differences the exporter documents.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from aws_neuron_monitor_prometheus import NeuronMonitorPrometheus
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from otel_neuron.exporters.prometheus import PrometheusExporter

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
V2_REPORT = json.loads((FIXTURES / "reports" / "v2-report.json").read_text())
STREAM = FIXTURES / "neuron-monitor" / "v2.jsonl"

Key = tuple[str, frozenset[tuple[str, str]]]
BASE = {
    "instance_name": "My_Instance",
    "instance_id": "i-0011223344556677a",
    "instance_type": "trn1.2xlarge",
    "availability_zone": "us-west-2b",
    "region": "us-west-2",
    "subnet_id": "subnet-112233ee",
}


def report(**changes: Any) -> dict[str, Any]:
    """A fresh copy of the 2.x report fixture (apps "7685" and "app_b"), root keys replaced."""
    document = copy.deepcopy(V2_REPORT)
    document.update(changes)
    return document


def entry(document: dict[str, Any], tag: str) -> dict[str, Any]:
    return next(e for e in document["neuron_runtime_data"] if e["neuron_runtime_tag"] == tag)


def exporter_fed(*documents: dict[str, Any]) -> PrometheusExporter:
    exporter = PrometheusExporter(listen=None, names="neuron-monitor", report_builder=lambda r: r)
    for document in documents:
        exporter.export(document)  # type: ignore[arg-type]
    return exporter


def exposition(exporter: PrometheusExporter) -> str:
    return generate_latest(exporter.registry).decode()


def samples_of(text: str) -> dict[Key, float]:
    """Every sample but `*_created` (a wall-clock time) and prometheus_client's own."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if not sample.name.endswith("_created") and not sample.name.startswith(("python_", "process_"))
    }


def samples(exporter: PrometheusExporter) -> dict[Key, float]:
    return samples_of(exposition(exporter))


def script_fed(documents: Iterable[dict[str, Any]]) -> dict[Key, float]:
    script = NeuronMonitorPrometheus()
    for document in documents:
        script.read(copy.deepcopy(document))
    return samples_of(script.exposition())


def key(name: str, **labels: str) -> Key:
    return name, frozenset(labels.items())


def values(found: dict[Key, float], name: str, **labels: str) -> list[float]:
    return [v for (n, lab), v in found.items() if n == name and set(labels.items()) <= lab]


def without_hardware_info(found: dict[Key, float]) -> dict[Key, float]:
    return {k: v for k, v in found.items() if k[0] != "neuron_hardware_info"}


# ------------------------------------------------------------------------------------------ golden


def test_the_scripts_samples_on_the_same_reports() -> None:
    ours = samples(exporter_fed(report()))
    theirs = script_fed([report()])
    # neuron_hardware_info: ours adds neuron_device_memory_size (AWS's later script versions do).
    assert without_hardware_info(ours) == without_hardware_info(theirs)
    assert len(ours) == len(theirs) == 75


def test_the_scripts_samples_on_the_bridged_fixture_stream() -> None:
    documents = []
    for line in STREAM.read_text().splitlines():
        try:
            documents.append(json.loads(line))
        except ValueError:  # the script skips lines it cannot decode, as the exporter never sees them
            continue
    assert len(documents) >= 2
    ours = exporter_fed(*documents)
    assert without_hardware_info(samples(ours)) == without_hardware_info(script_fed(documents))


def test_exact_lines_of_the_2x_only_families() -> None:
    text = exposition(exporter_fed(report()))
    base = (
        'availability_zone="us-west-2b",instance_id="i-0011223344556677a",instance_name="My_Instance",'
        'instance_type="trn1.2xlarge"'
    )
    tail = 'region="us-west-2"'
    subnet = 'subnet_id="subnet-112233ee"'
    lines = set(text.splitlines())
    expected = [
        # runtime_tag is the application's neuron_runtime_tag; memory_location is the script's "None".
        f'neuroncore_memory_usage_constants{{{base},memory_location="None",neuroncore="0",{tail},'
        f'runtime_tag="7685",{subnet}}} 1000.0',
        f'neuroncore_memory_usage_constants{{{base},memory_location="None",neuroncore="2",{tail},'
        f'runtime_tag="app_b",{subnet}}} 1002.0',
        f'execution_errors_total{{{base[: base.index("instance_id")]}error_type="model",'
        f'{base[base.index("instance_id") :]},{tail},runtime_tag="7685",{subnet}}} 2.0',
        # ECC events carry no runtime_tag, as in the script; sram_ecc_corrected is one of the four.
        f'hardware_ecc_events_total{{{base[: base.index("instance_id")]}event_type="sram_ecc_corrected",'
        f'{base[base.index("instance_id") :]},neuron_device_index="0",{tail},{subnet}}} 6.0',
        f'neuron_hardware_info{{{base},neuron_device_count="1",neuron_device_memory_size="34359738368",'
        f'neuroncore_per_device_count="2",{tail},{subnet}}} 1.0',
        f"instance_info{{{base},{tail},{subnet}}} 1.0",
    ]
    for line in expected:
        assert line in lines, line


def test_every_family_of_the_script_and_only_those() -> None:
    names = {name for name, _ in samples(exporter_fed(report()))}
    assert names == {
        "neuroncore_utilization_ratio",
        "neuron_runtime_vcpu_usage_ratio",
        "neuron_runtime_memory_used_bytes",
        "neuroncore_memory_usage_constants",
        "neuroncore_memory_usage_model_code",
        "neuroncore_memory_usage_model_shared_scratchpad",
        "neuroncore_memory_usage_runtime_memory",
        "neuroncore_memory_usage_tensors",
        "execution_errors_total",
        "execution_status_total",
        "execution_latency_seconds",
        "hardware_ecc_events_total",
        "system_vcpu_count",
        "system_vcpu_usage_ratio",
        "system_memory_total_bytes",
        "system_memory_used_bytes",
        "system_swap_total_bytes",
        "system_swap_used_bytes",
        "instance_info",
        "neuron_hardware_info",
    }


def test_values_as_the_script_computes_them() -> None:
    found = samples(exporter_fed(report()))
    app = {**BASE, "runtime_tag": "7685"}
    assert found[key("neuroncore_utilization_ratio", **app, neuroncore="1")] == pytest.approx(0.4201)
    assert found[key("neuron_runtime_vcpu_usage_ratio", **app, usage_type="system")] == pytest.approx(0.1234)
    assert found[key("neuron_runtime_memory_used_bytes", **app, memory_location="neuron_device")] == 2e6
    assert found[key("execution_status_total", **app, status_type="completed")] == 123
    # Only the percentiles the report has.
    assert {dict(lab)["percentile"] for n, lab in found if n == "execution_latency_seconds"} == {
        "p0",
        "p50",
        "p99",
        "p100",
    }
    assert found[key("execution_latency_seconds", **app, percentile="p99")] == 0.018
    assert found[key("system_vcpu_count", **BASE)] == 2
    assert found[key("system_vcpu_usage_ratio", **BASE, usage_type="user")] == pytest.approx(0.3377)
    assert found[key("system_vcpu_usage_ratio", **BASE, usage_type="system")] == pytest.approx(0.2687)
    assert found[key("system_memory_used_bytes", **BASE)] == 16042344448
    ecc = {
        (dict(lab)["neuron_device_index"], dict(lab)["event_type"]): v
        for (n, lab), v in found.items()
        if n == "hardware_ecc_events_total"
    }
    assert len(ecc) == 8 and ecc[("0", "mem_ecc_corrected")] == 2 and ecc[("1", "sram_ecc_uncorrected")] == 1


# ------------------------------------------------------------------------------------ over time


def test_counters_add_each_report_and_an_errored_group_keeps_its_values() -> None:
    second = report()
    entry(second, "7685")["report"]["execution_stats"]["execution_summary"]["completed"] = 7
    memory = second["system_data"]["memory_info"]
    memory.update(error="cannot read /proc/meminfo", memory_used_bytes=0)
    cores = entry(second, "7685")["report"]["neuroncore_counters"]
    cores.update(error="upstream failed", neuroncores_in_use={})
    found = samples(exporter_fed(report(), second))
    assert values(found, "execution_status_total", runtime_tag="7685", status_type="completed") == [130]
    assert values(found, "execution_errors_total", runtime_tag="7685", error_type="model") == [4]
    assert values(
        found, "hardware_ecc_events_total", event_type="sram_ecc_corrected", neuron_device_index="0"
    ) == [12]
    assert values(found, "system_memory_used_bytes") == [16042344448]
    assert values(found, "neuroncore_utilization_ratio", runtime_tag="7685", neuroncore="0") == [0.42]


def test_a_section_carried_over_from_a_report_already_taken_is_not_counted_again() -> None:
    first = report()
    standing = dict(first)  # a standing report: a group that was not due keeps its body, the object
    standing["neuron_runtime_data"] = [
        dict(e, report=dict(e["report"])) for e in first["neuron_runtime_data"]
    ]
    equal_but_new = report()  # a new period that happens to count the same
    found = samples(exporter_fed(first, standing, equal_but_new))
    assert values(found, "execution_status_total", runtime_tag="7685", status_type="completed") == [246]
    assert values(
        found, "hardware_ecc_events_total", event_type="sram_ecc_corrected", neuron_device_index="0"
    ) == [12]


def test_an_application_absent_from_the_latest_report_loses_every_series() -> None:
    exporter = exporter_fed(report())
    alone = report()
    alone["neuron_runtime_data"] = [entry(alone, "7685")]
    exporter.export(alone)  # type: ignore[arg-type]
    found = samples(exporter)
    assert not [k for k in found if dict(k[1]).get("runtime_tag") == "app_b"]
    assert values(found, "execution_status_total", runtime_tag="7685", status_type="completed") == [246]
    assert values(
        found, "hardware_ecc_events_total", event_type="sram_ecc_corrected", neuron_device_index="0"
    ) == [12]
    exporter.export(report())  # type: ignore[arg-type]
    # Back: its counters start again from this report's counts.
    assert values(
        samples(exporter), "execution_status_total", runtime_tag="app_b", status_type="completed"
    ) == [5]


def test_no_application_at_all_leaves_the_system_series() -> None:
    found = samples(exporter_fed(report(), report(neuron_runtime_data=[])))
    assert not [k for k in found if "runtime_tag" in dict(k[1])]
    assert values(
        found, "hardware_ecc_events_total", event_type="sram_ecc_corrected", neuron_device_index="0"
    ) == [12]
    assert values(found, "system_memory_total_bytes") == [49345835008]


def test_an_entry_with_an_error_keeps_its_values() -> None:
    second = report()
    failing = entry(second, "app_b")
    failing.update(error="cannot reach the runtime", report={})
    found = samples(exporter_fed(report(), second))
    assert values(found, "execution_status_total", runtime_tag="app_b", status_type="completed") == [5]
    assert values(found, "neuroncore_utilization_ratio", runtime_tag="app_b", neuroncore="2") == [0.1002]


def test_a_group_taken_again_replaces_its_gauges() -> None:
    second = report()
    stats = entry(second, "7685")["report"]["execution_stats"]
    stats["latency_stats"]["total_latency"] = None  # nothing ran
    entry(second, "7685")["report"]["neuroncore_counters"]["neuroncores_in_use"].pop("1")
    found = samples(exporter_fed(report(), second))
    assert values(found, "execution_latency_seconds", runtime_tag="7685") == []
    assert len(values(found, "execution_latency_seconds", runtime_tag="app_b")) == 4
    assert values(found, "neuroncore_utilization_ratio", runtime_tag="7685", neuroncore="1") == []


def test_instance_labels_follow_the_latest_instance_info() -> None:
    looking_up = report()
    looking_up["instance_info"] = {key: "" for key in looking_up["instance_info"]}
    found = samples(exporter_fed(looking_up, report()))
    assert values(found, "instance_info") == [1]
    assert {dict(k[1])["instance_id"] for k in found} == {"i-0011223344556677a"}


def test_reports_the_script_dies_on_are_served() -> None:
    # A real inf2 capture's instance_info has no instance_name, subnet or AZ id (the script: KeyError).
    partial = report()
    for field in ("instance_name", "subnet_id", "instance_availability_zone_id"):
        del partial["instance_info"][field]
    # Hostile values where the script would raise: negative counts, strings, nulls, odd core keys.
    stats = entry(partial, "7685")["report"]["execution_stats"]
    stats["error_summary"].update(model=-3, generic="many")
    stats["latency_stats"]["total_latency"] = {"p50": None, "p99": 0.5}
    entry(partial, "7685")["report"]["neuroncore_counters"]["neuroncores_in_use"]["x"] = {
        "neuroncore_utilization": 5.0
    }
    entry(partial, "app_b")["report"]["memory_used"]["neuron_runtime_used_bytes"] = None
    partial["system_data"]["vcpu_usage"]["average_usage"] = {"user": 10.0}
    partial["neuron_hardware_info"] = None
    found = samples(exporter_fed(partial))
    assert {dict(k[1])["instance_name"] for k in found} == {""}
    assert values(found, "execution_errors_total", runtime_tag="7685", error_type="model") == []
    assert values(found, "execution_errors_total", runtime_tag="7685", error_type="numerical") == [1]
    assert values(found, "execution_latency_seconds", runtime_tag="7685") == [0.5]
    assert {dict(k[1]).get("neuroncore") for k in found if k[0] == "neuroncore_utilization_ratio"} == {
        "0",
        "1",
        "2",
    }
    assert values(found, "neuron_runtime_memory_used_bytes", runtime_tag="app_b") == []
    assert values(found, "system_vcpu_usage_ratio", usage_type="user") == [0.1]
    assert values(found, "neuron_hardware_info") == []


def test_hardware_info_stays_through_a_failed_or_missing_one() -> None:
    failed = report()
    failed["neuron_hardware_info"] = {
        "neuron_device_count": 0,
        "neuroncore_per_device_count": 0,
        "error": "no",
    }
    found = samples(exporter_fed(report(), failed, report(neuron_hardware_info=None)))
    (labels,) = [dict(k[1]) for k in found if k[0] == "neuron_hardware_info"]
    assert labels["neuron_device_count"] == "1"
    without_size = report()
    del without_size["neuron_hardware_info"]["neuron_device_memory_size"]
    (labels,) = [dict(k[1]) for k in samples(exporter_fed(without_size)) if k[0] == "neuron_hardware_info"]
    assert "neuron_device_memory_size" not in labels


def test_nothing_is_served_before_a_report() -> None:
    assert samples(exporter_fed()) == {}
