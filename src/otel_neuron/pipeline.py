"""The monitor's data path: groups from the config, a fixed-rate schedule, one MetricsData per tick.

At each tick the groups that are due (whatever their period) are sampled together, turned
into one MetricsData per temporality, and handed to every exporter: one report per instant.
What the groups' sources keep between ticks (the fetch loop their runtimes share, the
neuron-monitor bridges, the procfs files kept open) is made here (`SharedSources`), handed to
them, and released with them (`close_groups`).
"""

from __future__ import annotations

import gc
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from opentelemetry.sdk.metrics.export import AggregationTemporality, MetricExporter, MetricsData
from opentelemetry.sdk.resources import Resource

from otel_neuron.attribution import PodAttribution
from otel_neuron.collection import Collector
from otel_neuron.config import ConfigError, MonitorConfig, RuntimeConfig
from otel_neuron.exporters.temporality import counter_temporality
from otel_neuron.groups.base import MetricGroup
from otel_neuron.groups.system import MemoryInfoGroup, VcpuUsageGroup
from otel_neuron.producer import Collected, CumulativeMetrics, MetricsDataProducer
from otel_neuron.scheduling import FixedRateSchedule
from otel_neuron.sources.fetch_loop import FetchLoop
from otel_neuron.sources.procfs import ProcfsFile, read_cpu_times, read_memory

if TYPE_CHECKING:
    from otel_neuron.sources.kubelet import AllocationRefresher
    from otel_neuron.sources.neuron_monitor_bridge import BridgeRegistry

_logger = logging.getLogger(__name__)

# A runtime collection must end well before the next one is due.
DEADLINE_FRACTION = 0.8
_FINISHED_POLL_S = 0.5


def _vcpu_usage_group() -> MetricGroup:
    return VcpuUsageGroup(partial(read_cpu_times, ProcfsFile("stat")))


def _memory_info_group() -> MetricGroup:
    return MemoryInfoGroup(partial(read_memory, ProcfsFile("meminfo")))


# Each system group with its own procfs file kept open from one period to the next.
SYSTEM_GROUP_FACTORIES: dict[str, Callable[[], MetricGroup]] = {
    "vcpu_usage": _vcpu_usage_group,
    "memory_info": _memory_info_group,
}


@dataclass(frozen=True)
class ScheduledGroup:
    group: MetricGroup
    period: float


class SharedSources:
    """What the groups of several configured runtimes share: one fetch loop for every runtime
    endpoint (one thread, however many runtimes; it starts with the first fetch), and the running
    neuron-monitor bridges (one per source, made when a group first names it). The groups hold what
    they use, and `close_groups` releases it."""

    def __init__(self) -> None:
        self.fetch_loop = FetchLoop()
        self._bridges: BridgeRegistry | None = None

    def bridges(self) -> BridgeRegistry:
        if self._bridges is None:
            from otel_neuron.sources.neuron_monitor_bridge import BridgeRegistry

            self._bridges = BridgeRegistry()
        return self._bridges

    def stream_instance_info(self) -> Mapping[str, str]:
        """A bridged neuron-monitor stream's latest instance_info ({} when no stream gave one)."""
        return self._bridges.instance_info() if self._bridges is not None else {}


def build_groups(
    config: MonitorConfig, bridge_hardware_info: bool = False, shared: SharedSources | None = None
) -> list[ScheduledGroup]:
    """The configured groups; ConfigError naming the runtime's JSON path for a bad address or group.

    `bridge_hardware_info` (the 2.x report asks it) adds, once per neuron-monitor source, a
    neuron_hardware_info group reading the stream's root object, at its runtime's shortest period.
    The system groups the config does not ask for (vcpu_usage, memory_info) are a neuron-monitor
    stream's own, when it carries them (groups.neuron_monitor.BridgeSystemGroup).
    The runtimes' sources share what `shared` holds (None: new ones, for these groups alone)."""
    if not config.system_groups and not any(runtime.groups for runtime in config.runtimes):
        raise ConfigError(f"{config.source}: the configuration enables no metric group")
    scheduled = [ScheduledGroup(SYSTEM_GROUP_FACTORIES[g.type](), g.period) for g in config.system_groups]
    # A neuron-monitor stream's own system groups stand in for those not computed here.
    computed = {g.type for g in config.system_groups}
    stream_system = tuple(key for key in SYSTEM_GROUP_FACTORIES if key not in computed)
    shared = shared if shared is not None else SharedSources()
    for runtime in config.runtimes:
        try:
            scheduled.extend(_runtime_groups(runtime, shared, bridge_hardware_info, stream_system))
        except ValueError as error:
            close_groups(scheduled)
            where = f"neuron_runtimes[{runtime.index}]"
            raise ConfigError(f"{config.source}: {where}.address: {error}") from None
    return scheduled


