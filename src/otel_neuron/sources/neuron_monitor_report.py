"""Parse the JSON lines AWS's neuron-monitor writes, in its 1.x and 2.x formats.

Every line neuron-monitor prints is one complete report. This module turns one line into a
`MonitorReport`: a neutral, typed picture of what the line says, the same for both formats.

- 1.x (the user guide): runtime entries are `{neuron_runtime_index, error, report}`; runtime
  groups are `neuroncore_counters`, `inference_stats`, `memory_used`, `hw_counters`,
  `neuron_runtime_vcpu_usage`; the root holds `instance_data`.
- 2.x: runtime entries carry `pid` and `neuron_runtime_tag`; `inference_stats` became
  `execution_stats` (`execution_summary` for `inference_summary`, `model` errors added);
  `memory_used.neuron_runtime_used_bytes.usage_breakdown` splits host memory by category and
  device memory per NeuronCore by category, and each loaded model's subgraph has its own
  `usage_breakdown`; `neuroncore_counters` gained `flops` or `effective_flops` and, on Trn2, `v3d`
  (each physical NeuronCore's utilization); ECC counts moved to the system group
  `neuron_hw_counters` (with `sram_ecc_corrected`); the root holds `instance_info` and
  `neuron_hardware_info`.

Both formats' `system_data` may hold `vcpu_usage` (each vCPU's and the average percentage per
mode, context switches) and `memory_info` (host memory and swap).

Every key upstream gave is kept as given (which error types, outcomes, percentiles, memory
categories): a field upstream left out stays out (None or absent), so a report can be written
back as it came.

The parser is tolerant: a line that is not a JSON object, or an object with none of the
report's sections, raises `ReportParseError`; inside a report, a malformed value is dropped
rather than failing the line. A value is malformed when it has the wrong type (a boolean or a
string where a number goes, a group that is not an object) or is out of range for its field:

- counts, amounts and ids: integers (or integral floats) from 0 to MAX_INTEGER;
- indexes (runtime, device, NeuronCore, the keys of `neuroncores_in_use`): 0 to MAX_INDEX;
- seconds (periods, latency percentiles): finite, 0 to MAX_SECONDS;
- percentages (utilization, vCPU usage): finite, 0 to 100; other numbers (flops): finite, >= 0
  (an integer stays an integer, as upstream wrote it);
- a device count: 0 to MAX_DEVICES;
- NaN, infinities (JSON's non-standard tokens) and integers past the float range are in no range.

A dropped value reads as absent. Error messages and instance facts are cut to one line of
MAX_MESSAGE characters; instance facts other than the guide's fields are left out.
`ReportParser.feed` counts and logs bad lines and never raises, whatever the line holds.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from otel_neuron.semconv import CPU_MODES, ECC_KINDS_SYSFS, INSTANCE_RESOURCE_ATTRIBUTES, PERCENTILES

_logger = logging.getLogger(__name__)


# Past these a value is not one neuron-monitor could mean (see the module docstring).
MAX_INTEGER = 2**53 - 1  # the largest integer every JSON reader keeps exactly
MAX_INDEX = 2**31 - 1  # a device or NeuronCore index is a 32-bit integer in the runtime's APIs
MAX_SECONDS = 1e9  # about 32 years: no period or latency is longer
MAX_PERCENT = 100.0
MAX_MESSAGE = 300
MAX_DEVICES = 4096  # far more Neuron devices than any host has
MAX_NAME = 64  # a v3d physical NeuronCore's name ("nc_v3.0")


class ReportParseError(ValueError):
    """The line is not a neuron-monitor report (not JSON, truncated, or not a report object)."""


# --------------------------------------------------------------------------- the typed picture


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


# --------------------------------------------------------------------------- field readers


def _number(value: Any) -> float | None:
    """A finite number; booleans, NaN, infinities and integers past the float range read as absent."""
    if type(value) is float:  # most numbers of a report: one check rather than three
        return value if math.isfinite(value) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer of hundreds of digits
        return None
    return number if math.isfinite(number) else None


def _bounded(value: Any, high: float) -> float | None:
    number = _number(value)
    return number if number is not None and 0 <= number <= high else None


def _integer(value: Any, high: int) -> int | None:
    """An integer from 0 to `high`; floats with an integral value are accepted."""
    if type(value) is int or (isinstance(value, int) and not isinstance(value, bool)):
        return value if 0 <= value <= high else None
    number = _bounded(value, high)
    if number is None or number != int(number):
        return None
    return int(number)


def _count(value: Any) -> int | None:
    """A count, an amount of bytes or an id."""
    return _integer(value, MAX_INTEGER)


def _index(value: Any) -> int | None:
    return _integer(value, MAX_INDEX)


def _seconds(value: Any) -> float | None:
    return _bounded(value, MAX_SECONDS)


def _percent(value: Any) -> float | None:
    return _bounded(value, MAX_PERCENT)


def _amount(value: Any) -> float | None:
    """A non-negative finite number (flops); an integer within MAX_INTEGER stays one, so it is
    written back as upstream wrote it."""
    if type(value) is int and 0 <= value <= MAX_INTEGER:
        return value
    return _bounded(value, math.inf)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _optional_text(value: Any) -> str | None:
    return one_line(value) if isinstance(value, str) else None


def one_line(text: str, limit: int = MAX_MESSAGE) -> str:
    """The first line of `text`, cut to `limit` characters: fit to be a group's error."""
    stripped = text.strip()
    line = stripped.splitlines()[0] if stripped else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _message(value: Any) -> str:
    """An upstream error string, as one line."""
    return one_line(_text(value))


