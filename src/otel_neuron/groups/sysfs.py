"""Groups fed by the Neuron driver's sysfs: memory, ECC, hardware facts, power, NeuronCore status.

    groups = create_sysfs_groups(0, "sysfs:", ["memory_used", "hw_counters", "neuron_power"], 0.8)

A `sysfs:` runtime entry (or `sysfs:/other/root`) gives, for the whole host:

- memory_used: `neuron_runtime_used_bytes` host = the sum of host_mem categories' `present`,
  neuron_device = the sum of every core's device_mem `present` (no loaded_models: sysfs does not
  list them); each category also as neuron.runtime.host_memory.usage / neuron.core.memory.usage;
- hw_counters: the ECC events of each device during the period (the increase of the driver's
  totals; a total that went down -- a driver reload -- counts from zero);
- neuron_hardware_info: device type, count, NeuronCores per device (as neuron-monitor 2.x);
- neuron_power: each device's power utilization min/max/avg and the reading's status;
- neuroncore_status: per NeuronCore, the increase during the period of every status and
  other_info counter (the driver updates them when a process exits).

The whole tree is read once per tick and shared by the groups of one entry. A file that is
unreadable or garbage is skipped; the group's error names it, and the rest still flows through
OpenTelemetry.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from otel_neuron.groups import runtime as runtime_groups
from otel_neuron.groups.base import (
    GroupSample,
    InstrumentSpec,
    Kind,
    MetricGroup,
    Point,
    PointsByMetric,
    describe_error,
)
from otel_neuron.groups.neuron_monitor import (
    CORE_MEMORY_BY_CATEGORY,
    HOST_MEMORY_BY_CATEGORY,
    MEMORY_CATEGORY,
)
from otel_neuron.groups.runtime import (
    CORE_INDEX,
    DEVICE_INDEX,
    ECC_ERRORS,
    HW_ERROR_TYPE,
    MEMORY_LOCATION,
    RUNTIME_MEMORY,
)
from otel_neuron.sources.sysfs import SysfsSnapshot, parse_sysfs_address, read_sysfs

DEVICE_TYPE = "neuron.device.type"
CORE_VERSION = "neuron.core.version"
INSTANCE_TYPE = "host.type"
POWER_STATISTIC = "neuron.power.statistic"  # min | max | avg
POWER_STATUS = "neuron.power.status"  # valid | no_data | invalid
CORE_STATUS = "neuron.core.status"
CORE_COUNTER = "neuron.core.counter"

DEVICE_INFO = InstrumentSpec(
    "neuron.device.info", "1", "1 per Neuron device, its facts as attributes", Kind.GAUGE
)
DEVICE_CORES = InstrumentSpec(
    "neuron.device.core.count", "{core}", "NeuronCores of a Neuron device", Kind.UPDOWN
)
POWER_UTILIZATION = InstrumentSpec(
    "neuron.device.power.utilization",
    "1",
    "Power use of a Neuron device as a fraction of its limit",
    Kind.GAUGE,
)
POWER_STATUS_GAUGE = InstrumentSpec(
    "neuron.device.power.status", "1", "1 for the status of the device's latest power reading", Kind.GAUGE
)
CORE_STATUS_COUNT = InstrumentSpec(
    "neuron.core.status.count", "{event}", "NeuronCore execution status counts by status", Kind.COUNTER
)
CORE_OTHER_COUNT = InstrumentSpec(
    "neuron.core.other_info.count",
    "{event}",
    "Other NeuronCore counters (flops, loads, resets)",
    Kind.COUNTER,
)
_POWER_STATISTICS = (("min", "minimum"), ("max", "maximum"), ("avg", "average"))


class SysfsReader:
    """Reads the tree once per tick for all the groups of one entry.

    A snapshot is shared until a group asks for a second one (its next period) or it is older
    than `reuse_s`; then the tree is read again.
    """

    def __init__(
        self, root: str, read: Callable[[str], SysfsSnapshot] = read_sysfs, reuse_s: float = 0.5
    ) -> None:
        self.root = root
        self._read = read
        self._reuse_s = reuse_s
        self._lock = threading.Lock()
        self._last: tuple[float, SysfsSnapshot] | None = None
        self._consumers: set[int] = set()

    def snapshot(self, consumer: object) -> SysfsSnapshot:
        with self._lock:
            now = time.monotonic()
            key = id(consumer)
            if self._last is None or key in self._consumers or now - self._last[0] >= self._reuse_s:
                self._last = (now, self._read(self.root))
                self._consumers = set()
            self._consumers.add(key)
            return self._last[1]


class SysfsGroup(MetricGroup):
    """A group computed from sysfs snapshots; problems with files become the error, data still flows."""

    # Path fragments of the files this group reads, to pick its problems from the snapshot's.
    files: tuple[str, ...] = ()

    def __init__(self, runtime_index: int | None, reader: SysfsReader) -> None:
        super().__init__(runtime_index)
        self.reader = reader
        self._base = self.base_attributes()

    def sample(self) -> GroupSample:
        now = time.monotonic()
        period = now - self._previous_time if self._previous_time is not None else 0.0
        self._previous_time = now
        try:
            snapshot = self.reader.snapshot(self)
            points = self._points(snapshot)
            problems = [p for p in snapshot.problems if any(fragment in p for fragment in self.files)]
            error = "; ".join(problems[:3]) + (
                f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
            )
            result = GroupSample(period, error, time.time_ns(), points)
        except Exception as error:  # noqa: BLE001 - a failing source becomes the group's error
            result = GroupSample(period, describe_error(error), time.time_ns(), {})
        self.last_sample = result
        return result

    def _take_baseline(self) -> None:
        self._points(self.reader.snapshot(self))

    def _sample_points(self, period: float) -> PointsByMetric:
        return self._points(self.reader.snapshot(self))

    def _points(self, snapshot: SysfsSnapshot) -> PointsByMetric:
        raise NotImplementedError

    def _attrs(self, **attributes: Any) -> dict[str, Any]:
        return {**self._base, **attributes}


class SysfsMemoryUsed(SysfsGroup):
    report_key = "memory_used"
    instruments = (RUNTIME_MEMORY, HOST_MEMORY_BY_CATEGORY, CORE_MEMORY_BY_CATEGORY)
    files = ("memory_usage",)
    render = staticmethod(runtime_groups.MemoryUsedGroup.render)

    def _points(self, snapshot: SysfsSnapshot) -> PointsByMetric:
        host_categories: dict[str, int] = {}
        core_points: list[Point] = []
        device_total = 0
        for device in snapshot.devices:
            for category, usage in device.host_memory.items():
                if usage.present is not None:
                    host_categories[category] = host_categories.get(category, 0) + usage.present
            for core in device.cores:
                for category, usage in core.memory.items():
                    if usage.present is not None:
                        device_total += usage.present
                        core_points.append(
                            (
                                self._attrs(**{CORE_INDEX: core.index, MEMORY_CATEGORY: category}),
                                usage.present,
                            )
                        )
        return {
            RUNTIME_MEMORY.name: [
                (self._attrs(**{MEMORY_LOCATION: "host"}), sum(host_categories.values())),
                (self._attrs(**{MEMORY_LOCATION: "neuron_device"}), device_total),
            ],
            HOST_MEMORY_BY_CATEGORY.name: [
                (self._attrs(**{MEMORY_CATEGORY: category}), amount)
                for category, amount in sorted(host_categories.items())
            ],
            CORE_MEMORY_BY_CATEGORY.name: core_points,
        }


class _Increases:
    """Per-period increases of monotonic totals; a total that went down restarts from zero."""

    def __init__(self) -> None:
        self._previous: dict[tuple[Any, ...], int] = {}

    def step(self, totals: Mapping[tuple[Any, ...], int]) -> dict[tuple[Any, ...], int]:
        increases = {}
        for key, total in totals.items():
            before = self._previous.get(key)
            if before is None:
                increases[key] = 0  # first sight: the baseline
            elif total < before:
                increases[key] = total  # reset (driver reloaded): everything since counts
            else:
                increases[key] = total - before
        self._previous = dict(totals)
        return increases


class SysfsHwCounters(SysfsGroup):
    report_key = "hw_counters"
    instruments = (ECC_ERRORS,)
    files = ("hardware/",)
    render = staticmethod(runtime_groups.HwCountersGroup.render)

    def __init__(self, runtime_index: int | None, reader: SysfsReader) -> None:
        super().__init__(runtime_index, reader)
        self._increases = _Increases()

    def _take_baseline(self) -> None:
        self._points(self.reader.snapshot(self))

    def _points(self, snapshot: SysfsSnapshot) -> PointsByMetric:
        totals = {
            (device.index, kind): value for device in snapshot.devices for kind, value in device.ecc.items()
        }
        increases = self._increases.step(totals)
        points: list[Point] = []
        for device in snapshot.devices:
            counts = dict.fromkeys(runtime_groups.ECC_KINDS, 0)
            counts.update({kind: increases[(device.index, kind)] for kind in device.ecc})
            for kind, count in counts.items():
                points.append((self._attrs(**{DEVICE_INDEX: device.index, HW_ERROR_TYPE: kind}), count))
        return {ECC_ERRORS.name: points}


class SysfsHardwareInfo(SysfsGroup):
    report_key = "neuron_hardware_info"
    instruments = (DEVICE_INFO, DEVICE_CORES)
    sections_repeat = True
    files = ("architecture", "core_count")

    def _points(self, snapshot: SysfsSnapshot) -> PointsByMetric:
        info: list[Point] = []
        cores: list[Point] = []
        for device in snapshot.devices:
            facts = {
                DEVICE_INDEX: device.index,
                DEVICE_TYPE: device.device_name.lower(),
                CORE_VERSION: device.arch_type,
                INSTANCE_TYPE: device.instance_type,
            }
            info.append((self._attrs(**facts), 1))
            count = device.core_count if device.core_count is not None else len(device.cores)
            cores.append((self._attrs(**{DEVICE_INDEX: device.index}), count))
        return {DEVICE_INFO.name: info, DEVICE_CORES.name: cores}

    @staticmethod
    def render(points: PointsByMetric) -> dict[str, Any]:
        """As neuron-monitor 2.x's neuron_hardware_info (without the memory size sysfs lacks)."""
        infos = sorted(points.get(DEVICE_INFO.name, ()), key=lambda point: _int(point[0].get(DEVICE_INDEX)))
        counts = [int(value) for _, value in points.get(DEVICE_CORES.name, ())]  # type: ignore[arg-type]
        first = infos[0][0] if infos else {}
        version = str(first.get(CORE_VERSION, ""))
        return {
            "neuron_device_type": str(first.get(DEVICE_TYPE, "")),
            "neuroncore_version": version[2:].lower()
            if version.upper().startswith("NC")
            else version.lower(),
            "neuron_device_count": len(infos),
            "neuroncore_per_device_count": max(counts, default=0),
        }


