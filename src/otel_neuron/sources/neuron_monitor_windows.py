"""What one otel-neuron group sees of a neuron-monitor stream: a window per application.

A subscription (one group of one configured runtime) keeps, for every application whose entry
passes the runtime's `tag_filter` / `index`, what arrived since the group's previous sample
(`neuron_monitor_application`); `drain` hands it over as a `BridgeWindow` and starts the next
period. neuron-monitor repeats a group that was not due with its previous body: a body equal to
the one last seen for the application is not counted again.

An application whose entry is missing from the latest report has left: it is in the next window
(as `present` False) only if it has counts not yet handed over (executions, errors, latencies, ECC
events), and then forgotten. At most `MAX_APPLICATIONS` are kept per subscription; past that the
one seen longest ago is forgotten. The system groups of a stream (2.x's `neuron_hw_counters`,
`vcpu_usage`, `memory_info`, the root `neuron_hardware_info`) are the pseudo-application `SYSTEM`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from otel_neuron.semconv import (
    HW_COUNTERS,
    INFERENCE_STATS,
    MEMORY_INFO,
    MEMORY_USED,
    NEURON_HARDWARE_INFO,
    NEURONCORE_COUNTERS,
    RUNTIME_VCPU_USAGE,
    VCPU_USAGE,
)
from otel_neuron.sources.neuron_monitor_address import BridgeAddress
from otel_neuron.sources.neuron_monitor_application import (
    SYSTEM,
    Application,
    AppState,
    AppWindow,
    Latencies,
    application_of,
    has_data,
    latencies_of,
)
from otel_neuron.sources.neuron_monitor_types import MonitorReport, RuntimeReport

MAX_APPLICATIONS = 1024


@dataclass(frozen=True)
class BridgeWindow:
    """What arrived for one subscriber since its previous sample, per application."""

    fresh: int
    applications: tuple[AppWindow, ...]
    # The stream's system group failed upstream and gave nothing (its `error`); "" otherwise.
    system_error: str = ""


# The body of each group in a runtime entry, and in the report's system part.
_ENTRY_BODY: dict[str, Callable[[RuntimeReport], Any]] = {
    NEURONCORE_COUNTERS: lambda runtime: runtime.neuroncore_counters,
    INFERENCE_STATS: lambda runtime: runtime.execution_stats,
    MEMORY_USED: lambda runtime: runtime.memory_used,
    HW_COUNTERS: lambda runtime: runtime.hw_counters,
    RUNTIME_VCPU_USAGE: lambda runtime: runtime.vcpu_usage,
    NEURON_HARDWARE_INFO: lambda runtime: None,
    VCPU_USAGE: lambda runtime: None,
    MEMORY_INFO: lambda runtime: None,
}
_SYSTEM_BODY: dict[str, Callable[[MonitorReport], Any]] = {
    HW_COUNTERS: lambda report: report.hw_counters,  # 2.x: neuron_hw_counters is a system group
    NEURON_HARDWARE_INFO: lambda report: report.hardware,
    VCPU_USAGE: lambda report: report.vcpu_usage,
    MEMORY_INFO: lambda report: report.memory_info,
}


@dataclass(frozen=True)
class Plan:
    """What one report brings one subscription, computed without changing anything."""

    entries: Mapping[Application, tuple[str, Any]]  # application -> (entry error, body or None)
    fresh: tuple[tuple[Application, Any, Latencies], ...]  # bodies not seen before, ready to fold


class Subscription:
    """One otel-neuron group's windows over the stream, one per application (under the bridge lock)."""

    def __init__(self, key: str, address: BridgeAddress, max_applications: int = MAX_APPLICATIONS) -> None:
        if key not in _ENTRY_BODY:
            raise ValueError(f"neuron-monitor does not provide the group {key!r}")
        self.key = key
        self._pattern = None if address.tag_filter is None else re.compile(address.tag_filter)
        self._index = address.index
        self._max_applications = max_applications
        self._apps: dict[Application, AppState] = {}  # least recently seen first

    def matches(self, runtime: RuntimeReport) -> bool:
        if self._index is not None and runtime.index != self._index:
            return False
        return self._pattern is None or self._pattern.search(runtime.tag) is not None

    @property
    def fresh(self) -> int:
        return sum(state.fresh for state in self._apps.values())

    def plan(self, report: MonitorReport) -> Plan:
        """The entries of `report` for this subscription and their fresh bodies; changes nothing."""
        body_of = _ENTRY_BODY[self.key]
        entries: dict[Application, tuple[str, Any]] = {}
        for runtime in report.runtimes:
            if self.matches(runtime):
                body = body_of(runtime)
                # A system group is no application's: 2.x entries have none of it.
                if body is not None or self.key not in _SYSTEM_BODY:
                    entries[application_of(runtime)] = (runtime.error, body)
        system_body = _SYSTEM_BODY[self.key](report) if self.key in _SYSTEM_BODY else None
        if system_body is not None:
            entries[SYSTEM] = ("", system_body)
        fresh = []
        for application, (_, body) in entries.items():
            state = self._apps.get(application)
            if body is not None and (state is None or state.seen != body):
                fresh.append((application, body, latencies_of(body)))
        return Plan(entries, tuple(fresh))

    def commit(self, plan: Plan) -> None:
        for position, (application, (error, body)) in enumerate(plan.entries.items()):
            known = self._apps.pop(application, None)
            state = known if known is not None else self._admit(application)
            self._apps[application] = state  # now the most recently seen
            state.present, state.position, state.entry_error = True, position, error
            if body is not None:
                state.latest = body
        for application, body, latencies in plan.fresh:
            folded = self._apps.get(application)
            if folded is not None:  # None: forgotten at once, more applications than the bound
                folded.seen = body
                folded.fold(body, latencies)
        for application, state in list(self._apps.items()):
            if application not in plan.entries:
                state.present = False
                if not state.has_counts():
                    del self._apps[application]

    def _admit(self, application: Application) -> AppState:
        while len(self._apps) >= self._max_applications:
            del self._apps[next(iter(self._apps))]  # the one seen longest ago
        return AppState(application)

    def forget_bodies(self) -> None:
        """A new neuron-monitor process: whatever it sends first is fresh."""
        for state in self._apps.values():
            state.seen = None

    def drain(self) -> BridgeWindow:
        """Hand over every application's window and start the next; departed applications go."""
        states = sorted(self._apps.values(), key=lambda state: (not state.present, state.position))
        system = self._apps.get(SYSTEM)
        system_error = ""
        if system is not None and system.latest is not None and not has_data(system.latest):
            system_error = str(getattr(system.latest, "error", ""))
        window = BridgeWindow(
            fresh=sum(state.fresh for state in states),
            applications=tuple(state.drain() for state in states),
            system_error=system_error,
        )
        for application in [app for app, state in self._apps.items() if not state.present]:
            del self._apps[application]
        return window
