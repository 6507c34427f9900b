"""Parse the JSON lines AWS's neuron-monitor writes, in its 1.x and 2.x formats.

Every line neuron-monitor prints is one complete report. This module turns one line into a
`MonitorReport` (`neuron_monitor_types`): a neutral, typed picture of what the line says, the same
for both formats.

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
rather than failing the line (`neuron_monitor_values` says which values are malformed), and a
dropped value reads as absent. Instance facts other than the guide's fields are left out.
`ReportParser.feed` counts and logs bad lines and never raises, whatever the line holds.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

import orjson

from otel_neuron.semconv import CPU_MODES, ECC_KINDS_SYSFS, INSTANCE_RESOURCE_ATTRIBUTES
from otel_neuron.sources.neuron_monitor_types import (
    CoreCounters,
    DeviceEcc,
    ExecutionStats,
    HardwareInfo,
    HwCounters,
    LoadedModel,
    MemoryInfo,
    MemoryUsed,
    MonitorReport,
    NeuroncoreCounters,
    RuntimeReport,
    RuntimeVcpu,
    SubgraphInfo,
    SystemVcpu,
)
from otel_neuron.sources.neuron_monitor_values import (
    MAX_DEVICES,
    MAX_NAME,
    MAX_PERCENT,
    as_amount,
    as_count,
    as_index,
    as_integer,
    as_message,
    as_object,
    as_optional_text,
    as_percent,
    as_text,
    counts_of,
    index_of_key,
    memory_of,
    one_line,
    percentiles_of,
    period_of,
)

_logger = logging.getLogger(__name__)


class ReportParseError(ValueError):
    """The line is not a neuron-monitor report (not JSON, truncated, or not a report object)."""


def parse_neuroncore_counters(group: Mapping[str, Any]) -> NeuroncoreCounters:
    cores: dict[int, CoreCounters] = {}
    for key, value in as_object(group.get("neuroncores_in_use")).items():
        index = index_of_key(key)
        body = as_object(value)
        if index is None or not body:
            continue
        models = body.get("loaded_models")
        cores[index] = CoreCounters(
            utilization=as_percent(body.get("neuroncore_utilization")),
            loaded_models=tuple(m for m in models if isinstance(m, str)) if isinstance(models, list) else (),
            flops=as_amount(body.get("flops")),
            effective_flops=as_amount(body.get("effective_flops")),
            physical=_physical(body.get("v3d")),
        )
    return NeuroncoreCounters(period_of(group), as_message(group.get("error")), cores)


def _physical(value: Any) -> dict[str, float]:
    """v3d: {"nc_v3.0": {"neuroncore_utilization": 21.01}, ...} as {"nc_v3.0": 21.01, ...}."""
    physical = {}
    for name, body in as_object(value).items():
        utilization = as_percent(as_object(body).get("neuroncore_utilization"))
        if utilization is not None and isinstance(name, str) and 0 < len(name) <= MAX_NAME:
            physical[name] = utilization
    return physical


def parse_execution_stats(group: Mapping[str, Any]) -> ExecutionStats:
    summary = group.get("execution_summary", group.get("inference_summary"))
    latency = as_object(group.get("latency_stats"))
    return ExecutionStats(
        period=period_of(group),
        error=as_message(group.get("error")),
        errors=counts_of(as_object(group.get("error_summary"))),
        outcomes=counts_of(as_object(summary)),
        total_latency=percentiles_of(latency.get("total_latency")),
        device_latency=percentiles_of(latency.get("device_latency")),
    )


def _breakdown(value: Any) -> dict[str, int]:
    return counts_of(as_object(value))


def _loaded_model(value: Any) -> LoadedModel | None:
    body = as_object(value)
    if not body:
        return None
    subgraphs = []
    for name, sub in as_object(body.get("subgraphs")).items():
        sub_body = as_object(sub)
        memory = as_object(sub_body.get("memory_used_bytes"))
        breakdown = as_object(memory.get("usage_breakdown"))
        subgraphs.append(
            SubgraphInfo(
                name=str(name),
                memory=memory_of(memory),
                neuroncore_index=as_index(sub_body.get("neuroncore_index")),
                neuron_device_index=as_index(sub_body.get("neuron_device_index")),
                host_breakdown=_breakdown(breakdown.get("host")),
                device_breakdown=_breakdown(breakdown.get("neuron_device")),
            )
        )
    running = body.get("is_running")
    own_memory = body.get("memory_used_bytes")
    return LoadedModel(
        name=as_text(body.get("name")),
        uuid=as_text(body.get("uuid")),
        model_id=as_count(body.get("model_id")),
        is_running=running if isinstance(running, bool) else False,
        memory=memory_of(own_memory) if isinstance(own_memory, dict) else None,
        subgraphs=tuple(subgraphs),
    )


def parse_memory_used(group: Mapping[str, Any]) -> MemoryUsed:
    used = as_object(group.get("neuron_runtime_used_bytes"))
    breakdown = as_object(used.get("usage_breakdown"))
    per_core: dict[int, dict[str, int]] = {}
    for key, value in as_object(breakdown.get("neuroncore_memory_usage")).items():
        index = index_of_key(key)
        if index is not None:
            per_core[index] = _breakdown(value)
    models = group.get("loaded_models")
    loaded = [_loaded_model(model) for model in models] if isinstance(models, list) else []
    return MemoryUsed(
        period=period_of(group),
        error=as_message(group.get("error")),
        runtime=memory_of(used),
        host_breakdown=_breakdown(breakdown.get("host")),
        core_breakdown=per_core,
        loaded_models=tuple(model for model in loaded if model is not None),
    )


def parse_hw_counters(group: Mapping[str, Any]) -> HwCounters:
    devices = []
    entries = group.get("neuron_devices")
    for entry in entries if isinstance(entries, list) else []:
        body = as_object(entry)
        index = as_index(body.get("neuron_device_index"))
        if index is None:
            continue
        devices.append(DeviceEcc(index, counts_of(body, ECC_KINDS_SYSFS)))
    return HwCounters(period_of(group), as_message(group.get("error")), tuple(devices))


def parse_runtime_vcpu(group: Mapping[str, Any]) -> RuntimeVcpu:
    usage = as_object(group.get("vcpu_usage"))
    return RuntimeVcpu(
        period_of(group),
        as_message(group.get("error")),
        as_percent(usage.get("user")),
        as_percent(usage.get("system")),
    )


def parse_system_vcpu(group: Mapping[str, Any]) -> SystemVcpu:
    per_cpu: dict[int, dict[str, float]] = {}
    for key, value in as_object(group.get("usage_data")).items():
        index = index_of_key(key)
        if index is not None:
            per_cpu[index] = _modes(value)
    return SystemVcpu(
        period=period_of(group),
        error=as_message(group.get("error")),
        average=_modes(group.get("average_usage")),
        per_cpu=per_cpu,
        context_switches=as_count(group.get("context_switch_count")),
    )


def _modes(value: Any) -> dict[str, float]:
    """{mode: percent} of the guide's vCPU modes the object gives."""
    body = as_object(value)
    modes = {}
    for mode in CPU_MODES:
        share = body.get(mode)
        # A float in range, the common case, without a call (128 vCPUs x 7 modes a report).
        if type(share) is not float or not 0.0 <= share <= MAX_PERCENT:
            share = as_percent(share)
            if share is None:
                continue
        modes[mode] = share
    return modes


