"""The sysfs source and its groups over fake Inf2, Trn1 and Trn2 trees."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from otel_neuron.groups.sysfs import create_sysfs_groups
from otel_neuron.sources.sysfs import (
    DEFAULT_ROOT,
    SysfsError,
    parse_power,
    parse_sysfs_address,
    read_sysfs,
)

TREES = Path(__file__).parents[1] / "fixtures" / "sysfs"
ALL = ["memory_used", "hw_counters", "neuron_hardware_info", "neuron_power", "neuroncore_status"]


def groups_for(root: Path, types: list[str] = ALL) -> dict:  # type: ignore[type-arg]
    groups = create_sysfs_groups(0, f"sysfs:{root}", types)
    for group in groups:
        group.prime()
    return {group.report_key: group for group in groups}


def report(group) -> tuple[str, dict]:  # type: ignore[no-untyped-def, type-arg]
    sample = group.sample()
    return sample.error, group.render(sample.points)


def test_addresses() -> None:
    assert parse_sysfs_address("sysfs:") == DEFAULT_ROOT
    assert parse_sysfs_address("sysfs:/tmp/tree") == "/tmp/tree"
    with pytest.raises(ValueError, match="absolute path"):
        parse_sysfs_address("sysfs:relative")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("POWER_STATUS_VALID,1700000000,10,55,30.5", ("VALID", 1700000000, 10.0, 55.0, 30.5)),
        ("POWER_STATUS_NO_DATA,0,0,0,0\n", ("NO_DATA", 0, 0.0, 0.0, 0.0)),
    ],
)
def test_power_lines(text: str, expected: tuple) -> None:  # type: ignore[type-arg]
    reading = parse_power(text)
    assert (reading.status, reading.epoch, reading.minimum, reading.maximum, reading.average) == expected


@pytest.mark.parametrize(
    "text", ["", "VALID,1,2,3,4", "POWER_STATUS_MAYBE,1,2,3,4", "POWER_STATUS_VALID,x,1,2,3"]
)
def test_power_garbage(text: str) -> None:
    with pytest.raises(ValueError):
        parse_power(text)


def test_trn1_tree_numbers_cores_across_devices() -> None:
    snapshot = read_sysfs(str(TREES / "trn1"))
    assert [device.index for device in snapshot.devices] == [0, 1]
    assert [core.index for core in snapshot.devices[1].cores] == [2, 3]
    assert snapshot.devices[0].device_name == "Trainium"
    assert snapshot.problems == (
        "neuron1/neuron_core1/stats/status/timeout/total: not a number: '\\x00\\x01garbage'",
    )


def test_trn2_layout_with_deeper_cores_and_counter_directories_is_found() -> None:
    snapshot = read_sysfs(str(TREES / "trn2"))
    (device,) = snapshot.devices
    assert len(device.cores) == 4 and device.ecc["mem_ecc_repairable_uncorrected"] == 2
    assert device.power is None and "power/utilization" in snapshot.problems[0]


def test_missing_root_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SysfsError, match="does not exist: is the Neuron driver loaded"):
        read_sysfs(str(tmp_path / "absent"))
    with pytest.raises(SysfsError, match="no neuron<N> device"):
        read_sysfs(str(tmp_path))


def test_memory_used_sums_host_categories_and_core_device_memory() -> None:
    error, body = report(groups_for(TREES / "trn1")["memory_used"])
    # host_mem present per device i, category c: (i+1)(c+1)*1000 over 4 categories -> 10000 and 20000
    assert error == ""
    assert body["neuron_runtime_used_bytes"]["host"] == 30000
    # device_mem present per core l, category c: (l+1)(c+1)*1e6 over 5 categories -> 15e6 * (1+2) * 2
    assert body["neuron_runtime_used_bytes"]["neuron_device"] == 90_000_000
    assert body["loaded_models"] == []


def test_garbage_memory_file_is_named_and_the_rest_still_flows() -> None:
    group = groups_for(TREES / "inf2")["memory_used"]
    sample = group.sample()
    assert (
        sample.error
        == "neuron0/neuron_core1/stats/memory_usage/device_mem/tensors/present: not a number: 'abc'"
    )
    categories = {
        (a["neuron.core.index"], a["neuron.memory.category"])
        for a, _ in sample.points["neuron.core.memory.usage"]
    }
    assert (1, "tensors") not in categories and (1, "model_code") in categories


def test_hw_counters_report_increases_per_period(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    shutil.copytree(TREES / "trn1", tree)
    group = groups_for(tree, ["hw_counters"])["hw_counters"]
    error, body = report(group)
    assert error == "" and all(device["mem_ecc_uncorrected"] == 0 for device in body["neuron_devices"])
    (tree / "neuron1/stats/hardware/mem_ecc_uncorrected").write_text("13\n")  # was 10
    _, body = report(group)
    assert body["neuron_devices"][1]["mem_ecc_uncorrected"] == 3
    (tree / "neuron1/stats/hardware/mem_ecc_uncorrected").write_text("2\n")  # driver reloaded
    sample = group.sample()
    ecc = {
        (a["neuron.device.index"], a["hw.error.type"]): v
        for a, v in sample.points["neuron.device.ecc.errors"]
    }
    assert ecc[(1, "mem_ecc_uncorrected")] == 2 and ecc[(1, "mem_ecc_repairable_uncorrected")] == 0


def test_hardware_info_as_2x() -> None:
    error, body = report(groups_for(TREES / "trn2")["neuron_hardware_info"])
    assert error == ""
    assert body == {
        "neuron_device_type": "trainium2",
        "neuroncore_version": "v3",
        "neuron_device_count": 1,
        "neuroncore_per_device_count": 4,
    }
    _, inf2 = report(groups_for(TREES / "inf2")["neuron_hardware_info"])
    assert inf2["neuroncore_per_device_count"] == 2  # no core_count file: counted from the tree


def test_power_reports_valid_readings_and_status() -> None:
    error, body = report(groups_for(TREES / "trn1")["neuron_power"])
    assert error == ""
    assert body["neuron_devices"] == [
        {
            "neuron_device_index": 0,
            "status": "VALID",
            "power_utilization": {"min": 10.0, "max": 55.0, "avg": 30.0},
        },
        {"neuron_device_index": 1, "status": "NO_DATA", "power_utilization": None},
    ]
    error, body = report(groups_for(TREES / "trn2")["neuron_power"])
    assert "neuron0/stats/power/utilization" in error and body["neuron_devices"] == []


def test_status_counters_count_what_happened_during_the_period(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    shutil.copytree(TREES / "trn1", tree)
    group = groups_for(tree, ["neuroncore_status"])["neuroncore_status"]
    error, body = report(group)
    assert "neuron1/neuron_core1/stats/status/timeout/total" in error
    assert body["neuroncores"]["0"]["status"]["exec_good"] == 0
    (tree / "neuron0/neuron_core1/stats/status/exec_good/total").write_text("150\n")  # was 101
    _, body = report(group)
    assert body["neuroncores"]["1"]["status"]["exec_good"] == 49
    assert body["neuroncores"]["1"]["other_info"]["inference_count"] == 0


def test_sysfs_is_only_read(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    shutil.copytree(TREES / "trn1", tree)
    for path in tree.rglob("*"):
        if path.is_file():
            path.chmod(0o444)
    before = {path: path.stat().st_mtime_ns for path in tree.rglob("*") if path.is_file()}
    for group in groups_for(tree).values():
        group.sample()
    after = {path: path.stat().st_mtime_ns for path in tree.rglob("*") if path.is_file()}
    assert before == after


def test_unsupported_group_is_refused() -> None:
    with pytest.raises(ValueError, match="sysfs does not provide the group 'inference_stats'"):
        create_sysfs_groups(0, "sysfs:", ["inference_stats"])


@pytest.mark.skipif(os.path.isdir(DEFAULT_ROOT), reason="this host has a Neuron driver")
def test_no_driver_is_a_group_error() -> None:
    (group,) = create_sysfs_groups(0, "sysfs:", ["memory_used"])
    assert "does not exist" in group.sample().error