class SysfsPower(SysfsGroup):
    report_key = "neuron_power"
    instruments = (POWER_UTILIZATION, POWER_STATUS_GAUGE)
    files = ("power/",)

    def _points(self, snapshot: SysfsSnapshot) -> PointsByMetric:
        utilization: list[Point] = []
        status: list[Point] = []
        for device in snapshot.devices:
            if device.power is None:
                continue
            reading = device.power
            status.append(
                (self._attrs(**{DEVICE_INDEX: device.index, POWER_STATUS: reading.status.lower()}), 1)
            )
            if reading.status == "VALID":
                for statistic, attribute in _POWER_STATISTICS:
                    value = getattr(reading, attribute) / 100.0
                    utilization.append(
                        (self._attrs(**{DEVICE_INDEX: device.index, POWER_STATISTIC: statistic}), value)
                    )
        return {POWER_UTILIZATION.name: utilization, POWER_STATUS_GAUGE.name: status}

    @staticmethod
    def render(points: PointsByMetric) -> dict[str, Any]:
        devices: dict[int, dict[str, Any]] = {}
        for attributes, _ in points.get(POWER_STATUS_GAUGE.name, ()):
            index = _int(attributes.get(DEVICE_INDEX))
            devices[index] = {
                "neuron_device_index": index,
                "status": str(attributes.get(POWER_STATUS, "")).upper(),
                "power_utilization": None,
            }
        for attributes, value in points.get(POWER_UTILIZATION.name, ()):
            entry = devices.setdefault(
                _int(attributes.get(DEVICE_INDEX)),
                {
                    "neuron_device_index": _int(attributes.get(DEVICE_INDEX)),
                    "status": "VALID",
                    "power_utilization": None,
                },
            )
            if entry["power_utilization"] is None:
                entry["power_utilization"] = {}
            entry["power_utilization"][str(attributes.get(POWER_STATISTIC))] = round(float(value) * 100.0, 2)  # type: ignore[arg-type]
        return {"neuron_devices": [devices[index] for index in sorted(devices)]}