def parse_memory_info(group: Mapping[str, Any]) -> MemoryInfo:
    return MemoryInfo(
        period=period_of(group),
        error=as_message(group.get("error")),
        memory_total_bytes=as_count(group.get("memory_total_bytes")),
        memory_used_bytes=as_count(group.get("memory_used_bytes")),
        swap_total_bytes=as_count(group.get("swap_total_bytes")),
        swap_used_bytes=as_count(group.get("swap_used_bytes")),
    )


def parse_hardware_info(value: Any) -> HardwareInfo | None:
    body = as_object(value)
    if not body:
        return None
    return HardwareInfo(
        neuron_device_type=as_optional_text(body.get("neuron_device_type")),
        neuroncore_version=as_optional_text(body.get("neuroncore_version")),
        neuron_device_count=as_integer(body.get("neuron_device_count"), MAX_DEVICES),
        neuron_device_memory_size=as_count(body.get("neuron_device_memory_size")),
        neuroncore_per_device_count=as_index(body.get("neuroncore_per_device_count")),
        error=as_message(body.get("error")),
        neuron_device_version=as_optional_text(body.get("neuron_device_version")),
        logical_neuroncore_config=as_index(body.get("logical_neuroncore_config")),
    )


def parse_instance(value: Any) -> dict[str, str]:
    """The guide's instance fields the object gives, in its order, each one line."""
    body = as_object(value)
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
    report = as_object(entry.get("report"))
    cores = _group(report, "neuroncore_counters")
    execution = _group(report, "execution_stats", "inference_stats")
    memory = _group(report, "memory_used")
    hw = _group(report, "hw_counters", "neuron_hw_counters")
    vcpu = _group(report, "neuron_runtime_vcpu_usage", "vcpu_usage")
    return RuntimeReport(
        index=as_index(entry.get("neuron_runtime_index")),
        pid=as_count(entry.get("pid")),
        tag=as_text(entry.get("neuron_runtime_tag")),
        address=as_text(entry.get("address")),
        error=as_message(entry.get("error")),
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
    system = as_object(document.get("system_data"))
    system_hw = _group(system, "neuron_hw_counters")
    system_vcpu = _group(system, "vcpu_usage")
    system_memory = _group(system, "memory_info")
    is_v2 = (
        "instance_info" in document
        or "neuron_hardware_info" in document
        or system_hw is not None
        or any(runtime.pid is not None or runtime.tag for runtime in runtimes)
        or any(
            isinstance(entry, dict) and "execution_stats" in as_object(entry.get("report"))
            for entry in (entries if isinstance(entries, list) else [])
        )
    )
    instance = as_object(document.get("instance_info", document.get("instance_data")))
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
