"""The guide's runtime-level groups, computed from consecutive runtime snapshots.

    groups = create_runtime_groups(0, "unix:/run/neuron.sock",
                                   ["neuroncore_counters", "inference_stats"], deadline_s=0.5)

Per-period values (see `snapshot_group` for how a group reads its runtime):

- counters (inferences, errors, ECC events) are the increase; latency histograms are the period's
  (see `latency_delta`);
- utilization is busy (or CPU) time over the runtime's own monotonic time between the snapshots,
  and flops per second the increase of a core's floating-point operations over that time;
- memory (with its categories, neuron-monitor 2.x's usage_breakdown) and loaded models are the
  state at the snapshot (`runtime_memory`).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import Any, NamedTuple

from otel_neuron.groups.base import (
    AttributeColumn,
    AttributeValue,
    MetricGroup,
    Point,
    PointColumns,
    PointsByMetric,
)
from otel_neuron.groups.latency_delta import BucketArrays, PeriodWindows, histogram_delta, period_histogram
from otel_neuron.groups.runtime_memory import MemoryUsedGroup
from otel_neuron.groups.snapshot_group import (
    NO_POINTS,
    ColumnOf,
    RuntimeGroup,
    SnapshotChecks,
    TotalsOf,
    as_columns,
    elapsed_s,
    increases_since,
)
from otel_neuron.runtime import runtime_pb2
from otel_neuron.semconv import (
    CORE_FLOPS,
    CORE_INDEX,
    CORE_SUBGRAPHS,
    CORE_UTILIZATION,
    CPU_MODE,
    DEVICE_INDEX,
    DEVICE_LATENCY,
    ECC_ERRORS,
    ECC_KINDS,
    ERROR_TYPE,
    ERROR_TYPES_V2,
    HW_COUNTERS,
    HW_ERROR_TYPE,
    INFERENCE_COUNT,
    INFERENCE_ERRORS,
    INFERENCE_LATENCY,
    INFERENCE_STATS,
    MODEL_NAME,
    NEURONCORE_COUNTERS,
    OUTCOME,
    OUTCOMES,
    RUNTIME_CPU,
    RUNTIME_CPU_MODES,
    RUNTIME_VCPU_USAGE,
    SUBGRAPH_NAME,
    measured_instruments,
)
from otel_neuron.sources.fetch_loop import FetchLoop
from otel_neuron.sources.runtime_endpoint import RuntimeEndpoint

# The protocol's fixed sets of totals, read in one C-level call each; a core's fields likewise.
_BUSY_SECONDS_OF = operator.attrgetter("busy_seconds")
_FLOPS_OF = operator.attrgetter("flops")
_CORE_FIELDS = operator.attrgetter("index", "busy_seconds", "flops")  # one read of each core message
_ERROR_TOTALS = operator.attrgetter(*ERROR_TYPES_V2)  # a runtime without `model` reads 0 there
_ECC_TOTALS = operator.attrgetter(*ECC_KINDS)


class NeuronCoreCountersGroup(RuntimeGroup):
    """neuroncore_counters: per-core utilization over the period and the model:subgraph pairs on it."""

    report_key = NEURONCORE_COUNTERS
    instruments = measured_instruments(NEURONCORE_COUNTERS)

    def _start_state(self) -> None:
        self._subgraph_points = PointColumns(AttributeColumn(()), [])
        # The last snapshot's core indexes and, by position, their busy times and flops.
        self._cores_of = _CoreTotals(None, (), (), ())

    def _attributes_changed(self) -> None:
        self._models_generation = -1  # of the models the subgraph points were built from: none yet
        self._core_attributes: ColumnOf | None = None

    def _points(self, current: runtime_pb2.Snapshot, previous: runtime_pb2.Snapshot | None) -> PointsByMetric:
        elapsed = elapsed_s(current, previous)
        cores = current.cores
        indexes: tuple[int, ...] = ()
        busy: Sequence[float] = ()
        flops: Sequence[float] | None = None
        if cores:
            indexes, busy, flops = zip(*map(_CORE_FIELDS, cores))
            if not cores[0].HasField("flops"):  # a runtime counting flops sets them on every core
                flops = None
        seen = self._cores_of
        if previous is not None and seen.snapshot is previous and seen.indexes == indexes:
            busy_before = seen.busy  # the same cores as last period: position by position
            flops_before = seen.flops or [0.0] * len(indexes)
        else:
            busy_before = _per_core(previous, indexes, _BUSY_SECONDS_OF)
            flops_before = _per_core(previous, indexes, _FLOPS_OF)
        self._cores_of = _CoreTotals(current, indexes, busy, flops or ())
        core_attributes = self._attributes_of_cores(indexes)
        if elapsed > 0:
            shares = list(map(min, _per_second(busy, busy_before, elapsed), repeat(1.0)))
        else:
            shares = [0.0] * len(busy)
        if flops is None:
            per_second = NO_POINTS
        elif elapsed > 0:
            per_second = PointColumns(core_attributes, list(_per_second(flops, flops_before, elapsed)))
        else:
            per_second = PointColumns(core_attributes, [0.0] * len(flops))
        generation = self._checks.models_generation(current)
        if generation != self._models_generation:
            self._models_generation = generation
            self._subgraph_points = self._subgraph_points_of(current)
        return {
            CORE_UTILIZATION.name: PointColumns(core_attributes, shares),
            CORE_SUBGRAPHS.name: self._subgraph_points,
            CORE_FLOPS.name: per_second,
        }

    def _attributes_of_cores(self, indexes: tuple[int, ...]) -> AttributeColumn:
        if self._core_attributes is None or self._core_attributes.indexes != indexes:
            column = AttributeColumn(self._attrs(**{CORE_INDEX: i}) for i in indexes)
            self._core_attributes = ColumnOf(indexes, column)
        return self._core_attributes.attributes

    def _subgraph_points_of(self, current: runtime_pb2.Snapshot) -> PointColumns:
        loaded: dict[tuple[int, str, str], int] = {}
        for model in current.models:
            for subgraph in model.subgraphs:
                key = (subgraph.neuroncore_index, model.name, subgraph.name)
                loaded[key] = loaded.get(key, 0) + 1
        points: list[Point] = []
        for (core, model, subgraph), count in sorted(loaded.items()):
            attributes: dict[str, AttributeValue] = {
                CORE_INDEX: core,
                MODEL_NAME: model,
                SUBGRAPH_NAME: subgraph,
            }
            points.append((self._attrs(**attributes), count))
        return as_columns(points)


class _CoreTotals(NamedTuple):
    """A snapshot's core indexes and, in their order, each core's cumulative busy seconds and flops
    (empty: not counted), kept as the next period's baseline."""

    snapshot: runtime_pb2.Snapshot | None
    indexes: tuple[int, ...]
    busy: Sequence[float]
    flops: Sequence[float]