def _object(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _period(group: Mapping[str, Any]) -> float:
    period = _seconds(group.get("period"))
    return period if period is not None else 0.0


def _index_key(key: Any) -> int | None:
    """The index a key such as "3" names: ASCII digits only (int() would also take " 3", "+3", "٣")."""
    if not isinstance(key, str) or not key.isascii() or not key.isdigit() or len(key) > 10:
        return None
    return _index(int(key))


def _counts(group: Mapping[str, Any], names: tuple[str, ...] | None = None) -> dict[str, int]:
    result: dict[str, int] = {}
    for name, value in group.items():
        if names is not None and name not in names:
            continue
        if type(value) is int and 0 <= value <= MAX_INTEGER:  # the common case, without a call
            result[name] = value
            continue
        count = _count(value)
        if count is not None and isinstance(name, str):
            result[name] = count
    return result


def _memory(value: Any) -> Memory:
    body = _object(value)
    return Memory(_count(body.get("host")) or 0, _count(body.get("neuron_device")) or 0)


def _percentiles(value: Any) -> Percentiles | None:
    body = _object(value)
    values = {}
    for name in PERCENTILES:
        seconds = _seconds(body.get(name))
        if seconds is not None:
            values[name] = seconds
    return Percentiles(values) if values else None


# --------------------------------------------------------------------------- groups


def parse_neuroncore_counters(group: Mapping[str, Any]) -> NeuroncoreCounters:
    cores: dict[int, CoreCounters] = {}
    for key, value in _object(group.get("neuroncores_in_use")).items():
        index = _index_key(key)
        body = _object(value)
        if index is None or not body:
            continue
        models = body.get("loaded_models")
        cores[index] = CoreCounters(
            utilization=_percent(body.get("neuroncore_utilization")),
            loaded_models=tuple(m for m in models if isinstance(m, str)) if isinstance(models, list) else (),
            flops=_amount(body.get("flops")),
            effective_flops=_amount(body.get("effective_flops")),
            physical=_physical(body.get("v3d")),
        )
    return NeuroncoreCounters(_period(group), _message(group.get("error")), cores)


def _physical(value: Any) -> dict[str, float]:
    """v3d: {"nc_v3.0": {"neuroncore_utilization": 21.01}, ...} as {"nc_v3.0": 21.01, ...}."""
    physical = {}
    for name, body in _object(value).items():
        utilization = _percent(_object(body).get("neuroncore_utilization"))
        if utilization is not None and isinstance(name, str) and 0 < len(name) <= MAX_NAME:
            physical[name] = utilization
    return physical


def parse_execution_stats(group: Mapping[str, Any]) -> ExecutionStats:
    summary = group.get("execution_summary", group.get("inference_summary"))
    latency = _object(group.get("latency_stats"))
    return ExecutionStats(
        period=_period(group),
        error=_message(group.get("error")),
        errors=_counts(_object(group.get("error_summary"))),
        outcomes=_counts(_object(summary)),
        total_latency=_percentiles(latency.get("total_latency")),
        device_latency=_percentiles(latency.get("device_latency")),
    )


def _breakdown(value: Any) -> dict[str, int]:
    return _counts(_object(value))


def _loaded_model(value: Any) -> LoadedModel | None:
    body = _object(value)
    if not body:
        return None
    subgraphs = []
    for name, sub in _object(body.get("subgraphs")).items():
        sub_body = _object(sub)
        memory = _object(sub_body.get("memory_used_bytes"))
        breakdown = _object(memory.get("usage_breakdown"))
        subgraphs.append(
            SubgraphInfo(
                name=str(name),
                memory=_memory(memory),
                neuroncore_index=_index(sub_body.get("neuroncore_index")),
                neuron_device_index=_index(sub_body.get("neuron_device_index")),
                host_breakdown=_breakdown(breakdown.get("host")),
                device_breakdown=_breakdown(breakdown.get("neuron_device")),
            )
        )
    running = body.get("is_running")
    own_memory = body.get("memory_used_bytes")
    return LoadedModel(
        name=_text(body.get("name")),
        uuid=_text(body.get("uuid")),
        model_id=_count(body.get("model_id")),
        is_running=running if isinstance(running, bool) else False,
        memory=_memory(own_memory) if isinstance(own_memory, dict) else None,
        subgraphs=tuple(subgraphs),
    )


def parse_memory_used(group: Mapping[str, Any]) -> MemoryUsed:
    used = _object(group.get("neuron_runtime_used_bytes"))
    breakdown = _object(used.get("usage_breakdown"))
    per_core: dict[int, dict[str, int]] = {}
    for key, value in _object(breakdown.get("neuroncore_memory_usage")).items():
        index = _index_key(key)
        if index is not None:
            per_core[index] = _breakdown(value)
    models = group.get("loaded_models")
    loaded = [_loaded_model(model) for model in models] if isinstance(models, list) else []
    return MemoryUsed(
        period=_period(group),
        error=_message(group.get("error")),
        runtime=_memory(used),
        host_breakdown=_breakdown(breakdown.get("host")),
        core_breakdown=per_core,
        loaded_models=tuple(model for model in loaded if model is not None),
    )


def parse_hw_counters(group: Mapping[str, Any]) -> HwCounters:
    devices = []
    entries = group.get("neuron_devices")
    for entry in entries if isinstance(entries, list) else []:
        body = _object(entry)
        index = _index(body.get("neuron_device_index"))
        if index is None:
            continue
        devices.append(DeviceEcc(index, _counts(body, ECC_KINDS_SYSFS)))
    return HwCounters(_period(group), _message(group.get("error")), tuple(devices))


def parse_runtime_vcpu(group: Mapping[str, Any]) -> RuntimeVcpu:
    usage = _object(group.get("vcpu_usage"))
    return RuntimeVcpu(
        _period(group),
        _message(group.get("error")),
        _percent(usage.get("user")),
        _percent(usage.get("system")),
    )


def parse_system_vcpu(group: Mapping[str, Any]) -> SystemVcpu:
    per_cpu: dict[int, dict[str, float]] = {}
    for key, value in _object(group.get("usage_data")).items():
        index = _index_key(key)
        if index is not None:
            per_cpu[index] = _modes(value)
    return SystemVcpu(
        period=_period(group),
        error=_message(group.get("error")),
        average=_modes(group.get("average_usage")),
        per_cpu=per_cpu,
        context_switches=_count(group.get("context_switch_count")),
    )


def _modes(value: Any) -> dict[str, float]:
    """{mode: percent} of the guide's vCPU modes the object gives."""
    body = _object(value)
    modes = {}
    for mode in CPU_MODES:
        share = body.get(mode)
        # A float in range, the common case, without a call (128 vCPUs x 7 modes a report).
        if type(share) is not float or not 0.0 <= share <= MAX_PERCENT:
            share = _percent(share)
            if share is None:
                continue
        modes[mode] = share
    return modes


def parse_memory_info(group: Mapping[str, Any]) -> MemoryInfo:
    return MemoryInfo(
        period=_period(group),
        error=_message(group.get("error")),
        memory_total_bytes=_count(group.get("memory_total_bytes")),
        memory_used_bytes=_count(group.get("memory_used_bytes")),
        swap_total_bytes=_count(group.get("swap_total_bytes")),
        swap_used_bytes=_count(group.get("swap_used_bytes")),
    )


def parse_hardware_info(value: Any) -> HardwareInfo | None:
    body = _object(value)
    if not body:
        return None
    return HardwareInfo(
        neuron_device_type=_optional_text(body.get("neuron_device_type")),
        neuroncore_version=_optional_text(body.get("neuroncore_version")),
        neuron_device_count=_integer(body.get("neuron_device_count"), MAX_DEVICES),
        neuron_device_memory_size=_count(body.get("neuron_device_memory_size")),
        neuroncore_per_device_count=_index(body.get("neuroncore_per_device_count")),
        error=_message(body.get("error")),
        neuron_device_version=_optional_text(body.get("neuron_device_version")),
        logical_neuroncore_config=_index(body.get("logical_neuroncore_config")),
    )


def parse_instance(value: Any) -> dict[str, str]:
    """The guide's instance fields the object gives, in its order, each one line."""
    body = _object(value)
    return {
        key: one_line(body[key]) for key in INSTANCE_RESOURCE_ATTRIBUTES if isinstance(body.get(key), str)
    }


def _group(report: Mapping[str, Any], *names: str) -> Mapping[str, Any] | None:
    for name in names:
        value = report.get(name)
        if isinstance(value, dict):
            return value
    return None


def parse_runtime_entry(entry: Mapping[str, Any]) -> RuntimeReport:
    report = _object(entry.get("report"))
    cores = _group(report, "neuroncore_counters")
    execution = _group(report, "execution_stats", "inference_stats")
    memory = _group(report, "memory_used")
    hw = _group(report, "hw_counters", "neuron_hw_counters")
    vcpu = _group(report, "neuron_runtime_vcpu_usage", "vcpu_usage")
    return RuntimeReport(
        index=_index(entry.get("neuron_runtime_index")),
        pid=_count(entry.get("pid")),
        tag=_text(entry.get("neuron_runtime_tag")),
        address=_text(entry.get("address")),
        error=_message(entry.get("error")),
        neuroncore_counters=parse_neuroncore_counters(cores) if cores is not None else None,
        execution_stats=parse_execution_stats(execution) if execution is not None else None,
        memory_used=parse_memory_used(memory) if memory is not None else None,
        hw_counters=parse_hw_counters(hw) if hw is not None else None,
        vcpu_usage=parse_runtime_vcpu(vcpu) if vcpu is not None else None,
    )


_SECTIONS = (
    "neuron_runtime_data",
    "system_data",
    "instance_data",
    "instance_info",
    "neuron_hardware_info",
)


def parse_report(document: Any) -> MonitorReport:
    """The typed picture of one decoded report; `ReportParseError` if it is not a report."""
    if not isinstance(document, dict):
        raise ReportParseError(f"not a JSON object but {type(document).__name__}")
    if not any(section in document for section in _SECTIONS):
        raise ReportParseError("no neuron-monitor report section (neuron_runtime_data, system_data, ...)")
    entries = document.get("neuron_runtime_data")
    runtimes = tuple(
        parse_runtime_entry(entry)
        for entry in (entries if isinstance(entries, list) else [])
        if isinstance(entry, dict)
    )
    system = _object(document.get("system_data"))
    system_hw = _group(system, "neuron_hw_counters")
    system_vcpu = _group(system, "vcpu_usage")
    system_memory = _group(system, "memory_info")
    is_v2 = (
        "instance_info" in document
        or "neuron_hardware_info" in document
        or system_hw is not None
        or any(runtime.pid is not None or runtime.tag for runtime in runtimes)
        or any(
            isinstance(entry, dict) and "execution_stats" in _object(entry.get("report"))
            for entry in (entries if isinstance(entries, list) else [])
        )
    )
    instance = _object(document.get("instance_info", document.get("instance_data")))
    return MonitorReport(
        format_version=2 if is_v2 else 1,
        runtimes=runtimes,
        hw_counters=parse_hw_counters(system_hw) if system_hw is not None else None,
        vcpu_usage=parse_system_vcpu(system_vcpu) if system_vcpu is not None else None,
        memory_info=parse_memory_info(system_memory) if system_memory is not None else None,
        instance=parse_instance(instance),
        hardware=parse_hardware_info(document.get("neuron_hardware_info")),
    )


def parse_report_line(line: str | bytes) -> MonitorReport:
    """Decode and parse one line; `ReportParseError` for anything that is not a whole report."""
    if isinstance(line, bytes):
        try:
            line = line.decode("utf-8")
        except UnicodeDecodeError as error:
            raise ReportParseError(f"not UTF-8: {error}") from None
    text = line.strip()
    if not text:
        raise ReportParseError("empty line")
    try:
        document = orjson.loads(text)
    except orjson.JSONDecodeError:
        # What orjson refuses may still be a line the tolerant reading keeps: NaN and Infinity
        # tokens, integers past 64 bits (each read as absent), deep nesting, lone surrogates.
        try:
            document = json.loads(text)
        except (ValueError, RecursionError) as error:
            raise ReportParseError(f"not JSON ({error})") from None
    return parse_report(document)


class ReportParser:
    """Parses a stream line by line, counting and logging (not raising on) bad lines.

    Whatever a line holds, `feed` returns its report or None: a line that fails in a way the
    parser did not foresee is skipped like a malformed one, so one line never stops a reader.
    """

    def __init__(self, source: str = "neuron-monitor") -> None:
        self.source = source
        self.lines = 0
        self.reports = 0
        self.malformed = 0
        self.last_problem = ""

    def feed(self, line: str | bytes) -> MonitorReport | None:
        if not line.strip():
            return None  # blank lines between reports are harmless
        self.lines += 1
        try:
            report = parse_report_line(line)
        except ReportParseError as error:
            self._skip(str(error))
            return None
        except Exception as error:  # noqa: BLE001 - one line never stops the reader
            self._skip(f"could not be read: {type(error).__name__}: {error}")
            return None
        self.reports += 1
        return report

    def unusable(self, problem: str) -> None:
        """The last report `feed` returned could not be used after all: count its line as skipped."""
        self.reports -= 1
        self._skip(problem)

    def _skip(self, problem: str) -> None:
        self.malformed += 1
        self.last_problem = f"line {self.lines}: {one_line(problem)}"
        _logger.warning(
            "%s: skipped malformed report line %d (%s); %d skipped so far",
            self.source,
            self.lines,
            one_line(problem),
            self.malformed,
        )
