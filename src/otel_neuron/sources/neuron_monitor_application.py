"""One Neuron application's numbers over one group's period, folded from neuron-monitor's reports.

An application is an entry of a report's `neuron_runtime_data` (a Neuron process), known by its
pid and `neuron_runtime_tag`; a 1.x entry, which has neither, by its `neuron_runtime_index` as
tag. `AppState` folds each fresh group body of it and `drain` hands the period over as an
`AppWindow`:

- counts (executions by outcome, errors by type, ECC events) are summed over the fresh bodies;
- rates (utilization, FLOPS, vCPU usage) are time-weighted over the fresh upstream periods; one
  fresh body is passed on exactly, none leaves the latest values;
- amounts (memory, hardware facts, the stream's memory_info) are the latest body's;
- the stream's vcpu_usage: each vCPU's and the average percentages time-weighted like the rates,
  context switches summed;
- latency percentiles: one fresh report's exactly; of several, p0 is the least p0 and p100 the
  greatest p100 (exact), every other percentile upstream gave is estimated from the merged
  synthetic histogram (`percentile_histogram`), which also goes out as the latency histogram.

Every key upstream gave (error types, outcomes, ECC kinds) is kept; a period without a fresh body
gives the latest body's keys with 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from otel_neuron.groups.base import AttributeValue, HistogramDelta
from otel_neuron.histogram import merge_histograms, percentile
from otel_neuron.semconv import EXECUTED_OUTCOMES, PERCENTILE_FRACTIONS, PROCESS_PID, RUNTIME_TAG
from otel_neuron.sources.neuron_monitor_types import (
    CoreCounters,
    ExecutionStats,
    HardwareInfo,
    HwCounters,
    MemoryInfo,
    MemoryUsed,
    NeuroncoreCounters,
    Percentiles,
    RuntimeReport,
    RuntimeVcpu,
    SystemVcpu,
)
from otel_neuron.sources.percentile_histogram import histogram_from_percentiles


@dataclass(frozen=True)
class Application:
    """A Neuron application as neuron-monitor names it (or `SYSTEM`, the stream's system groups)."""

    pid: int | None
    tag: str
    system: bool = False

    def attributes(self) -> dict[str, AttributeValue]:
        """`process.pid` and `neuron.runtime.tag`, those known (none for SYSTEM)."""
        attributes: dict[str, AttributeValue] = {}
        if self.pid is not None:
            attributes[PROCESS_PID] = self.pid
        if self.tag:
            attributes[RUNTIME_TAG] = self.tag
        return attributes


SYSTEM = Application(None, "", system=True)


def application_of(runtime: RuntimeReport) -> Application:
    """The application of a runtime entry. Without a tag neuron-monitor tags a process by its pid."""
    if runtime.pid is not None:
        return Application(runtime.pid, runtime.tag or str(runtime.pid))
    if runtime.tag:
        return Application(None, runtime.tag)
    return Application(None, str(runtime.index) if runtime.index is not None else "")


def has_data(body: Any) -> bool:
    """Whether a group body holds any number (an upstream error can come with none)."""
    if isinstance(body, NeuroncoreCounters):
        return bool(body.cores)
    if isinstance(body, ExecutionStats):
        return bool(body.outcomes or body.errors or body.total_latency or body.device_latency)
    if isinstance(body, MemoryUsed):
        return bool(body.runtime.host or body.runtime.neuron_device or body.loaded_models)
    if isinstance(body, HwCounters):
        return bool(body.devices)
    if isinstance(body, RuntimeVcpu):
        return body.user is not None or body.system is not None
    if isinstance(body, HardwareInfo):
        return body.neuron_device_count is not None
    if isinstance(body, SystemVcpu):
        return bool(body.per_cpu or body.average)
    if isinstance(body, MemoryInfo):
        return body.memory_total_bytes is not None or body.memory_used_bytes is not None
    return False


Latencies = tuple[HistogramDelta | None, HistogramDelta | None]  # total, device


def latencies_of(body: Any) -> Latencies:
    """The histograms an ExecutionStats body's percentiles stand for (None, None for other bodies)."""
    if not isinstance(body, ExecutionStats):
        return (None, None)
    # Percentiles without a count still describe at least one execution.
    executed = max(sum(body.outcomes.get(name, 0) for name in EXECUTED_OUTCOMES), 1)
    return (
        histogram_from_percentiles(body.total_latency.values, executed) if body.total_latency else None,
        histogram_from_percentiles(body.device_latency.values, executed) if body.device_latency else None,
    )


@dataclass(frozen=True)
class AppWindow:
    """One application's numbers since the group's previous sample."""

    application: Application
    entry_error: str  # the entry's own upstream `error`
    body: Any  # the latest body of the group (None: the application's entry has not had it)
    fresh: int  # fresh upstream bodies folded in
    present: bool = True  # False: gone from the stream, here only for its last counts
    # neuroncore_counters: rates time-weighted over the fresh periods, else the latest body's
    cores: Mapping[int, CoreCounters] = field(default_factory=dict)
    # inference_stats: sums; latencies as merged synthetic histograms and as percentiles
    outcomes: Mapping[str, int] = field(default_factory=dict)
    errors: Mapping[str, int] = field(default_factory=dict)
    total_latency: HistogramDelta | None = None
    device_latency: HistogramDelta | None = None
    total_percentiles: Mapping[str, float] = field(default_factory=dict)
    device_percentiles: Mapping[str, float] = field(default_factory=dict)
    # hw_counters: per device, per kind, summed
    ecc: Mapping[int, Mapping[str, int]] = field(default_factory=dict)
    # neuron_runtime_vcpu_usage: time-weighted
    vcpu_user: float | None = None
    vcpu_system: float | None = None
    # the stream's system vcpu_usage over the period (None for other groups)
    system_vcpu: SystemVcpu | None = None

    @property
    def group_error(self) -> str | None:
        """The group's upstream `error` ("" when fine), None when the entry has no such group."""
        return None if self.body is None else str(getattr(self.body, "error", ""))


# --------------------------------------------------------------------------- folding


class _Mean:
    """The time-weighted mean of a rate over the fresh periods; a single value passes unchanged."""

    __slots__ = ("count", "first", "weight", "weighted")

    def __init__(self) -> None:
        self.count = 0
        self.first = 0.0
        self.weighted = 0.0
        self.weight = 0.0

    def add(self, value: float, period: float) -> None:
        weight = period if period > 0 else 1.0
        if self.count == 0:
            self.first = value
        self.count += 1
        self.weighted += value * weight
        self.weight += weight

    def value(self, latest: float | None) -> float | None:
        if self.count == 0:
            return latest
        return self.first if self.count == 1 else self.weighted / self.weight


def _mean_of(means: Mapping[Any, _Mean], key: Any, latest: float | None) -> float | None:
    mean = means.get(key)
    return mean.value(latest) if mean is not None else latest


class _Latency:
    """One latency object (total or device) over a window."""

    __slots__ = ("first", "greatest", "histogram", "least", "names", "reports")

    def __init__(self) -> None:
        self.histogram: HistogramDelta | None = None
        self.reports = 0
        self.first: Mapping[str, float] = {}
        self.names: dict[str, None] = {}  # every percentile upstream gave, first seen first
        self.least: float | None = None  # of the p0s
        self.greatest: float | None = None  # of the p100s

    def add(self, percentiles: Percentiles | None, histogram: HistogramDelta | None) -> None:
        if percentiles is None:
            return
        values = percentiles.values
        self.reports += 1
        if self.reports == 1:
            self.first = values
        self.names.update(dict.fromkeys(values))
        self.histogram = merge_histograms(self.histogram, histogram)
        if "p0" in values:
            self.least = values["p0"] if self.least is None else min(self.least, values["p0"])
        if "p100" in values:
            self.greatest = values["p100"] if self.greatest is None else max(self.greatest, values["p100"])

    def percentiles(self) -> dict[str, float]:
        if self.reports <= 1:
            return dict(self.first)
        result = {}
        for name in sorted(self.names, key=PERCENTILE_FRACTIONS.__getitem__):
            if name == "p0" and self.least is not None:
                result[name] = self.least
            elif name == "p100" and self.greatest is not None:
                result[name] = self.greatest
            elif self.histogram is not None and self.histogram.count > 0:
                result[name] = percentile(self.histogram, PERCENTILE_FRACTIONS[name] * 100.0)
        return result


def _add_counts(into: dict[str, int], counts: Mapping[str, int]) -> None:
    for name, count in counts.items():
        into[name] = into.get(name, 0) + count


def _with_zeros(latest: Mapping[str, int], sums: Mapping[str, int]) -> dict[str, int]:
    """The latest body's keys with 0, then every key summed this period."""
    return {**dict.fromkeys(latest, 0), **sums}


class AppState:
    """One application's running window (touched under the bridge lock)."""

    def __init__(self, application: Application) -> None:
        self.application = application
        self.present = True
        self.position = 0  # its place among the matching entries of the latest report
        self.entry_error = ""
        self.latest: Any = None  # the latest body of the group
        self.seen: Any = None  # the last body counted (a repeat of it is not counted again)
        self._reset()

    def _reset(self) -> None:
        self.fresh = 0
        self.utilization: dict[int, _Mean] = {}
        self.physical: dict[tuple[int, str], _Mean] = {}
        self.flops: dict[int, _Mean] = {}
        self.effective_flops: dict[int, _Mean] = {}
        self.outcomes: dict[str, int] = {}
        self.errors: dict[str, int] = {}
        self.total = _Latency()
        self.device = _Latency()
        self.ecc: dict[int, dict[str, int]] = {}
        self.user = _Mean()
        self.system = _Mean()
        self.cpu_modes: dict[tuple[int, str], _Mean] = {}  # the stream's vcpu_usage, per vCPU
        self.average_modes: dict[str, _Mean] = {}
        self.context_switches = 0

    def fold(self, body: Any, latencies: Latencies) -> None:
        self.fresh += 1
        if isinstance(body, NeuroncoreCounters):
            self._fold_cores(body)
        elif isinstance(body, ExecutionStats):
            _add_counts(self.outcomes, body.outcomes)
            _add_counts(self.errors, body.errors)
            self.total.add(body.total_latency, latencies[0])
            self.device.add(body.device_latency, latencies[1])
        elif isinstance(body, HwCounters):
            for device in body.devices:
                _add_counts(self.ecc.setdefault(device.neuron_device_index, {}), device.counters)
        elif isinstance(body, RuntimeVcpu):
            if body.user is not None:
                self.user.add(body.user, body.period)
            if body.system is not None:
                self.system.add(body.system, body.period)
        elif isinstance(body, SystemVcpu):
            self._fold_system_vcpu(body)

    def _fold_cores(self, body: NeuroncoreCounters) -> None:
        period = body.period
        for index, core in body.cores.items():
            if core.utilization is not None:
                self.utilization.setdefault(index, _Mean()).add(core.utilization, period)
            if core.flops is not None:
                self.flops.setdefault(index, _Mean()).add(core.flops, period)
            if core.effective_flops is not None:
                self.effective_flops.setdefault(index, _Mean()).add(core.effective_flops, period)
            for name, utilization in core.physical.items():
                self.physical.setdefault((index, name), _Mean()).add(utilization, period)

    def _fold_system_vcpu(self, body: SystemVcpu) -> None:
        period, means = body.period, self.cpu_modes
        for cpu, modes in body.per_cpu.items():
            for mode, share in modes.items():
                mean = means.get((cpu, mode))
                if mean is None:
                    mean = means[(cpu, mode)] = _Mean()
                mean.add(share, period)
        for mode, share in body.average.items():
            self.average_modes.setdefault(mode, _Mean()).add(share, period)
        self.context_switches += body.context_switches or 0

    def has_counts(self) -> bool:
        """Whether counts arrived that the next window has to hand over."""
        return bool(self.outcomes or self.errors or self.ecc or self.total.reports or self.device.reports)

    def drain(self) -> AppWindow:
        latest = self.latest
        window = AppWindow(
            application=self.application,
            entry_error=self.entry_error,
            body=latest,
            fresh=self.fresh,
            present=self.present,
            cores=self._cores(latest) if isinstance(latest, NeuroncoreCounters) else {},
            outcomes=_with_zeros(latest.outcomes, self.outcomes)
            if isinstance(latest, ExecutionStats)
            else {},
            errors=_with_zeros(latest.errors, self.errors) if isinstance(latest, ExecutionStats) else {},
            total_latency=self.total.histogram,
            device_latency=self.device.histogram,
            total_percentiles=self.total.percentiles(),
            device_percentiles=self.device.percentiles(),
            ecc=self._ecc(latest) if isinstance(latest, HwCounters) else {},
            vcpu_user=self.user.value(latest.user) if isinstance(latest, RuntimeVcpu) else None,
            vcpu_system=self.system.value(latest.system) if isinstance(latest, RuntimeVcpu) else None,
            system_vcpu=self._system_vcpu(latest) if isinstance(latest, SystemVcpu) else None,
        )
        self._reset()
        return window

    def _cores(self, latest: NeuroncoreCounters) -> dict[int, CoreCounters]:
        cores = {}
        for index, core in latest.cores.items():
            cores[index] = CoreCounters(
                utilization=_mean_of(self.utilization, index, core.utilization),
                loaded_models=core.loaded_models,
                flops=_mean_of(self.flops, index, core.flops),
                effective_flops=_mean_of(self.effective_flops, index, core.effective_flops),
                physical={
                    name: _mean_of(self.physical, (index, name), value) or 0.0
                    for name, value in core.physical.items()
                },
            )
        return cores

    def _system_vcpu(self, latest: SystemVcpu) -> SystemVcpu:
        """The latest body's vCPUs and modes, each time-weighted over the fresh bodies."""
        means = self.cpu_modes
        return SystemVcpu(
            period=latest.period,
            error=latest.error,
            average={
                mode: _mean_of(self.average_modes, mode, share) or 0.0
                for mode, share in latest.average.items()
            },
            per_cpu={
                cpu: {mode: _mean_of(means, (cpu, mode), share) or 0.0 for mode, share in modes.items()}
                for cpu, modes in latest.per_cpu.items()
            },
            context_switches=self.context_switches if latest.context_switches is not None else None,
        )

    def _ecc(self, latest: HwCounters) -> dict[int, dict[str, int]]:
        devices = {device.neuron_device_index: dict.fromkeys(device.counters, 0) for device in latest.devices}
        for index, counts in self.ecc.items():
            _add_counts(devices.setdefault(index, {}), counts)
        return devices