def _per_second(now: Sequence[float], before: Sequence[float], elapsed: float) -> Iterator[float]:
    """(now - before) / elapsed per position, never below 0 (in C: a few cores a runtime, every tick)."""
    return map(max, map(operator.truediv, map(operator.sub, now, before), repeat(elapsed)), repeat(0.0))


def _per_core(
    previous: runtime_pb2.Snapshot | None, indexes: tuple[int, ...], read: Callable[[Any], float]
) -> Sequence[float]:
    """Each core's cumulative value (`read`) in `previous`, in the order of `indexes` (0 where absent)."""
    if previous is None:
        return [0.0] * len(indexes)
    before = {core.index: read(core) for core in previous.cores}
    return [before.get(index, 0.0) for index in indexes]


class InferenceStatsGroup(RuntimeGroup):
    """inference_stats: outcome and error counts and latency histograms of the period."""

    report_key = INFERENCE_STATS
    instruments = measured_instruments(INFERENCE_STATS)
    takes_latencies = True

    def _start_state(self) -> None:
        self._buckets = BucketArrays()
        self._errors_of = TotalsOf(None, ())  # the last snapshot's error totals

    def _attributes_changed(self) -> None:
        self._outcome_attributes = AttributeColumn(self._attrs(**{OUTCOME: name}) for name in OUTCOMES)
        self._error_attributes = AttributeColumn(self._attrs(**{ERROR_TYPE: name}) for name in ERROR_TYPES_V2)
        # A latency histogram's one point, as a column: what readers derive from it is kept on it.
        self._runtime_attributes = AttributeColumn([self._attrs()])

    def _points(self, current: runtime_pb2.Snapshot, previous: runtime_pb2.Snapshot | None) -> PointsByMetric:
        totals = self._checks.outcome_totals
        outcomes_before = totals(previous) if previous is not None else None
        errors_now: tuple[int, ...] = _ERROR_TOTALS(current.errors)
        errors_of, self._errors_of = self._errors_of, TotalsOf(current, errors_now)
        if previous is None:
            errors_before = None
        elif errors_of.snapshot is previous:
            errors_before = errors_of.totals
        else:
            errors_before = _ERROR_TOTALS(previous.errors)
        counts = PointColumns(self._outcome_attributes, increases_since(totals(current), outcomes_before))
        errors = PointColumns(self._error_attributes, increases_since(errors_now, errors_before))
        if previous is not None and current.period_since_epoch == previous.epoch > 0:
            # The runtime handed over the period's latencies itself: nothing to subtract.
            total = period_histogram(current.period_total_latency)
            device = period_histogram(current.period_device_latency)
        else:
            windows = PeriodWindows(current, previous.epoch if previous is not None else 0)
            total = histogram_delta(current, previous, "total_latency", windows, self._buckets)
            device = histogram_delta(current, previous, "device_latency", windows, self._buckets)
        runtime = self._runtime_attributes
        return {
            INFERENCE_COUNT.name: counts,
            INFERENCE_ERRORS.name: errors,
            INFERENCE_LATENCY.name: PointColumns(runtime, (total,)) if total is not None else NO_POINTS,
            DEVICE_LATENCY.name: PointColumns(runtime, (device,)) if device is not None else NO_POINTS,
        }