def close_groups(groups: Sequence[ScheduledGroup]) -> None:
    """Release what the groups' sources hold (sockets, a spawned neuron-monitor, an embedded
    simulator), then the fetch loops their runtimes share."""
    fetch_loops: dict[int, FetchLoop] = {}
    for scheduled in groups:
        transport = scheduled.group.refreshable()
        if transport is not None:
            fetch_loops[id(transport.fetch_loop)] = transport.fetch_loop
        close = getattr(scheduled.group, "close", None)
        if callable(close):
            close()
    for fetch_loop in fetch_loops.values():
        fetch_loop.close()


def _runtime_groups(
    runtime: RuntimeConfig,
    shared: SharedSources,
    bridge_hardware_info: bool = False,
    stream_system_groups: tuple[str, ...] = (),
) -> list[ScheduledGroup]:
    from otel_neuron.groups.runtime import create_runtime_groups
    from otel_neuron.sources.neuron_monitor_address import is_bridge_address
    from otel_neuron.sources.sysfs import SCHEME as SYSFS_SCHEME

    periods = {g.type: g.period for g in runtime.groups}
    deadline = DEADLINE_FRACTION * min(periods.values(), default=1.0)
    types = [g.type for g in runtime.groups]
    if is_bridge_address(runtime.address):
        from otel_neuron.groups.neuron_monitor import create_bridge_groups

        groups = create_bridge_groups(
            runtime.index,
            runtime.address,
            types,
            deadline,
            registry=shared.bridges(),
            periods=periods,
            hardware_info=bridge_hardware_info,
            system_groups=stream_system_groups,
        )
    elif runtime.address.startswith(SYSFS_SCHEME):
        from otel_neuron.groups.sysfs import create_sysfs_groups

        groups = create_sysfs_groups(runtime.index, runtime.address, types, deadline)
    else:
        groups = create_runtime_groups(runtime.index, runtime.address, types, deadline, shared.fetch_loop)
    shortest = min(periods.values(), default=1.0)
    return [ScheduledGroup(group, periods.get(group.report_key, shortest)) for group in groups]


@dataclass
class _Sink:
    exporter: MetricExporter
    cumulative: bool  # wants counters as running totals (else per period)


@dataclass
class PipelineStats:
    ticks: int = 0


