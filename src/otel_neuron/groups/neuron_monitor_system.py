"""The stream's root and system objects as groups: neuron_hardware_info, and system_data's vcpu_usage
and memory_info passed through when the monitor does not compute them from its own /proc."""

from __future__ import annotations

from otel_neuron.groups.base import Point, PointsByMetric
from otel_neuron.groups.bridge_group import Attrs, BridgeGroup
from otel_neuron.semconv import (
    CONTEXT_SWITCHES,
    CORE_VERSION,
    CPU_AVERAGE_UTILIZATION,
    CPU_COUNT,
    CPU_LOGICAL_NUMBER,
    CPU_MODE,
    CPU_UTILIZATION,
    DEVICE_CORES,
    DEVICE_INDEX,
    DEVICE_INFO,
    DEVICE_MEMORY_SIZE,
    DEVICE_TYPE,
    DEVICE_VERSION,
    LOGICAL_CORE_CONFIG,
    MEMORY_INFO,
    MEMORY_LIMIT,
    MEMORY_STATE,
    MEMORY_USAGE,
    NEURON_HARDWARE_INFO,
    PAGING_STATE,
    PAGING_USAGE,
    SECTION_INSTRUMENTS,
    SEMCONV_CPU_MODE,
    VCPU_USAGE,
)
from otel_neuron.sources.neuron_monitor_application import AppWindow, has_data
from otel_neuron.sources.neuron_monitor_bridge import BridgeError, BridgeRegistry
from otel_neuron.sources.neuron_monitor_types import HardwareInfo, MemoryInfo


class BridgeHardwareInfo(BridgeGroup):
    """The stream's root neuron_hardware_info, as the sysfs group of the same key gives it: one
    neuron.device.info point per device with the facts upstream gave as attributes, and its
    NeuronCores as neuron.device.core.count."""

    report_key = NEURON_HARDWARE_INFO
    instruments = SECTION_INSTRUMENTS[NEURON_HARDWARE_INFO]

    def _add_points(self, points: dict[str, list[Point]], app: AppWindow, attributes: Attrs) -> None:
        hardware: HardwareInfo = app.body
        facts: Attrs = {}
        for key, value in (
            (DEVICE_TYPE, hardware.neuron_device_type),
            (DEVICE_VERSION, hardware.neuron_device_version),
            (CORE_VERSION, hardware.neuroncore_version),
            (DEVICE_MEMORY_SIZE, hardware.neuron_device_memory_size),
            (LOGICAL_CORE_CONFIG, hardware.logical_neuroncore_config),
        ):
            if value is not None:
                facts[key] = value
        for device in range(hardware.neuron_device_count or 0):
            points[DEVICE_INFO.name].append(({**attributes, DEVICE_INDEX: device, **facts}, 1))
            if hardware.neuroncore_per_device_count is not None:
                points[DEVICE_CORES.name].append(
                    ({**attributes, DEVICE_INDEX: device}, hardware.neuroncore_per_device_count)
                )


class BridgeSystemGroup(BridgeGroup):
    """A system group of the stream (system_data's vcpu_usage or memory_info), for when the monitor
    does not compute it from its own /proc: no runtime index, the /proc group's instruments.

    A stream need not carry it (neuron-monitor's config decides): until the stream has given it, and
    whenever its latest report does not, the group has nothing to say, not even an error; its sample
    is then empty (`absent_when_empty`: the producer leaves it out, health included), so the reports
    have no such section rather than one that only says "not there".
    """

    absent_when_empty = True

    def __init__(self, address: str, period: float, registry: BridgeRegistry) -> None:
        super().__init__(None, address, period, registry)
        self._seen = False

    def _sample_points(self, period: float) -> PointsByMetric:
        try:
            window = self._window()
        except BridgeError:
            if self._seen:
                raise
            return {}
        system = next((app for app in window.applications if app.application.system and app.present), None)
        if system is None or system.body is None:
            return {}
        self._seen = True
        if not has_data(system.body) and system.body.error:
            raise BridgeError(system.body.error)
        points: dict[str, list[Point]] = {spec.name: [] for spec in self.instruments}
        self._add_points(points, system, {})
        return points


class BridgeVcpuUsage(BridgeSystemGroup):
    report_key = VCPU_USAGE
    instruments = SECTION_INSTRUMENTS[VCPU_USAGE]

    def _add_points(self, points: dict[str, list[Point]], app: AppWindow, attributes: Attrs) -> None:
        usage = app.system_vcpu
        if usage is None:
            return
        utilization = points[CPU_UTILIZATION.name]
        for cpu in sorted(usage.per_cpu):
            for mode, share in usage.per_cpu[cpu].items():
                utilization.append(
                    ({CPU_LOGICAL_NUMBER: cpu, CPU_MODE: SEMCONV_CPU_MODE[mode]}, share / 100.0)
                )
        points[CPU_AVERAGE_UTILIZATION.name] = [
            ({CPU_MODE: SEMCONV_CPU_MODE[mode]}, share / 100.0) for mode, share in usage.average.items()
        ]
        if usage.context_switches is not None:
            points[CONTEXT_SWITCHES.name].append(({}, usage.context_switches))
        points[CPU_COUNT.name].append(({}, len(usage.per_cpu)))


class BridgeMemoryInfo(BridgeSystemGroup):
    report_key = MEMORY_INFO
    instruments = SECTION_INSTRUMENTS[MEMORY_INFO]

    def _add_points(self, points: dict[str, list[Point]], app: AppWindow, attributes: Attrs) -> None:
        memory: MemoryInfo = app.body
        if memory.memory_total_bytes is not None:
            points[MEMORY_LIMIT.name].append(({}, memory.memory_total_bytes))
        if memory.memory_used_bytes is not None:
            points[MEMORY_USAGE.name].append(({MEMORY_STATE: "used"}, memory.memory_used_bytes))
        if memory.swap_used_bytes is not None:
            points[PAGING_USAGE.name].append(({PAGING_STATE: "used"}, memory.swap_used_bytes))
        if memory.swap_total_bytes is not None:
            free = memory.swap_total_bytes - (memory.swap_used_bytes or 0)
            points[PAGING_USAGE.name].append(({PAGING_STATE: "free"}, free))


# The stream's system groups a bridge can pass through, by report key.
STREAM_SYSTEM_GROUP_TYPES: dict[str, type[BridgeSystemGroup]] = {
    cls.report_key: cls for cls in (BridgeVcpuUsage, BridgeMemoryInfo)
}
