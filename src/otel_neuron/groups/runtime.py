"""The guide's five runtime-level groups, computed from consecutive runtime snapshots.

    groups = create_runtime_groups(0, "unix:/run/neuron.sock",
                                   ["neuroncore_counters", "inference_stats"], deadline_s=0.5)

All groups of one runtime share one `RuntimeEndpoint` (one fetch per collection tick); each group
keeps its own previous snapshot, because groups may have different periods. Per-period values
are the difference between this snapshot and the group's previous one:

- counters (inferences, errors, ECC events) are the increase; latency histograms are the period
  histograms the runtime hands over when asked since the previous snapshot's epoch, else the
  bucket-wise increase with the exact min/max of the period from the snapshot's latency windows;
- utilization is busy (or CPU) time over the runtime's own monotonic time between the snapshots,
  and flops per second the increase of a core's floating-point operations over that time;
- memory (with its categories, neuron-monitor 2.x's usage_breakdown) and loaded models are the
  state at the snapshot.

Every point carries the runtime's index and the application the snapshot names: `process.pid`
and `neuron.runtime.tag` (the snapshot's tag, else str(pid), as neuron-monitor does). Attribute
sets are built once per application and reused every period.

A runtime restart (a new runtime_id, or any total going down) makes the new runtime's totals since
its start the period's values, which all happened after the previous snapshot: no negative
counts, no reset spike, no percentiles from the old runtime. After a collection failed, the next
successful one covers the time since the last successful snapshot.
"""

from __future__ import annotations

import operator
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import Any, NamedTuple

from otel_neuron.groups.base import (
    AttributeColumn,
    AttributeValue,
    FrozenAttributes,
    HistogramDelta,
    MetricGroup,
    Point,
    PointColumns,
    PointsByMetric,
)
from otel_neuron.histogram import (
    Buckets,
    as_buckets,
    bounds_from_buckets,
    subtract_buckets,
)
from otel_neuron.runtime import runtime_pb2
from otel_neuron.semconv import (
    CORE_FLOPS,
    CORE_INDEX,
    CORE_MEMORY_BY_CATEGORY,
    CORE_SUBGRAPHS,
    CORE_UTILIZATION,
    CPU_MODE,
    DEVICE_INDEX,
    DEVICE_LATENCY,
    ECC_ERRORS,
    ECC_KINDS,
    ERROR_TYPE,
    ERROR_TYPES_V2,
    HOST_MEMORY_BY_CATEGORY,
    HW_COUNTERS,
    HW_ERROR_TYPE,
    INFERENCE_COUNT,
    INFERENCE_ERRORS,
    INFERENCE_LATENCY,
    INFERENCE_STATS,
    MEMORY_CATEGORY,
    MEMORY_LOCATION,
    MEMORY_LOCATIONS,
    MEMORY_USED,
    MODEL_ID,
    MODEL_MEMORY,
    MODEL_NAME,
    MODEL_RUNNING,
    MODEL_UUID,
    NEURONCORE_COUNTERS,
    OUTCOME,
    OUTCOMES,
    PROCESS_PID,
    RUNTIME_CPU,
    RUNTIME_CPU_MODES,
    RUNTIME_MEMORY,
    RUNTIME_TAG,
    RUNTIME_VCPU_USAGE,
    SUBGRAPH_MEMORY,
    SUBGRAPH_MEMORY_BY_CATEGORY,
    SUBGRAPH_NAME,
)
from otel_neuron.sources.fetch_loop import FetchLoop
from otel_neuron.sources.runtime_endpoint import RuntimeEndpoint, RuntimeEndpointError

# The protocol's fixed sets of totals, read in one C-level call each; a core's fields likewise.
_CORE_INDEX_OF = operator.attrgetter("index")
_BUSY_SECONDS_OF = operator.attrgetter("busy_seconds")
_FLOPS_OF = operator.attrgetter("flops")
_CORE_FIELDS = operator.attrgetter("index", "busy_seconds", "flops")  # one read of each core message
_OUTCOME_TOTALS = operator.attrgetter(*OUTCOMES)
_ERROR_TOTALS = operator.attrgetter(*ERROR_TYPES_V2)  # a runtime without `model` reads 0 there
_ECC_TOTALS = operator.attrgetter(*ECC_KINDS)
_NO_POINTS = PointColumns(AttributeColumn(()), ())