class SysfsNeuroncoreStatus(SysfsGroup):
    report_key = "neuroncore_status"
    instruments = (CORE_STATUS_COUNT, CORE_OTHER_COUNT)
    files = ("stats/status/", "other_info/")

    def __init__(self, runtime_index: int | None, reader: SysfsReader) -> None:
        super().__init__(runtime_index, reader)
        self._increases = _Increases()

    def _points(self, snapshot: SysfsSnapshot) -> PointsByMetric:
        totals: dict[tuple[Any, ...], int] = {}
        for device in snapshot.devices:
            for core in device.cores:
                for family, counters in (("status", core.status), ("other_info", core.other_info)):
                    for name, usage in counters.items():
                        if usage.total is not None:
                            totals[(family, core.index, name)] = usage.total
        increases = self._increases.step(totals)
        status: list[Point] = []
        other: list[Point] = []
        for (family, core, name), increase in sorted(increases.items()):
            if family == "status":
                status.append((self._attrs(**{CORE_INDEX: core, CORE_STATUS: name}), increase))
            else:
                other.append((self._attrs(**{CORE_INDEX: core, CORE_COUNTER: name}), increase))
        return {CORE_STATUS_COUNT.name: status, CORE_OTHER_COUNT.name: other}

    @staticmethod
    def render(points: PointsByMetric) -> dict[str, Any]:
        cores: dict[int, dict[str, dict[str, int]]] = {}
        for metric, family, key in (
            (CORE_STATUS_COUNT.name, "status", CORE_STATUS),
            (CORE_OTHER_COUNT.name, "other_info", CORE_COUNTER),
        ):
            for attributes, value in points.get(metric, ()):
                entry = cores.setdefault(_int(attributes.get(CORE_INDEX)), {"status": {}, "other_info": {}})
                entry[family][str(attributes.get(key))] = int(value)  # type: ignore[arg-type]
        return {"neuroncores": {str(index): cores[index] for index in sorted(cores)}}


