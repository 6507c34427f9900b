"""A recorder's counts, one shard per recording thread, and their sum at snapshot time.

Only the owning thread writes to a shard, so threads recording at once never wait for each
other; a snapshot reads every shard (`sum_shards`). When a thread ends its shard goes back to
the recorder (`ShardLease`) and the next new thread continues it.
"""

from __future__ import annotations

from collections import deque
from typing import NamedTuple

from otel_neuron.runtime.latency_epochs import Latencies, Window, add_into
from otel_neuron.semconv import ERROR_TYPES_V2, OUTCOMES


class Shard:
    """One thread's cumulative counts. Only the owning thread writes; snapshot() reads."""

    __slots__ = (
        "outcomes",
        "errors",
        "total_buckets",
        "device_buckets",
        "total_zero",
        "device_zero",
        "latency_count",
        "total_sum",
        "device_sum",
        "busy",
        "flops",
        "window",
        "closed",
    )

    def __init__(self, cores: int) -> None:
        self.outcomes = [0] * len(OUTCOMES)
        self.errors = [0] * len(ERROR_TYPES_V2)
        self.total_buckets: dict[int, int] = {}
        self.device_buckets: dict[int, int] = {}
        self.total_zero = 0
        self.device_zero = 0
        self.latency_count = 0
        self.total_sum = 0.0
        self.device_sum = 0.0
        self.busy = [0.0] * cores
        self.flops = [0.0] * cores
        # The current epoch's window, replaced as a whole so a reader never sees a torn one; None
        # until the first latency. Windows of epochs the thread has left wait in `closed`.
        self.window: Window | None = None
        self.closed: deque[Window] = deque()


class ShardLease:
    """A thread's hold on its shard, kept in the thread's local storage.

    When the thread ends Python frees its local storage, and with it the lease, which hands the
    shard back to the recorder: the next new thread continues it. Its counts are cumulative, so
    they stay counted; and a service that runs each request on a thread of its own keeps as many
    shards as threads ever recorded at once, not one per request.
    """

    __slots__ = ("shard", "free")

    def __init__(self, shard: Shard, free: deque[Shard]) -> None:
        self.shard = shard
        self.free = free

    def __del__(self) -> None:
        self.free.append(self.shard)  # deque.append is atomic: no lock taken while a thread ends


class ShardTotals(NamedTuple):
    """Every shard's counts added up, and the latency windows of the epochs up to the closing one."""

    outcomes: list[int]
    errors: list[int]
    latencies: Latencies
    busy: list[float]
    flops: list[float]
    windows: list[Window]


def sum_shards(shards: list[Shard], cores: int, closing: int) -> ShardTotals:
    """The shards' counts added up; the windows they closed are taken from them (each is handed
    over once), and their current ones of epochs up to `closing` are copied."""
    outcomes = [0] * len(OUTCOMES)
    errors = [0] * len(ERROR_TYPES_V2)
    total_buckets: dict[int, int] = {}
    device_buckets: dict[int, int] = {}
    total_zero = device_zero = count = 0
    total_sum = device_sum = 0.0
    busy = [0.0] * cores
    flops = [0.0] * cores
    windows: list[Window] = []
    for shard in shards:
        for i, value in enumerate(shard.outcomes):
            outcomes[i] += value
        for i, value in enumerate(shard.errors):
            errors[i] += value
        add_into(total_buckets, shard.total_buckets.copy())
        add_into(device_buckets, shard.device_buckets.copy())
        total_zero += shard.total_zero
        device_zero += shard.device_zero
        count += shard.latency_count
        total_sum += shard.total_sum
        device_sum += shard.device_sum
        for core, seconds in enumerate(shard.busy):
            busy[core] += seconds
        for core, done in enumerate(shard.flops):
            flops[core] += done
        while shard.closed:
            windows.append(shard.closed.popleft())
        current = shard.window
        if current is not None and current[0] <= closing:
            windows.append(current)
    latencies = Latencies(
        total_buckets, device_buckets, total_zero, device_zero, count, total_sum, device_sum
    )
    return ShardTotals(outcomes, errors, latencies, busy, flops, windows)
