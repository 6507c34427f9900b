"""The typed picture of one neuron-monitor report, the same for its 1.x and 2.x formats.

`neuron_monitor_report` builds it from a line; a field upstream left out stays out (None, empty or
absent), so a report can be written back as it came.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class CoreCounters:
    utilization: float | None
    loaded_models: tuple[str, ...] = ()
    flops: float | None = None
    effective_flops: float | None = None
    # Trn2's v3d: the utilization (percent) of each physical NeuronCore of this logical one.
    physical: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class NeuroncoreCounters:
    period: float
    error: str
    cores: Mapping[int, CoreCounters]


@dataclass(frozen=True)
class Percentiles:
    """Latency percentiles in seconds, keyed p0 .. p100 (only those the report gave)."""

    values: Mapping[str, float]


@dataclass(frozen=True)
class ExecutionStats:
    """1.x `inference_stats` or 2.x `execution_stats`: counts cover the upstream period."""

    period: float
    error: str
    errors: Mapping[str, int]
    outcomes: Mapping[str, int]
    total_latency: Percentiles | None
    device_latency: Percentiles | None


@dataclass(frozen=True)
class Memory:
    host: int
    neuron_device: int


@dataclass(frozen=True)
class SubgraphInfo:
    name: str
    memory: Memory
    neuroncore_index: int | None
    neuron_device_index: int | None
    # 2.x usage_breakdown: bytes by category of the subgraph's host and device memory.
    host_breakdown: Mapping[str, int] = field(default_factory=dict)
    device_breakdown: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class LoadedModel:
    name: str
    uuid: str
    model_id: int | None
    is_running: bool
    memory: Memory | None  # 1.x models' own memory_used_bytes (2.x gives it per subgraph only)
    subgraphs: tuple[SubgraphInfo, ...]


@dataclass(frozen=True)
class MemoryUsed:
    period: float
    error: str
    runtime: Memory
    host_breakdown: Mapping[str, int] = field(default_factory=dict)
    core_breakdown: Mapping[int, Mapping[str, int]] = field(default_factory=dict)
    loaded_models: tuple[LoadedModel, ...] = ()


@dataclass(frozen=True)
class DeviceEcc:
    neuron_device_index: int
    counters: Mapping[str, int]  # the ECC kinds (semconv.ECC_KINDS_SYSFS) present in the report


@dataclass(frozen=True)
class HwCounters:
    period: float
    error: str
    devices: tuple[DeviceEcc, ...]


@dataclass(frozen=True)
class RuntimeVcpu:
    period: float
    error: str
    user: float | None
    system: float | None


@dataclass(frozen=True)
class SystemVcpu:
    """system_data.vcpu_usage: percentages by mode (the guide's modes the report gave)."""

    period: float
    error: str
    average: Mapping[str, float]
    per_cpu: Mapping[int, Mapping[str, float]]
    context_switches: int | None


@dataclass(frozen=True)
class MemoryInfo:
    """system_data.memory_info, in bytes (None: not given)."""

    period: float
    error: str
    memory_total_bytes: int | None
    memory_used_bytes: int | None
    swap_total_bytes: int | None
    swap_used_bytes: int | None


@dataclass(frozen=True)
class RuntimeReport:
    """One entry of `neuron_runtime_data`."""

    index: int | None  # 1.x neuron_runtime_index (2.x entries have none)
    pid: int | None
    tag: str
    address: str
    error: str
    neuroncore_counters: NeuroncoreCounters | None = None
    execution_stats: ExecutionStats | None = None
    memory_used: MemoryUsed | None = None
    hw_counters: HwCounters | None = None
    vcpu_usage: RuntimeVcpu | None = None

    @property
    def key(self) -> str:
        """A stable identity for this runtime across lines: the pid (2.x) or the index (1.x)."""
        if self.pid is not None:
            return f"pid:{self.pid}"
        if self.index is not None:
            return f"index:{self.index}"
        return f"tag:{self.tag}"


@dataclass(frozen=True)
class HardwareInfo:
    """The root neuron_hardware_info; None for a field upstream did not give (it varies by version)."""

    neuron_device_type: str | None
    neuroncore_version: str | None
    neuron_device_count: int | None
    neuron_device_memory_size: int | None
    neuroncore_per_device_count: int | None
    error: str
    neuron_device_version: str | None = None
    logical_neuroncore_config: int | None = None


@dataclass(frozen=True)
class MonitorReport:
    format_version: int  # 1 or 2, as recognised from the line's shape
    runtimes: tuple[RuntimeReport, ...]
    hw_counters: HwCounters | None  # 2.x system_data.neuron_hw_counters
    vcpu_usage: SystemVcpu | None  # system_data.vcpu_usage
    memory_info: MemoryInfo | None  # system_data.memory_info
    instance: Mapping[str, str]  # instance_data (1.x) or instance_info (2.x): the fields it gave
    hardware: HardwareInfo | None