def _int(value: object) -> int:
    try:
        return int(value)  # type: ignore[call-overload, no-any-return]
    except (TypeError, ValueError):
        return 0


SYSFS_GROUP_TYPES: dict[str, type[SysfsGroup]] = {
    cls.report_key: cls
    for cls in (SysfsMemoryUsed, SysfsHwCounters, SysfsHardwareInfo, SysfsPower, SysfsNeuroncoreStatus)
}


def create_sysfs_groups(
    runtime_index: int, address: str, group_types: Sequence[str], deadline_s: float = 1.0
) -> list[MetricGroup]:
    """The requested groups of a `sysfs:` / `sysfs:/other/root` entry, sharing one reader.

    Same call as `groups.runtime.create_runtime_groups` (`deadline_s` is unused: reads are local).
    Raises ValueError for a bad address or a group sysfs cannot give (neuroncore_counters,
    inference_stats and neuron_runtime_vcpu_usage need a runtime or neuron-monitor).
    """
    root = parse_sysfs_address(address)
    unknown = [name for name in group_types if name not in SYSFS_GROUP_TYPES]
    if unknown:
        raise ValueError(
            f"sysfs does not provide the group {unknown[0]!r} (it provides: {', '.join(SYSFS_GROUP_TYPES)})"
        )
    reader = SysfsReader(root)
    return [SYSFS_GROUP_TYPES[name](runtime_index, reader) for name in dict.fromkeys(group_types)]
