"""What the runtime groups share: reading one runtime's consecutive snapshots.

All groups of one runtime share one `RuntimeEndpoint` (one fetch per collection tick); each group
keeps its own previous snapshot, because groups may have different periods, and its per-period
values are the difference between this snapshot and that one (`RuntimeGroup`). What several groups
ask of the same pair of snapshots (a restart? other models?) is worked out once (`SnapshotChecks`).

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import Any

from otel_neuron.groups.base import (
    AttributeColumn,
    AttributeValue,
    FrozenAttributes,
    MetricGroup,
    Point,
    PointColumns,
    PointsByMetric,
)
from otel_neuron.runtime import runtime_pb2
from otel_neuron.semconv import OUTCOMES, PROCESS_PID, RUNTIME_TAG
from otel_neuron.sources.runtime_endpoint import RuntimeEndpoint, RuntimeEndpointError

_OUTCOME_TOTALS = operator.attrgetter(*OUTCOMES)  # the protocol's outcome totals, in one C-level call
NO_POINTS = PointColumns(AttributeColumn(()), ())


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
        self._start_state()
        self._attributes_changed()

    def _start_state(self) -> None:  # noqa: B027 - a hook: groups that keep nothing between snapshots
        """Set up what the group keeps from one snapshot to the next (called once, by __init__)."""

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
        """Build (again) what a group keeps of the application's attribute sets: called at the end of
        __init__ and whenever the snapshots name another application."""


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
        self._newest_outcomes = self._older_outcomes = TotalsOf(None, ())
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
        self._older_outcomes, self._newest_outcomes = self._newest_outcomes, TotalsOf(snapshot, totals)
        return totals


@dataclass(slots=True)
class _BackwardsCheck:
    """Whether the totals went back from `previous` to `current`, as last worked out."""

    previous: runtime_pb2.Snapshot | None
    current: runtime_pb2.Snapshot | None
    went_backwards: bool


@dataclass(slots=True)
class TotalsOf:
    """A fixed set of a snapshot's totals (outcomes, error types...), read from the message once."""

    snapshot: runtime_pb2.Snapshot | None
    totals: tuple[int, ...]


@dataclass(slots=True)
class ColumnOf:
    """The attribute sets of a group's points for a set of cores or devices, built once for them."""

    indexes: tuple[int, ...]
    attributes: AttributeColumn


def same_memory(before: runtime_pb2.Snapshot, now: runtime_pb2.Snapshot) -> bool:
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


def increases_since(now: Sequence[int], before: Sequence[int] | None) -> list[int]:
    """`now - before` per position, never below 0 (a total missing before counts from 0)."""
    if before is None:
        return list(map(max, now, repeat(0)))
    return list(map(max, map(operator.sub, now, before), repeat(0)))


def elapsed_s(current: runtime_pb2.Snapshot, previous: runtime_pb2.Snapshot | None) -> float:
    return (current.uptime_nano - (previous.uptime_nano if previous is not None else 0)) / 1e9


def as_columns(points: Sequence[Point]) -> PointColumns:
    """Points a group keeps for as long as the models stay loaded, as columns: their attributes are
    then an AttributeColumn, whose runtime index the report reads once, not every period."""
    return PointColumns(
        AttributeColumn(attributes for attributes, _ in points), [value for _, value in points]
    )