class MonitorPipeline:
    def __init__(
        self,
        groups: Sequence[ScheduledGroup],
        exporters: Sequence[MetricExporter],
        resource: Resource | Callable[[], Resource],
        kubernetes: AllocationRefresher | None = None,
    ) -> None:
        """`resource` may be a callable giving the resource as it stands (the instance lookup ends
        after start-up): it is asked at each tick. Each exporter gets counters as it declares
        (`exporters.temporality.counter_temporality`). `kubernetes` (--kubernetes) is then the
        pipeline's: started by `run`, closed by `shutdown`; a tick only takes its latest allocation."""
        if not groups:
            raise ValueError("the configuration enables no metric group")
        self._groups = list(groups)
        self._current_resource = resource if callable(resource) else lambda: resource
        self._resource = self._current_resource()
        # Each collection is built once (delta); exporters that want running totals share one
        # cumulative MetricsData derived from it.
        self._kubernetes = kubernetes
        attribution = PodAttribution(kubernetes) if kubernetes is not None else None
        self._producer = MetricsDataProducer(self._resource, attribution=attribution)
        self._running_totals = CumulativeMetrics(attribution)
        cumulative = AggregationTemporality.CUMULATIVE
        self._sinks = [_Sink(e, counter_temporality(e) is cumulative) for e in exporters]
        self._collector = Collector(max_workers=max(1, min(32, len({g.group.runtime_index for g in groups}))))
        self._due_groups: dict[tuple[float, ...], tuple[MetricGroup, ...]] = {}
        self.stats = PipelineStats()

    def run(self, stop: threading.Event, max_reports: int | None = None) -> None:
        """Collect and export until `stop` is set, the output is closed, or `max_reports` were made."""
        # The baselines are taken as a tick collects (the collector's prime), and the schedule starts
        # when the system groups' are taken, so every first period is the configured one.
        if self._kubernetes is not None:
            self._kubernetes.start()  # its first read runs beside the first period
        periods = {g.period for g in self._groups}
        start = self._collector.prime(self._due(sorted(periods)), DEADLINE_FRACTION * min(periods))
        schedule = FixedRateSchedule(periods, start)
        # A piped stream that ended is noticed within half a second; with no such source the loop
        # sleeps until the next tick (each wake-up of an idle process costs CPU of its own).
        can_finish = self._sources_can_finish()
        longest_wait = _FINISHED_POLL_S if can_finish else math.inf
        while not stop.is_set():
            delay = schedule.next_due() - time.monotonic()
            if delay > 0 and stop.wait(min(delay, longest_wait)):
                break
            if can_finish and self._sources_finished():
                # Report what the stream still held, every group at once, then stop.
                self.tick(sorted({g.period for g in self._groups}))
                break
            due = schedule.pop_due(time.monotonic())
            if not due:
                continue
            self.tick(due, schedule.last_due_at)
            if self.output_closed() or (max_reports is not None and self.stats.ticks >= max_reports):
                break

    def tick(self, due_periods: Sequence[float], scheduled_at: float | None = None) -> None:
        """Collect the groups of `due_periods` and export; `scheduled_at` is the monotonic time the
        tick was due, when it is on the fixed-rate schedule (runtimes' answers are then booked a tick
        ahead), None otherwise."""
        started = time.monotonic()
        deadline_s = DEADLINE_FRACTION * min(due_periods)
        collected = self._collector.collect(self._due(due_periods), deadline_s, scheduled_at)
        self.stats.ticks += 1
        for item in collected:
            if item.sample.error:
                group = item.group
                _logger.info("%s (runtime %s): %s", group.report_key, group.runtime_index, item.sample.error)
        sampled = time.monotonic()
        self._follow_resource()
        produced: dict[bool, MetricsData] = {}
        for sink in self._sinks:
            try:
                sink.exporter.export(self._produce(collected, sink.cumulative, produced))
            except Exception:  # an exporter's failure must not stop the monitor
                _logger.exception("exporter %s failed", type(sink.exporter).__name__)
        if _logger.isEnabledFor(logging.DEBUG):  # its arguments cost more than the check
            _logger.debug(
                "tick %d: %d groups due (periods %s), sampled in %.1f ms, exported in %.1f ms",
                self.stats.ticks,
                len(collected),
                ", ".join(f"{p:g}s" for p in due_periods),
                (sampled - started) * 1e3,
                (time.monotonic() - sampled) * 1e3,
            )

    def _produce(
        self, collected: Sequence[Collected], cumulative: bool, produced: dict[bool, MetricsData]
    ) -> MetricsData:
        """The collection's MetricsData, kept in `produced` for the tick's other exporters: built once,
        with per-period counters, then derived with running totals when an exporter wants those."""
        data = produced.get(cumulative)
        if data is None:
            if cumulative:
                data = self._running_totals.of(self._produce(collected, False, produced))
            else:
                data = self._producer.produce_delta(collected)
            produced[cumulative] = data
        return data

    def _follow_resource(self) -> None:
        resource = self._current_resource()
        if resource is not self._resource:
            self._resource = resource
            self._producer.use_resource(resource)

    def _due(self, due_periods: Sequence[float]) -> tuple[MetricGroup, ...]:
        """The groups of these periods, as one tuple per set of periods (the collector keeps its plan)."""
        key = tuple(due_periods)
        due = self._due_groups.get(key)
        if due is None:
            due = self._due_groups[key] = tuple(g.group for g in self._groups if g.period in due_periods)
        return due

    def _sources_can_finish(self) -> bool:
        return any(g.group.source_can_finish for g in self._groups if g.group.runtime_index is not None)

    def _sources_finished(self) -> bool:
        runtime_groups = [g.group for g in self._groups if g.group.runtime_index is not None]
        return bool(runtime_groups) and all(group.source_finished() for group in runtime_groups)

    def output_closed(self) -> bool:
        return any(getattr(sink.exporter, "closed", False) for sink in self._sinks)

    def shutdown(self) -> None:
        if self._kubernetes is not None:
            self._kubernetes.close()
        self._collector.shutdown()
        for sink in self._sinks:
            try:
                sink.exporter.shutdown(timeout_millis=1_000)
            except Exception:
                _logger.exception("exporter %s failed to shut down", type(sink.exporter).__name__)
        close_groups(self._groups)


def settle_garbage_collector() -> None:
    """For a monitor process, once its pipeline is built and before it runs (it tunes the whole
    process, so the CLI calls it, not the pipeline)."""
    # What exists now (modules, groups, exporters) lives as long as the monitor: keep it out of
    # every future collection, which then only walks the few objects a tick leaves behind.
    gc.collect()
    gc.freeze()
    # A report leaves ~1,200 container objects behind, nearly all freed by reference counting: at
    # the default threshold (700) the young generation is swept about twice a tick for nothing.
    gc.set_threshold(20_000, *gc.get_threshold()[1:])