class _AttributeCache:
    """Attribute sets built once per distinct key and shared by every sample (so they are frozen).

    Only the sets the last two samples asked for are kept: models come and go for the life of a
    runtime, and a set that no recent sample used would otherwise be kept for good.
    """

    def __init__(self) -> None:
        self._current: dict[tuple[Any, ...], FrozenAttributes] = {}
        self._previous: dict[tuple[Any, ...], FrozenAttributes] = {}

    def next_sample(self) -> None:
        """Forget the sets that neither this sample nor the one before asked for."""
        self._previous, self._current = self._current, {}

    def get(self, base: dict[str, AttributeValue], **attributes: AttributeValue) -> FrozenAttributes:
        key = tuple(attributes.items())
        found = self._current.get(key)
        if found is None:
            found = self._previous.get(key)
            if found is None:
                found = FrozenAttributes({**base, **attributes})
            self._current[key] = found
        return found


class RuntimeGroup(MetricGroup):
    """A group reading one runtime's snapshots through a shared endpoint."""

    needs_baseline = True

    def __init__(
        self,
        runtime_index: int,
        endpoint: RuntimeEndpoint,
        checks: SnapshotChecks | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`checks`: the endpoint's, shared by the groups of that runtime (`create_runtime_groups`
        makes one per endpoint); None: one of the group's own. `clock` measures the periods."""
        super().__init__(runtime_index, clock)
        self.endpoint = endpoint
        self._checks = checks if checks is not None else SnapshotChecks()
        self._previous: runtime_pb2.Snapshot | None = None
        self._attempted_ns: int | None = None
        self._attributes = _AttributeCache()
        self._base = self.base_attributes()
        self._runtime_id: str | None = None  # of the runtime whose application the attribute sets name

    def runtime_error(self) -> str:
        return self.endpoint.last_error

    def refreshable(self) -> RuntimeEndpoint:
        return self.endpoint

    def _take_baseline(self) -> None:
        self._attempted_ns = time.time_ns()
        self._previous = self.endpoint.fetch()
        self._note_baseline(self._previous)
        self._bind_application(self._previous)

    def _sample_points(self, period: float) -> PointsByMetric:
        self._attributes.next_sample()
        attempted, self._attempted_ns = self._attempted_ns, time.time_ns()
        current = self.endpoint.fetch()
        previous, self._previous = self._previous, current
        self._note_baseline(current)
        # The attribute sets name the runtime of the previous snapshot (the baseline's at first).
        restarted = current.runtime_id != self._runtime_id
        if restarted:
            self._bind_application(current)
        if not self.needs_baseline:
            return self._points(current, None)
        if previous is None:
            if attempted is None or current.start_time_unix_nano < attempted:
                raise RuntimeEndpointError(
                    f"first snapshot of {self.endpoint.address.text} taken; "
                    "per-period values start next period"
                )
            return self._points(current, None)  # the runtime started within this period
        if restarted or self._checks.went_backwards(previous, current):
            return self._points(current, None)  # restarted: its totals since start are this period's
        return self._points(current, previous)

    def _points(self, current: runtime_pb2.Snapshot, previous: runtime_pb2.Snapshot | None) -> PointsByMetric:
        raise NotImplementedError

    takes_latencies = False  # True: its baseline snapshot decides which latencies the runtime hands over

    def _note_baseline(self, snapshot: runtime_pb2.Snapshot) -> None:
        if self.takes_latencies:
            note = getattr(self.endpoint, "note_latency_baseline", None)
            if note is not None:  # an endpoint that asks for period histograms
                note(snapshot.epoch)

    def _attrs(self, **attributes: AttributeValue) -> FrozenAttributes:
        return self._attributes.get(self._base, **attributes)

    def _bind_application(self, snapshot: runtime_pb2.Snapshot) -> None:
        """Points from now on are those of the snapshot's runtime (a runtime_id is one process with
        one tag): new attribute sets, naming its application."""
        self._runtime_id = snapshot.runtime_id
        self._base = {**self.base_attributes(), **application_attributes(snapshot.pid, snapshot.tag)}
        self._attributes = _AttributeCache()
        self._attributes_changed()

    def _attributes_changed(self) -> None:  # noqa: B027 - a hook: groups that keep no attribute sets
        """Drop (or build again) the attribute sets kept for the previous application."""


