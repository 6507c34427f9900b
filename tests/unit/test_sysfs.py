"""The sysfs source and its groups over fake Inf2, Trn1 and Trn2 trees."""

from __future__ import annotations

import builtins
import io
import os
import shutil
from pathlib import Path

import pytest

from otel_neuron.groups.sysfs import create_sysfs_groups
from otel_neuron.report.section_table import SECTIONS_V1
from otel_neuron.sources.sysfs import (
    DEFAULT_ROOT,
    SysfsError,
    parse_power,
    parse_sysfs_address,
    read_sysfs,
)

TREES = Path(__file__).parents[1] / "fixtures" / "sysfs"  # ground truth: make_trees.py's docstring
ALL = ["memory_used", "hw_counters", "neuron_hardware_info", "neuron_power", "neuroncore_status"]
MEMORY = "neuron.runtime.memory.usage"
HOST_BY_CATEGORY = "neuron.runtime.host_memory.usage"
CORE_BY_CATEGORY = "neuron.core.memory.usage"
HOST_PEAK = "neuron.device.host_memory.peak"
CORE_PEAK = "neuron.core.memory.peak"
ECC = "neuron.device.ecc.errors"


class FakeClock:
    """Monotonic seconds that move only when a test says so."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def groups_for(root: Path, types: list[str] = ALL, clock: FakeClock | None = None) -> dict:  # type: ignore[type-arg]
    groups = create_sysfs_groups(0, f"sysfs:{root}", types, clock=clock or FakeClock())
    for group in groups:
        group.prime()
    return {group.report_key: group for group in groups}


def by(points, *keys: str) -> dict:  # type: ignore[no-untyped-def, type-arg]
    """A metric's points as {(attribute values...): value}."""
    return {tuple(attributes[key] for key in keys): value for attributes, value in points}


def report(group) -> tuple[str, dict]:  # type: ignore[no-untyped-def, type-arg]
    sample = group.sample()
    return sample.error, SECTIONS_V1[group.report_key].render(sample.points)


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


def test_memory_used_is_the_totals_not_the_last_allocation() -> None:
    group = groups_for(TREES / "trn1")["memory_used"]
    sample = group.sample()
    assert sample.error == ""
    # host_mem total (i+1)(p+1)*1000 over 8 categories: 36,000 + 72,000 (`present` is 4096 everywhere)
    # device_mem total (l+1)(p+1)*1e6 over 11 categories: (66e6 + 132e6) per device, two devices
    assert SECTIONS_V1[group.report_key].render(sample.points)["neuron_runtime_used_bytes"] == {
        "host": 108_000,
        "neuron_device": 396_000_000,
    }
    assert by(sample.points[HOST_BY_CATEGORY], "neuron.memory.category")[("dma_rings",)] == 4000 + 8000
    core_memory = by(sample.points[CORE_BY_CATEGORY], "neuron.core.index", "neuron.memory.category")
    assert core_memory[(3, "model_code")] == 2 * 5 * 1_000_000  # device 1's second core
    assert len(core_memory) == 4 * 11  # the cores' own device_mem aggregates are not categories


def test_memory_peaks_are_their_own_metrics_and_stay_out_of_the_json() -> None:
    group = groups_for(TREES / "trn1")["memory_used"]
    assert {HOST_PEAK, CORE_PEAK} <= {spec.name for spec in group.instruments}
    sample = group.sample()
    host_peaks = by(sample.points[HOST_PEAK], "neuron.device.index", "neuron.memory.category")
    assert len(host_peaks) == 2 * 8
    assert host_peaks[(1, "tensors")] == 2 * (2 * 7 * 1000)
    core_peaks = by(sample.points[CORE_PEAK], "neuron.core.index", "neuron.memory.category")
    assert len(core_peaks) == 4 * 11
    assert core_peaks[(2, "collectives")] == 2 * 1_000_000
    assert set(SECTIONS_V1[group.report_key].render(sample.points)) == {
        "neuron_runtime_used_bytes",
        "loaded_models",
    }
    assert SECTIONS_V1[group.report_key].render(sample.points)["loaded_models"] == []