class RuntimeVcpuUsageGroup(RuntimeGroup):
    """neuron_runtime_vcpu_usage: the runtime process's user/system CPU as a share of all vCPUs."""

    report_key = RUNTIME_VCPU_USAGE
    instruments = measured_instruments(RUNTIME_VCPU_USAGE)

    def _attributes_changed(self) -> None:
        self._modes = AttributeColumn(self._attrs(**{CPU_MODE: mode}) for mode in RUNTIME_CPU_MODES)

    def _points(self, current: runtime_pb2.Snapshot, previous: runtime_pb2.Snapshot | None) -> PointsByMetric:
        capacity = elapsed_s(current, previous) * max(current.vcpu_count, 1)
        user = current.cpu.user_seconds - (previous.cpu.user_seconds if previous is not None else 0.0)
        system = current.cpu.system_seconds - (previous.cpu.system_seconds if previous is not None else 0.0)
        return {
            RUNTIME_CPU.name: PointColumns(self._modes, [_share(user, capacity), _share(system, capacity)])
        }


def _share(part: float, whole: float) -> float:
    return min(max(part / whole, 0.0), 1.0) if whole > 0 else 0.0


class HwCountersGroup(RuntimeGroup):
    """hw_counters: ECC events per Neuron device during the period (per-period counts), of all four
    kinds (the 1.x report shows the guide's three)."""

    report_key = HW_COUNTERS
    instruments = measured_instruments(HW_COUNTERS)

    def _start_state(self) -> None:
        # The ECC totals of the last snapshot by device index, reused as the next period's baseline.
        self._totals_of = _DeviceTotals(None, {})

    def _attributes_changed(self) -> None:
        self._device_attributes: ColumnOf | None = None
        self._no_events: PointsByMetric | None = None  # the last points, when they counted no event

    def _points(self, current: runtime_pb2.Snapshot, previous: runtime_pb2.Snapshot | None) -> PointsByMetric:
        devices = current.devices
        seen = self._totals_of
        if (
            self._no_events is not None
            and seen.snapshot is previous is not None
            and devices == previous.devices
        ):
            # The usual period: the same devices and totals, so no event again (compared in C).
            self._totals_of = _DeviceTotals(current, seen.by_device)
            return self._no_events
        indexes = tuple([device.device_index for device in devices])
        totals = list(map(_ECC_TOTALS, devices))
        if previous is None:
            before: dict[int, tuple[int, ...]] = {}
        elif seen.snapshot is previous:
            before = seen.by_device
        else:
            before = {device.device_index: _ECC_TOTALS(device) for device in previous.devices}
        self._totals_of = _DeviceTotals(current, dict(zip(indexes, totals)))
        increases: list[int] = []
        for index, now in zip(indexes, totals):
            increases += increases_since(now, before.get(index))
        points = {ECC_ERRORS.name: PointColumns(self._attributes_of_devices(indexes), increases)}
        self._no_events = None if any(increases) else points
        return points

    def _attributes_of_devices(self, indexes: tuple[int, ...]) -> AttributeColumn:
        """Each device's ECC kinds, in the order of the increases; built once per set of devices."""
        if self._device_attributes is None or self._device_attributes.indexes != indexes:
            attributes = AttributeColumn(
                self._attrs(**{DEVICE_INDEX: index}, **{HW_ERROR_TYPE: kind})
                for index in indexes
                for kind in ECC_KINDS
            )
            self._device_attributes = ColumnOf(indexes, attributes)
        return self._device_attributes.attributes