def application_attributes(pid: int, tag: str) -> dict[str, AttributeValue]:
    """`process.pid` and `neuron.runtime.tag` of a snapshot's application: the tag defaults to
    str(pid) as neuron-monitor's does; a pid of 0 (not given) is left out."""
    attributes: dict[str, AttributeValue] = {}
    if pid:
        attributes[PROCESS_PID] = pid
    if tag or pid:
        attributes[RUNTIME_TAG] = tag or str(pid)
    return attributes


class SnapshotChecks:
    """What several groups of one runtime ask of the same snapshots, worked out once: whether a pair
    shows a restart, and whether the loaded models changed."""

    def __init__(self) -> None:
        self._last_check = _BackwardsCheck(None, None, False)
        # The outcome totals of the last two snapshots read (the current one and its predecessor).
        self._newest_outcomes = self._older_outcomes = _TotalsOf(None, ())
        self._models_of: runtime_pb2.Snapshot | None = None  # the last snapshot whose models were compared
        self._models_generation = 0

    def models_generation(self, snapshot: runtime_pb2.Snapshot) -> int:
        """A number that changes whenever the loaded models (and their memory) differ from those of
        the snapshot asked about before: a group's points built at the same number still hold."""
        if snapshot is not self._models_of:
            if self._models_of is None or not _same_models(self._models_of, snapshot):
                self._models_generation += 1
            self._models_of = snapshot
        return self._models_generation

    def went_backwards(self, previous: runtime_pb2.Snapshot, current: runtime_pb2.Snapshot) -> bool:
        last = self._last_check
        if last.previous is previous and last.current is current:
            return last.went_backwards
        went = _compare_totals(previous, current) or any(
            map(operator.lt, self.outcome_totals(current), self.outcome_totals(previous))
        )
        self._last_check = _BackwardsCheck(previous, current, went)
        return went

    def outcome_totals(self, snapshot: runtime_pb2.Snapshot) -> tuple[int, ...]:
        """The snapshot's inference totals in OUTCOMES' order, read from the message once."""
        if snapshot is self._newest_outcomes.snapshot:
            return self._newest_outcomes.totals
        if snapshot is self._older_outcomes.snapshot:
            return self._older_outcomes.totals
        totals: tuple[int, ...] = _OUTCOME_TOTALS(snapshot.inferences)
        self._older_outcomes, self._newest_outcomes = self._newest_outcomes, _TotalsOf(snapshot, totals)
        return totals


@dataclass(slots=True)
class _BackwardsCheck:
    """Whether the totals went back from `previous` to `current`, as last worked out."""

    previous: runtime_pb2.Snapshot | None
    current: runtime_pb2.Snapshot | None
    went_backwards: bool


@dataclass(slots=True)
class _TotalsOf:
    """A fixed set of a snapshot's totals (outcomes, error types...), read from the message once."""

    snapshot: runtime_pb2.Snapshot | None
    totals: tuple[int, ...]


@dataclass(slots=True)
class _ColumnOf:
    """The attribute sets of a group's points for a set of cores or devices, built once for them."""

    indexes: tuple[int, ...]
    attributes: AttributeColumn


def _same_memory(before: runtime_pb2.Snapshot, now: runtime_pb2.Snapshot) -> bool:
    if now.memory_revision and now.runtime_id == before.runtime_id:  # the runtime keeps count
        return now.memory_revision == before.memory_revision
    return before.runtime_memory == now.runtime_memory and before.core_memory == now.core_memory


def _same_models(before: runtime_pb2.Snapshot, now: runtime_pb2.Snapshot) -> bool:
    if now.models_revision and now.runtime_id == before.runtime_id:  # the runtime keeps count
        return now.models_revision == before.models_revision
    return before.models == now.models  # compared in C


def _compare_totals(previous: runtime_pb2.Snapshot, current: runtime_pb2.Snapshot) -> bool:
    """Whether the runtime's clock, epochs or latency count went back (the outcomes are checked apart)."""
    if current.uptime_nano < previous.uptime_nano or current.epoch < previous.epoch:
        return True
    return current.total_latency.count < previous.total_latency.count


def _increases(now: Sequence[int], before: Sequence[int] | None) -> list[int]:
    """`now - before` per position, never below 0 (a total missing before counts from 0)."""
    if before is None:
        return list(map(max, now, repeat(0)))
    return list(map(max, map(operator.sub, now, before), repeat(0)))


