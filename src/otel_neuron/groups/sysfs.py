"""Groups fed by the Neuron driver's sysfs: memory, ECC, hardware facts, power, NeuronCore status.

    groups = create_sysfs_groups(0, "sysfs:", ["memory_used", "hw_counters", "neuron_power"], 0.8)

A `sysfs:` runtime entry (or `sysfs:/other/root`) gives, for the whole host:

- memory_used: `neuron_runtime_used_bytes` host = the sum of every device's host_mem categories'
  `total` (the bytes in use now; `present` is only the last allocation's size), neuron_device =
  the sum of every core's device_mem categories' `total` (no loaded_models: sysfs does not list
  them); each category also as neuron.runtime.host_memory.usage / neuron.core.memory.usage, and
  its `peak` (the most ever in use) as neuron.device.host_memory.peak / neuron.core.memory.peak
  (OpenTelemetry only: the JSON memory_used keeps the guide's shape);
- hw_counters: the ECC events of each device during the period (the increase of the driver's
  totals; a total that went down -- a driver reload -- counts from zero);
- neuron_hardware_info: device type, count, NeuronCores per device (as neuron-monitor 2.x);
- neuron_power: each device's power utilization min/max/avg and the reading's status;
- neuroncore_status: per NeuronCore, the increase during the period of every status and
  other_info counter (the driver updates them when a process exits).

The whole tree is read once per tick and shared by the groups of one entry. A file that is
unreadable or garbage is skipped; the group's error names it, and the rest still flows through
OpenTelemetry. A read that fails as a whole (no tree) keeps the start of the group's interval
(`MetricGroup.sample`), so the next good period covers the gap, as its counts do.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from otel_neuron.groups.base import GroupSample, MetricGroup, Point, PointsByMetric
from otel_neuron.semconv import (
    CORE_COUNTER,
    CORE_INDEX,
    CORE_MEMORY_BY_CATEGORY,
    CORE_MEMORY_PEAK,
    CORE_OTHER_COUNT,
    CORE_STATUS,
    CORE_STATUS_COUNT,
    CORE_VERSION,
    DEVICE_CORES,
    DEVICE_HOST_MEMORY_PEAK,
    DEVICE_INDEX,
    DEVICE_INFO,
    DEVICE_TYPE,
    ECC_ERRORS,
    ECC_KINDS_V1,
    HOST_MEMORY_BY_CATEGORY,
    HW_COUNTERS,
    HW_ERROR_TYPE,
    INSTANCE_TYPE,
    MEMORY_CATEGORY,
    MEMORY_LOCATION,
    MEMORY_USED,
    NEURON_HARDWARE_INFO,
    NEURON_POWER,
    NEURONCORE_STATUS,
    POWER_STATISTIC,
    POWER_STATUS,
    POWER_STATUS_GAUGE,
    POWER_UTILIZATION,
    RUNTIME_MEMORY,
    SECTION_INSTRUMENTS,
)
from otel_neuron.sources.sysfs import (
    ECC_FILES,
    DeviceNode,
    SysfsSnapshot,
    parse_sysfs_address,
    read_sysfs,
)

Clock = Callable[[], float]
_POWER_STATISTICS = (("min", "minimum"), ("max", "maximum"), ("avg", "average"))
_MAX_PROBLEMS = 3  # named in a group's error; the rest are counted


class SysfsReader:
    """Reads the tree once per tick for all the groups of one entry.

    A snapshot is shared until a group asks for a second one (its next period) or it is older
    than `reuse_s`; then the tree is read again.
    """

    def __init__(
        self,
        root: str,
        read: Callable[[str], SysfsSnapshot] = read_sysfs,
        reuse_s: float = 0.5,
        clock: Clock = time.monotonic,
    ) -> None:
        self.root = root
        self._read = read
        self._reuse_s = reuse_s
        self._clock = clock
        self._lock = threading.Lock()
        self._last: tuple[float, SysfsSnapshot] | None = None
        self._consumers: set[int] = set()

    def snapshot(self, consumer: object) -> SysfsSnapshot:
        with self._lock:
            now = self._clock()
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

    def __init__(self, runtime_index: int | None, reader: SysfsReader, clock: Clock = time.monotonic) -> None:
        super().__init__(runtime_index, clock)
        self.reader = reader
        self._base = self.base_attributes()
        self._problems: list[str] = []

    def sample(self) -> GroupSample:
        """`MetricGroup.sample`, with the problems of the files this group read as its error."""
        self._problems = []
        sample = super().sample()
        if sample.error or not self._problems:
            return sample
        problems = self._problems
        error = "; ".join(problems[:_MAX_PROBLEMS])
        if len(problems) > _MAX_PROBLEMS:
            error += f" (and {len(problems) - _MAX_PROBLEMS} more)"
        return self._keep(sample._replace(error=error))

    def _take_baseline(self) -> None:
        self._points(self.reader.snapshot(self))

    def _sample_points(self, period: float) -> PointsByMetric:
        snapshot = self.reader.snapshot(self)
        points = self._points(snapshot)
        self._problems = [p for p in snapshot.problems if any(fragment in p for fragment in self.files)]
        return points

    def _points(self, snapshot: SysfsSnapshot) -> PointsByMetric:
        raise NotImplementedError

    def _attrs(self, **attributes: Any) -> dict[str, Any]:
        return {**self._base, **attributes}


class SysfsMemoryUsed(SysfsGroup):
    report_key = MEMORY_USED
    instruments = (
        RUNTIME_MEMORY,
        HOST_MEMORY_BY_CATEGORY,
        CORE_MEMORY_BY_CATEGORY,
        DEVICE_HOST_MEMORY_PEAK,
        CORE_MEMORY_PEAK,
    )
    files = ("host_mem/", "device_mem/")

    def _points(self, snapshot: SysfsSnapshot) -> PointsByMetric:
        host_categories: dict[str, int] = {}
        core_points: list[Point] = []
        host_peaks: list[Point] = []
        core_peaks: list[Point] = []
        device_total = 0
        for device in snapshot.devices:
            for category, usage in device.host_memory.items():
                if usage.total is not None:
                    host_categories[category] = host_categories.get(category, 0) + usage.total
                if usage.peak is not None:
                    where = {DEVICE_INDEX: device.index, MEMORY_CATEGORY: category}
                    host_peaks.append((self._attrs(**where), usage.peak))
            for core in device.cores:
                for category, usage in core.memory.items():
                    where = {CORE_INDEX: core.index, MEMORY_CATEGORY: category}
                    if usage.total is not None:
                        device_total += usage.total
                        core_points.append((self._attrs(**where), usage.total))
                    if usage.peak is not None:
                        core_peaks.append((self._attrs(**where), usage.peak))
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
            DEVICE_HOST_MEMORY_PEAK.name: host_peaks,
            CORE_MEMORY_PEAK.name: core_peaks,
        }


class _Increases:
    """Per-period increases of monotonic totals; a total that went down restarts from zero.

    A total missing from one reading (its file unreadable for a moment) keeps its last value, so
    what happened meanwhile is counted when it is read again. The keys are the host's devices and
    cores times the driver's counter names: bounded.
    """

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
        self._previous.update(totals)
        return increases


class SysfsHwCounters(SysfsGroup):
    report_key = HW_COUNTERS
    instruments = SECTION_INSTRUMENTS[HW_COUNTERS]
    files = ECC_FILES

    def __init__(self, runtime_index: int | None, reader: SysfsReader, clock: Clock = time.monotonic) -> None:
        super().__init__(runtime_index, reader, clock)
        self._increases = _Increases()

    def _points(self, snapshot: SysfsSnapshot) -> PointsByMetric:
        totals = {
            (device.index, kind): value for device in snapshot.devices for kind, value in device.ecc.items()
        }
        increases = self._increases.step(totals)
        points: list[Point] = []
        for device in snapshot.devices:
            counts = dict.fromkeys(ECC_KINDS_V1, 0)  # the guide's hw_counters keys, always present
            counts.update({kind: increases[(device.index, kind)] for kind in device.ecc})
            for kind, count in counts.items():
                points.append((self._attrs(**{DEVICE_INDEX: device.index, HW_ERROR_TYPE: kind}), count))
        return {ECC_ERRORS.name: points}


class SysfsHardwareInfo(SysfsGroup):
    report_key = NEURON_HARDWARE_INFO
    instruments = SECTION_INSTRUMENTS[NEURON_HARDWARE_INFO]
    files = ("arch_type", "instance_type", "device_name", "core_count")

    def _points(self, snapshot: SysfsSnapshot) -> PointsByMetric:
        info: list[Point] = []
        cores: list[Point] = []
        for device in snapshot.devices:
            facts = {
                DEVICE_INDEX: device.index,
                DEVICE_TYPE: device.device_name.lower(),
                CORE_VERSION: _core_version(device),
                INSTANCE_TYPE: device.instance_type,
            }
            info.append((self._attrs(**facts), 1))
            count = device.core_count if device.core_count is not None else len(device.cores)
            cores.append((self._attrs(**{DEVICE_INDEX: device.index}), count))
        return {DEVICE_INFO.name: info, DEVICE_CORES.name: cores}


class SysfsPower(SysfsGroup):
    report_key = NEURON_POWER
    instruments = SECTION_INSTRUMENTS[NEURON_POWER]
    files = ("power/utilization",)

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


class SysfsNeuroncoreStatus(SysfsGroup):
    report_key = NEURONCORE_STATUS
    instruments = SECTION_INSTRUMENTS[NEURONCORE_STATUS]
    files = ("/status/", "/other_info/")

    def __init__(self, runtime_index: int | None, reader: SysfsReader, clock: Clock = time.monotonic) -> None:
        super().__init__(runtime_index, reader, clock)
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


def _core_version(device: DeviceNode) -> str:
    """The NeuronCore architecture ("NCv2"): a core's arch_type, else the device's with its ND made NC
    (the driver names a device's architecture "NDv2", its cores' "NCv2")."""
    for core in device.cores:
        if core.arch_type:
            return core.arch_type
    arch = device.arch_type
    return "NC" + arch[2:] if arch.upper().startswith("ND") else arch


SYSFS_GROUP_TYPES: dict[str, type[SysfsGroup]] = {
    cls.report_key: cls
    for cls in (SysfsMemoryUsed, SysfsHwCounters, SysfsHardwareInfo, SysfsPower, SysfsNeuroncoreStatus)
}


def create_sysfs_groups(
    runtime_index: int,
    address: str,
    group_types: Sequence[str],
    deadline_s: float = 1.0,
    clock: Clock = time.monotonic,
) -> list[MetricGroup]:
    """The requested groups of a `sysfs:` / `sysfs:/other/root` entry, sharing one reader.

    Same call as `groups.runtime.create_runtime_groups` (`deadline_s` is unused: reads are local);
    `clock` (monotonic seconds) measures the periods.
    Raises ValueError for a bad address or a group sysfs cannot give (neuroncore_counters,
    inference_stats and neuron_runtime_vcpu_usage need a runtime or neuron-monitor).
    """
    root = parse_sysfs_address(address)
    unknown = [name for name in group_types if name not in SYSFS_GROUP_TYPES]
    if unknown:
        raise ValueError(
            f"sysfs does not provide the group {unknown[0]!r} (it provides: {', '.join(SYSFS_GROUP_TYPES)})"
        )
    reader = SysfsReader(root, clock=clock)
    return [SYSFS_GROUP_TYPES[name](runtime_index, reader, clock) for name in dict.fromkeys(group_types)]