@dataclass(slots=True)
class _DeviceTotals:
    """A snapshot's ECC totals by device index (in ECC_KINDS' order), the next period's baseline."""

    snapshot: runtime_pb2.Snapshot | None
    by_device: dict[int, tuple[int, ...]]


GROUP_TYPES: dict[str, type[RuntimeGroup]] = {
    "neuroncore_counters": NeuronCoreCountersGroup,
    "inference_stats": InferenceStatsGroup,
    "memory_used": MemoryUsedGroup,
    "neuron_runtime_vcpu_usage": RuntimeVcpuUsageGroup,
    "hw_counters": HwCountersGroup,
}


def create_runtime_groups(
    runtime_index: int,
    address: str,
    group_types: Sequence[str],
    deadline_s: float,
    fetch_loop: FetchLoop | None = None,
) -> list[MetricGroup]:
    """The requested groups of one runtime, sharing one endpoint at `address`.

    `group_types` are canonical group names (GROUP_TYPES); `deadline_s` bounds each snapshot fetch
    and should be shorter than the shortest period; `fetch_loop` is the loop the endpoint's gRPC
    fetches run on (None: one of its own). Raises ValueError for a bad address, an unknown group
    name or a bad deadline.
    """
    unknown = [name for name in group_types if name not in GROUP_TYPES]
    if unknown:
        raise ValueError(f"unknown runtime metric group {unknown[0]!r} (known: {', '.join(GROUP_TYPES)})")
    endpoint = RuntimeEndpoint(address, deadline_s=deadline_s, fetch_loop=fetch_loop)
    checks = SnapshotChecks()  # the endpoint's groups ask the same of its snapshots
    return [GROUP_TYPES[name](runtime_index, endpoint, checks) for name in _unique(group_types)]


def _unique(names: Iterable[str]) -> list[str]:
    seen: list[str] = []
    for name in names:
        if name not in seen:
            seen.append(name)
    return seen