def _elapsed_s(current: runtime_pb2.Snapshot, previous: runtime_pb2.Snapshot | None) -> float:
    return (current.uptime_nano - (previous.uptime_nano if previous is not None else 0)) / 1e9


class NeuronCoreCountersGroup(RuntimeGroup):
    """neuroncore_counters: per-core utilization over the period and the model:subgraph pairs on it."""

    report_key = NEURONCORE_COUNTERS
    instruments = (CORE_UTILIZATION, CORE_SUBGRAPHS, CORE_FLOPS)

    def __init__(
        self,
        runtime_index: int,
        endpoint: RuntimeEndpoint,
        checks: SnapshotChecks | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(runtime_index, endpoint, checks, clock)
        self._models_generation = 0  # of the models the subgraph points were built from
        self._subgraph_points = PointColumns(AttributeColumn(()), [])
        # The last snapshot's core indexes and, by position, their busy times and flops.
        self._cores_of = _CoreTotals(None, (), (), ())
        self._core_attributes: _ColumnOf | None = None

    def _attributes_changed(self) -> None:
        self._models_generation = -1  # the subgraph points are built again at the next sample
        self._core_attributes = None

    def _points(self, current: runtime_pb2.Snapshot, previous: runtime_pb2.Snapshot | None) -> PointsByMetric:
        elapsed = _elapsed_s(current, previous)
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
            per_second = _NO_POINTS
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
            self._core_attributes = _ColumnOf(indexes, column)
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
        return _as_columns(points)


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
    instruments = (INFERENCE_COUNT, INFERENCE_ERRORS, INFERENCE_LATENCY, DEVICE_LATENCY)
    takes_latencies = True

    def __init__(
        self,
        runtime_index: int,
        endpoint: RuntimeEndpoint,
        checks: SnapshotChecks | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(runtime_index, endpoint, checks, clock)
        self._attributes_changed()
        self._buckets = _BucketArrays()
        self._errors_of = _TotalsOf(None, ())  # the last snapshot's error totals

    def _attributes_changed(self) -> None:
        self._outcome_attributes = AttributeColumn(self._attrs(**{OUTCOME: name}) for name in OUTCOMES)
        self._error_attributes = AttributeColumn(self._attrs(**{ERROR_TYPE: name}) for name in ERROR_TYPES_V2)
        # A latency histogram's one point, as a column: what readers derive from it is kept on it.
        self._runtime_attributes = AttributeColumn([self._attrs()])

    def _points(self, current: runtime_pb2.Snapshot, previous: runtime_pb2.Snapshot | None) -> PointsByMetric:
        totals = self._checks.outcome_totals
        outcomes_before = totals(previous) if previous is not None else None
        errors_now: tuple[int, ...] = _ERROR_TOTALS(current.errors)
        errors_of, self._errors_of = self._errors_of, _TotalsOf(current, errors_now)
        if previous is None:
            errors_before = None
        elif errors_of.snapshot is previous:
            errors_before = errors_of.totals
        else:
            errors_before = _ERROR_TOTALS(previous.errors)
        counts = PointColumns(self._outcome_attributes, _increases(totals(current), outcomes_before))
        errors = PointColumns(self._error_attributes, _increases(errors_now, errors_before))
        if previous is not None and current.period_since_epoch == previous.epoch > 0:
            # The runtime handed over the period's latencies itself: nothing to subtract.
            total = _period_histogram(current.period_total_latency)
            device = _period_histogram(current.period_device_latency)
        else:
            windows = _PeriodWindows(current, previous.epoch if previous is not None else 0)
            total = _histogram_delta(current, previous, "total_latency", windows, self._buckets)
            device = _histogram_delta(current, previous, "device_latency", windows, self._buckets)
        runtime = self._runtime_attributes
        return {
            INFERENCE_COUNT.name: counts,
            INFERENCE_ERRORS.name: errors,
            INFERENCE_LATENCY.name: PointColumns(runtime, (total,)) if total is not None else _NO_POINTS,
            DEVICE_LATENCY.name: PointColumns(runtime, (device,)) if device is not None else _NO_POINTS,
        }


def _period_histogram(period: runtime_pb2.LatencyHistogram) -> HistogramDelta | None:
    """A period histogram of the runtime's (its min/max exact) as the group's point; None when empty.
    Its counts stay in the snapshot's repeated field, which nothing changes once received."""
    if period.count <= 0:
        return None
    return HistogramDelta(
        period.scale,
        period.zero_count,
        period.offset,
        period.bucket_counts,
        period.count,
        period.sum,
        period.min,
        period.max,
    )


class _BucketArrays:
    """The bucket counts of the latest snapshot's histograms as arrays, reused as next period's baseline
    (read from the message once rather than twice)."""

    def __init__(self) -> None:
        self._latest: dict[str, _BucketsOf] = {}  # by histogram field

    def of(self, snapshot: runtime_pb2.Snapshot, field: str) -> Buckets:
        latest = self._latest.get(field)
        if latest is not None and latest.snapshot is snapshot:
            return latest.buckets
        return as_buckets(getattr(snapshot, field).bucket_counts)

    def keep(self, snapshot: runtime_pb2.Snapshot, field: str, counts: Buckets) -> None:
        self._latest[field] = _BucketsOf(snapshot, counts)


@dataclass(slots=True)
class _BucketsOf:
    """A snapshot's bucket counts of one histogram, as an array."""

    snapshot: runtime_pb2.Snapshot
    buckets: Buckets


def _histogram_delta(
    current: runtime_pb2.Snapshot,
    previous: runtime_pb2.Snapshot | None,
    field: str,
    windows: _PeriodWindows,
    lists: _BucketArrays,
) -> HistogramDelta | None:
    now: runtime_pb2.LatencyHistogram = getattr(current, field)
    count = now.count
    if previous is not None:
        before: runtime_pb2.LatencyHistogram = getattr(previous, field)
        count -= before.count
        if count <= 0:
            return None
        if before.scale != now.scale and before.count:
            return None  # cannot happen in protocol v1 (fixed scale)
        now_counts, before_counts = lists.of(current, field), lists.of(previous, field)
        lists.keep(current, field, now_counts)
        subtracted = subtract_buckets(now.offset, now_counts, before.offset, before_counts)
        if subtracted is None:
            return None
        offset, buckets = subtracted
        zero_count = now.zero_count - before.zero_count
        total = now.sum - before.sum
    else:
        if count <= 0:
            return None
        now_counts = lists.of(current, field)
        lists.keep(current, field, now_counts)
        now_counts.flags.writeable = False  # a HistogramDelta's counts: immutable like the rest of it
        offset, buckets = now.offset, now_counts
        zero_count, total = now.zero_count, now.sum
        # Everything since the runtime started: its lifetime min/max are this period's. (The windows
        # may not go back that far: an answer holds only those after the epoch the request named,
        # which can be one of a runtime that ran before this one.)
        return HistogramDelta(now.scale, zero_count, offset, buckets, count, total, now.min, now.max)
    bounds = windows.min_max(field)
    if bounds is None:  # windows lost (hundreds of pollers): bound by the buckets
        low, high = bounds_from_buckets(offset, buckets, now.scale, zero_count, now.min, now.max)
    else:
        low, high = bounds
    return HistogramDelta(now.scale, zero_count, offset, buckets, count, total, low, high)


class _PeriodWindows:
    """The exact min/max of the latencies recorded after epoch `since_epoch`, from the snapshot's
    latency windows: read once, on first use, for both histograms (a runtime keeps up to 256 windows,
    each read from the message)."""

    def __init__(self, snapshot: runtime_pb2.Snapshot, since_epoch: int) -> None:
        self._snapshot = snapshot
        self._since_epoch = since_epoch
        self._read = False
        self._bounds: _WindowBounds | None = None

    def min_max(self, field: str) -> tuple[float, float] | None:
        """(min, max) of `field`'s latencies in the period; None when the windows do not cover it."""
        if not self._read:
            self._bounds = _window_min_max(self._snapshot, self._since_epoch)
            self._read = True
        if self._bounds is None:
            return None
        if field == "total_latency":
            return self._bounds.total_min, self._bounds.total_max
        return self._bounds.device_min, self._bounds.device_max


@dataclass(slots=True)
class _WindowBounds:
    """The least and greatest latencies of some windows, total and on the device."""

    total_min: float
    total_max: float
    device_min: float
    device_max: float

    def widen(self, window: runtime_pb2.LatencyWindow) -> None:
        self.total_min = min(self.total_min, window.total_min)
        self.total_max = max(self.total_max, window.total_max)
        self.device_min = min(self.device_min, window.device_min)
        self.device_max = max(self.device_max, window.device_max)


def _bounds_of(window: runtime_pb2.LatencyWindow) -> _WindowBounds:
    return _WindowBounds(window.total_min, window.total_max, window.device_min, window.device_max)


def _window_min_max(snapshot: runtime_pb2.Snapshot, since_epoch: int) -> _WindowBounds | None:
    """The bounds of the windows after `since_epoch`; None when the snapshot's do not go back so far."""
    if since_epoch + 1 < snapshot.oldest_epoch:
        return None
    newest = snapshot.epoch
    windows = snapshot.latency_windows
    if since_epoch + 1 == newest and windows:
        # The usual period: one epoch closed since the previous snapshot. The protocol keeps one
        # window per epoch, so when the last window is that epoch's it is the only one to take, and
        # the other (up to 255) need not be read.
        last = windows[-1]
        if last.epoch == newest:
            return _bounds_of(last)
    bounds: _WindowBounds | None = None
    for window in windows:
        if since_epoch < window.epoch <= newest:
            if bounds is None:
                bounds = _bounds_of(window)
            else:
                bounds.widen(window)
    return bounds


class MemoryUsedGroup(RuntimeGroup):
    """memory_used: the runtime's and each loaded model's (and subgraph's) memory at the snapshot."""

    report_key = MEMORY_USED
    instruments = (
        RUNTIME_MEMORY,
        MODEL_MEMORY,
        MODEL_RUNNING,
        SUBGRAPH_MEMORY,
        HOST_MEMORY_BY_CATEGORY,
        CORE_MEMORY_BY_CATEGORY,
        SUBGRAPH_MEMORY_BY_CATEGORY,
    )
    needs_baseline = False

    def __init__(
        self,
        runtime_index: int,
        endpoint: RuntimeEndpoint,
        checks: SnapshotChecks | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(runtime_index, endpoint, checks, clock)
        self._attributes_changed()

    def _attributes_changed(self) -> None:
        self._models_generation = -1  # of the models the model points were built from (none yet)
        self._model_points = _ModelPoints(_NO_POINTS, _NO_POINTS, _NO_POINTS, _NO_POINTS)
        self._locations = AttributeColumn(
            self._attrs(**{MEMORY_LOCATION: location}) for location in MEMORY_LOCATIONS
        )
        # The runtime's memory points and the snapshot they were built from (kept while it stays the same).
        self._memory_of: runtime_pb2.Snapshot | None = None
        self._memory_points = _MemoryPoints(_NO_POINTS, _NO_POINTS, _NO_POINTS)

    def _points(self, current: runtime_pb2.Snapshot, previous: runtime_pb2.Snapshot | None) -> PointsByMetric:
        memory = self._memory_points_of(current)
        generation = self._checks.models_generation(current)
        if generation != self._models_generation:
            self._models_generation = generation
            self._model_points = self._model_points_of(current)
        models = self._model_points
        return {
            RUNTIME_MEMORY.name: memory.runtime,
            MODEL_MEMORY.name: models.memory,
            MODEL_RUNNING.name: models.running,
            SUBGRAPH_MEMORY.name: models.subgraphs,
            HOST_MEMORY_BY_CATEGORY.name: memory.host_categories,
            CORE_MEMORY_BY_CATEGORY.name: memory.core_categories,
            SUBGRAPH_MEMORY_BY_CATEGORY.name: models.subgraph_categories,
        }

    def _memory_points_of(self, current: runtime_pb2.Snapshot) -> _MemoryPoints:
        """The runtime's memory by location, its host memory by category and each core's device
        memory by category (none when the runtime gives no categories); the last ones again while
        the memory stays the same."""
        kept = self._memory_of
        if kept is None or not _same_memory(kept, current):
            memory = current.runtime_memory
            runtime = PointColumns(self._locations, [memory.host_bytes, memory.device_bytes])
            host = [
                (self._attrs(**{MEMORY_CATEGORY: part.category}), part.bytes)
                for part in current.runtime_memory.host_categories
            ]
            cores = [
                (self._attrs(**{CORE_INDEX: core.core_index, MEMORY_CATEGORY: part.category}), part.bytes)
                for core in current.core_memory
                for part in core.categories
            ]
            self._memory_points = _MemoryPoints(runtime, _as_columns(host), _as_columns(cores))
        self._memory_of = current
        return self._memory_points

    def _model_points_of(self, current: runtime_pb2.Snapshot) -> _ModelPoints:
        models: list[Point] = []
        running: list[Point] = []
        subgraphs: list[Point] = []
        categories: list[Point] = []
        for model in current.models:
            identity = {MODEL_NAME: model.name, MODEL_UUID: model.uuid, MODEL_ID: model.model_id}
            running.append((self._attrs(**identity), 1 if model.is_running else 0))
            models.append((self._attrs(**identity, **{MEMORY_LOCATION: "host"}), model.memory.host_bytes))
            models.append(
                (self._attrs(**identity, **{MEMORY_LOCATION: "neuron_device"}), model.memory.device_bytes)
            )
            for subgraph in model.subgraphs:
                placed = {
                    MODEL_ID: model.model_id,
                    MODEL_NAME: model.name,
                    SUBGRAPH_NAME: subgraph.name,
                    CORE_INDEX: subgraph.neuroncore_index,
                    DEVICE_INDEX: subgraph.neuron_device_index,
                }
                subgraphs.append(
                    (self._attrs(**placed, **{MEMORY_LOCATION: "host"}), subgraph.memory.host_bytes)
                )
                subgraphs.append(
                    (
                        self._attrs(**placed, **{MEMORY_LOCATION: "neuron_device"}),
                        subgraph.memory.device_bytes,
                    )
                )
                for location, parts in (
                    ("host", subgraph.memory.host_categories),
                    ("neuron_device", subgraph.memory.device_categories),
                ):
                    for part in parts:
                        where = {MEMORY_LOCATION: location, MEMORY_CATEGORY: part.category}
                        categories.append((self._attrs(**placed, **where), part.bytes))
        return _ModelPoints(
            _as_columns(models), _as_columns(running), _as_columns(subgraphs), _as_columns(categories)
        )


@dataclass(slots=True)
class _MemoryPoints:
    """memory_used's points of the runtime's own memory, kept while it stays the same."""

    runtime: PointColumns  # by location
    host_categories: PointColumns
    core_categories: PointColumns  # each NeuronCore's device memory by category


@dataclass(slots=True)
class _ModelPoints:
    """memory_used's points of the loaded models, kept while they stay loaded."""

    memory: PointColumns  # each model's, by location
    running: PointColumns
    subgraphs: PointColumns  # each subgraph's memory, by location
    subgraph_categories: PointColumns


class RuntimeVcpuUsageGroup(RuntimeGroup):
    """neuron_runtime_vcpu_usage: the runtime process's user/system CPU as a share of all vCPUs."""

    report_key = RUNTIME_VCPU_USAGE
    instruments = (RUNTIME_CPU,)

    def __init__(
        self,
        runtime_index: int,
        endpoint: RuntimeEndpoint,
        checks: SnapshotChecks | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(runtime_index, endpoint, checks, clock)
        self._attributes_changed()

    def _attributes_changed(self) -> None:
        self._modes = AttributeColumn(self._attrs(**{CPU_MODE: mode}) for mode in RUNTIME_CPU_MODES)

    def _points(self, current: runtime_pb2.Snapshot, previous: runtime_pb2.Snapshot | None) -> PointsByMetric:
        capacity = _elapsed_s(current, previous) * max(current.vcpu_count, 1)
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
    instruments = (ECC_ERRORS,)

    def __init__(
        self,
        runtime_index: int,
        endpoint: RuntimeEndpoint,
        checks: SnapshotChecks | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(runtime_index, endpoint, checks, clock)
        # The ECC totals of the last snapshot by device index, reused as the next period's baseline.
        self._totals_of = _DeviceTotals(None, {})
        self._device_attributes: _ColumnOf | None = None
        self._no_events: PointsByMetric | None = None  # the last points, when they counted no event

    def _attributes_changed(self) -> None:
        self._device_attributes = None
        self._no_events = None

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
            increases += _increases(now, before.get(index))
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
            self._device_attributes = _ColumnOf(indexes, attributes)
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


def _as_columns(points: Sequence[Point]) -> PointColumns:
    """Points a group keeps for as long as the models stay loaded, as columns: their attributes are
    then an AttributeColumn, whose runtime index the report reads once, not every period."""
    return PointColumns(
        AttributeColumn(attributes for attributes, _ in points), [value for _, value in points]
    )
