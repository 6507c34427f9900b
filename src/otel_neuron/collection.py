"""Sample the groups that are due, all under one deadline.

Runtime endpoints are fetched concurrently (sources/fetch_loop.py) while the system groups are
sampled here; each runtime's groups then sample from what was handed over (or its error) as soon
as its answer is in, so a slow or hung runtime never moves another's collection. Other runtime-level
sources (the bridge, sysfs) run in a worker per runtime. Whatever hangs costs its own groups an
error: the system groups are sampled on time and the report leaves by the deadline.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import NamedTuple

from otel_neuron.groups.base import GroupSample, MetricGroup
from otel_neuron.producer import Collected
from otel_neuron.sources.fetch_loop import RuntimeTransport, TickFetch

_logger = logging.getLogger(__name__)


class _Plan(NamedTuple):
    """How one set of due groups is collected: worked out once, since the same sets recur every tick."""

    system: list[MetricGroup]  # sampled in the collector's thread
    sources: list[RuntimeTransport]  # the fetched groups' sources, each once
    fetched: list[list[MetricGroup]]  # the groups of each source, sampled once its fetch is handed over
    by_runtime: dict[int, list[MetricGroup]]  # the other runtime groups, sampled in a worker per runtime


def _plan(groups: Sequence[MetricGroup]) -> _Plan:
    system = [g for g in groups if g.runtime_index is None]
    fetched: dict[int, tuple[RuntimeTransport, list[MetricGroup]]] = {}
    by_runtime: dict[int, list[MetricGroup]] = defaultdict(list)
    for group in groups:
        if group.runtime_index is None:
            continue
        source = group.refreshable()
        if source is None:
            by_runtime[group.runtime_index].append(group)
        else:
            fetched.setdefault(id(source), (source, []))[1].append(group)
    sources = [source for source, _ in fetched.values()]
    return _Plan(system, sources, [of_source for _, of_source in fetched.values()], dict(by_runtime))


class Collector:
    def __init__(self, max_workers: int = 16) -> None:
        self._executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="otel-neuron-runtime")
        self._busy: dict[int, Future[list[GroupSample]]] = {}
        self._plans: dict[int, tuple[Sequence[MetricGroup], _Plan]] = {}

    def collect(
        self, groups: Sequence[MetricGroup], deadline_s: float, at: float | None = None
    ) -> list[Collected]:
        """Sample `groups`; a tuple of groups (the pipeline passes the same one for the same due
        periods) has its plan kept, any other sequence is planned afresh. `at`: the monotonic time
        the tick was scheduled for, which lets runtimes' answers be booked a tick ahead (None: not)."""
        deadline = time.monotonic() + deadline_s
        plan = self._plan_of(groups)
        by_runtime = plan.by_runtime
        futures: dict[int, Future[list[GroupSample]]] = {}
        for index, runtime_groups in by_runtime.items():
            if index in self._busy and not self._busy[index].done():
                continue  # still stuck in the previous collection; reported below
            futures[index] = self._busy[index] = self._executor.submit(_sample_all, runtime_groups)
        tick = TickFetch(plan.sources, at)

        collected = [Collected(group, group.sample()) for group in plan.system]
        # Each runtime's groups sample as soon as its answer is in, so its period is its own,
        # whatever another runtime takes; the report keeps the plan's order.
        fetched: list[list[Collected]] = [[] for _ in plan.sources]
        for arrived in tick.hand_over_as_answered(deadline):
            for number in arrived:
                fetched[number] = [Collected(group, group.sample()) for group in plan.fetched[number]]
        for of_source in fetched:
            collected.extend(of_source)
        if at is not None:
            tick.book_next()
        if futures:
            wait(futures.values(), timeout=max(deadline - time.monotonic(), 0.0))
        for index, runtime_groups in by_runtime.items():
            future = futures.get(index)
            if future is not None and future.done() and future.exception() is None:
                collected.extend(Collected(g, s) for g, s in zip(runtime_groups, future.result()))
                continue
            message = f"runtime {index} did not answer within {deadline_s:.3g}s"
            _logger.info("%s", message)
            collected.extend(Collected(g, g.error_sample(message)) for g in runtime_groups)
        return collected

    def prime(self, groups: Sequence[MetricGroup], deadline_s: float) -> float:
        """Take every group's baseline the way a tick collects, and return the monotonic time the
        schedule starts from: the system groups' baselines are taken while the runtimes are fetched,
        and each runtime's once its answer is in, so a slow or hung runtime (its groups then start
        with an error) delays neither the others' baselines nor their first period."""
        plan = _plan(groups)
        for runtime_groups in plan.by_runtime.values():  # a source of their own, each read in turn
            for group in runtime_groups:
                group.prime()
        deadline = time.monotonic() + deadline_s
        tick = TickFetch(plan.sources)
        for group in plan.system:
            group.prime()
        start = time.monotonic()
        for arrived in tick.hand_over_as_answered(deadline):
            for number in arrived:
                for group in plan.fetched[number]:
                    group.prime()
        return start

    def _plan_of(self, groups: Sequence[MetricGroup]) -> _Plan:
        if type(groups) is not tuple:
            return _plan(groups)
        kept = self._plans.get(id(groups))
        if kept is None or kept[0] is not groups:
            if len(self._plans) >= 64:  # a caller passing new tuples: plan afresh rather than grow
                self._plans.clear()
            kept = self._plans[id(groups)] = (groups, _plan(groups))  # the tuple kept: its id stays its own
        return kept[1]

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def _sample_all(groups: Sequence[MetricGroup]) -> list[GroupSample]:
    return [group.sample() for group in groups]