def test_garbage_memory_file_is_named_and_the_rest_still_flows() -> None:
    group = groups_for(TREES / "inf2")["memory_used"]
    sample = group.sample()
    assert (
        sample.error
        == "neuron0/neuron_core1/stats/memory_usage/device_mem/tensors/total: not a number: 'abc'"
    )
    core_memory = by(sample.points[CORE_BY_CATEGORY], "neuron.core.index", "neuron.memory.category")
    assert (1, "tensors") not in core_memory and core_memory[(1, "model_code")] == 10_000_000
    # 66e6 (core 0) + 132e6 - 20e6 (core 1 without its unreadable tensors)
    assert by(sample.points[MEMORY], "neuron.memory.location") == {
        ("host",): 36_000,
        ("neuron_device",): 178_000_000,
    }


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
    ecc = by(group.sample().points[ECC], "neuron.device.index", "hw.error.type")
    assert ecc[(1, "mem_ecc_uncorrected")] == 2 and ecc[(1, "mem_ecc_repairable_uncorrected")] == 0


def test_a_counter_unreadable_for_a_period_loses_none_of_its_events(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    shutil.copytree(TREES / "trn1", tree)
    group = groups_for(tree, ["hw_counters"])["hw_counters"]
    ecc_file = tree / "neuron1/stats/hardware/mem_ecc_repairable_uncorrected"  # 12
    ecc_file.write_text("garbage\n")
    sample = group.sample()
    assert sample.error == "neuron1/stats/hardware/mem_ecc_repairable_uncorrected: not a number: 'garbage'"
    ecc_file.write_text("17\n")
    ecc = by(group.sample().points[ECC], "neuron.device.index", "hw.error.type")
    assert ecc[(1, "mem_ecc_repairable_uncorrected")] == 5


def test_a_failed_read_keeps_the_start_of_the_interval(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    shutil.copytree(TREES / "trn1", tree)
    clock = FakeClock()
    group = groups_for(tree, ["hw_counters"], clock)["hw_counters"]
    clock.now += 1.0
    assert group.sample().period == pytest.approx(1.0)
    tree.rename(tmp_path / "away")  # the driver unloaded
    clock.now += 0.30
    failed = group.sample()
    assert "does not exist" in failed.error and failed.period == pytest.approx(0.30)
    (tmp_path / "away").rename(tree)
    (tree / "neuron1/stats/hardware/mem_ecc_uncorrected").write_text("14\n")  # was 10
    clock.now += 0.05
    sample = group.sample()
    assert sample.error == ""
    # The 4 events happened some time in the 0.35 s since the last good read: the period says so.
    assert sample.period == pytest.approx(0.35)
    assert by(sample.points[ECC], "neuron.device.index", "hw.error.type")[(1, "mem_ecc_uncorrected")] == 4


def test_hardware_info_as_2x() -> None:
    error, body = report(groups_for(TREES / "trn2")["neuron_hardware_info"])
    assert error == ""
    assert body == {
        "neuron_device_type": "trainium2",
        "neuroncore_version": "v3",  # the cores' NCv3 (the device itself says NDv3)
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
    assert error == "neuron1/neuron_core1/stats/status/timeout/total: not a number: '\\x00\\x01garbage'"
    assert len(body["neuroncores"]["0"]["status"]) == 24  # the driver's status counters
    assert body["neuroncores"]["0"]["status"]["success"] == 0
    (tree / "neuron0/neuron_core1/stats/status/success/total").write_text("150\n")  # was 101
    (tree / "neuron0/neuron_core1/stats/status/execute_completed_with_num_error/total").write_text("703\n")
    _, body = report(group)
    assert body["neuroncores"]["1"]["status"]["success"] == 49
    assert body["neuroncores"]["1"]["status"]["execute_completed_with_num_error"] == 2  # was 701
    assert body["neuroncores"]["1"]["other_info"]["inference_count"] == 0


def test_a_reorganised_tree_is_found_by_walking(tmp_path: Path) -> None:
    # No architecture, memory_usage or hardware directories; cores under nc/; every counter family
    # one directory deeper (make_trees.py's REORGANISED layout).
    snapshot = read_sysfs(str(TREES / "reorganised"))
    assert snapshot.problems == ()
    assert [(device.index, device.device_name, device.core_count) for device in snapshot.devices] == [
        (0, "Trainium2", 3),
        (1, "Trainium2", 3),
    ]
    device = snapshot.devices[1]
    assert [core.index for core in device.cores] == [3, 4, 5]
    assert device.ecc == {
        "mem_ecc_uncorrected": 10,
        "sram_ecc_uncorrected": 11,
        "mem_ecc_repairable_uncorrected": 12,
    }
    core = device.cores[1]
    assert (core.status["success"].total, core.other_info["flop_count"].total) == (101, 5001)
    assert core.memory["runtime_memory"].total == 2 * 9 * 1_000_000
    assert device.power is not None and device.power.average == 40.0

    groups = groups_for(TREES / "reorganised")
    error, memory = report(groups["memory_used"])
    assert error == ""
    # host: 36,000 + 72,000; device: 66e6 * (1 + 2 + 3) per device, two devices
    assert memory["neuron_runtime_used_bytes"] == {"host": 108_000, "neuron_device": 792_000_000}
    assert report(groups["neuron_hardware_info"]) == (
        "",
        {
            "neuron_device_type": "trainium2",
            "neuroncore_version": "v3",
            "neuron_device_count": 2,
            "neuroncore_per_device_count": 3,
        },
    )

    tree = tmp_path / "tree"
    shutil.copytree(TREES / "reorganised", tree)
    groups = groups_for(tree, ["hw_counters", "neuroncore_status"])
    (tree / "neuron1/stats/errors/ecc/sram_ecc_uncorrected").write_text("14\n")  # was 11
    (tree / "neuron1/nc/neuron_core1/stats/counters/exec/status/failure/total").write_text("209\n")  # was 201
    error, ecc = report(groups["hw_counters"])
    assert error == "" and ecc["neuron_devices"][1]["sram_ecc_uncorrected"] == 3
    error, status = report(groups["neuroncore_status"])
    assert error == "" and status["neuroncores"]["4"]["status"]["failure"] == 8


def test_sysfs_is_only_read(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    shutil.copytree(TREES / "trn1", tree)
    for path in tree.rglob("*"):
        if path.is_file():
            path.chmod(0o444)
    before = {path: path.stat().st_mtime_ns for path in tree.rglob("*") if path.is_file()}
    groups = groups_for(tree)
    for group in groups.values():
        assert group.sample().points
    after = {path: path.stat().st_mtime_ns for path in tree.rglob("*") if path.is_file()}
    assert before == after
    _, body = report(groups["memory_used"])
    assert body["neuron_runtime_used_bytes"]["host"] == 108_000


def test_every_open_is_read_only(monkeypatch: pytest.MonkeyPatch) -> None:
    flags_seen: list[int] = []
    modes_seen: list[str] = []
    real_os_open, real_open = os.open, builtins.open

    def recording_os_open(path, flags, *args, **kwargs):  # type: ignore[no-untyped-def]
        flags_seen.append(flags)
        return real_os_open(path, flags, *args, **kwargs)

    def recording_open(file, mode="r", *args, **kwargs):  # type: ignore[no-untyped-def]
        modes_seen.append(mode)
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(os, "open", recording_os_open)
    monkeypatch.setattr(builtins, "open", recording_open)
    monkeypatch.setattr(io, "open", recording_open)
    for group in groups_for(TREES / "trn1").values():
        group.sample()
    writing = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    assert len(flags_seen) + len(modes_seen) > 500  # the tree was read (twice: baseline and sample)
    assert [flags for flags in flags_seen if flags & writing] == []
    assert [mode for mode in modes_seen if set(mode) - {"r", "b", "t"}] == []


def test_unsupported_group_is_refused() -> None:
    with pytest.raises(ValueError, match="sysfs does not provide the group 'inference_stats'"):
        create_sysfs_groups(0, "sysfs:", ["inference_stats"])


@pytest.mark.skipif(os.path.isdir(DEFAULT_ROOT), reason="this host has a Neuron driver")
def test_no_driver_is_a_group_error() -> None:
    (group,) = create_sysfs_groups(0, "sysfs:", ["memory_used"])
    assert "does not exist" in group.sample().error
