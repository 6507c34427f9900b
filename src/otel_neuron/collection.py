"""Sample the groups that are due, under a deadline.

Runtime endpoints are fetched concurrently on one event loop, then their groups sample inline;
other runtime-level sources (the bridge, sysfs) run in a worker per runtime so that one that
hangs costs its own groups an error, never the report its deadline.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait

from otel_neuron.groups.base import GroupSample, MetricGroup
from otel_neuron.producer import Collected
from otel_neuron.sources.fetch_loop import FETCH_LOOP

_logger = logging.getLogger(__name__)


class Collector:
    """Samples groups; a runtime that hangs costs its own groups an error, never the report its deadline."""

    def __init__(self, max_workers: int = 16) -> None:
        self._executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="otel-neuron-runtime")
        self._busy: dict[int, Future[list[GroupSample]]] = {}

    def collect(self, groups: Sequence[MetricGroup], deadline_s: float) -> list[Collected]:
        # Runtime endpoints are fetched first, all at once on the fetch loop; their groups then
        # sample from what was fetched (or the error), so they need no worker of their own.
        refreshables = list({id(r): r for g in groups if (r := g.refreshable()) is not None}.values())
        FETCH_LOOP.refresh_all(refreshables, deadline_s)
        local = [g for g in groups if g.runtime_index is None or g.refreshable() is not None]
        by_runtime: dict[int, list[MetricGroup]] = defaultdict(list)
        for group in groups:
            if group.runtime_index is not None and group.refreshable() is None:
                by_runtime[group.runtime_index].append(group)

        futures: dict[int, Future[list[GroupSample]]] = {}
        for index, runtime_groups in by_runtime.items():
            if index in self._busy and not self._busy[index].done():
                continue  # still stuck in the previous collection; reported below
            futures[index] = self._busy[index] = self._executor.submit(_sample_all, runtime_groups)

        collected = [Collected(group, group.sample()) for group in local]
        wait(futures.values(), timeout=deadline_s)
        for index, runtime_groups in by_runtime.items():
            future = futures.get(index)
            if future is not None and future.done() and future.exception() is None:
                collected.extend(Collected(g, s) for g, s in zip(runtime_groups, future.result()))
                continue
            message = f"runtime {index} did not answer within {deadline_s:.3g}s"
            _logger.info("%s", message)
            collected.extend(Collected(g, g.error_sample(message)) for g in runtime_groups)
        return collected

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def _sample_all(groups: Sequence[MetricGroup]) -> list[GroupSample]:
    return [group.sample() for group in groups]
