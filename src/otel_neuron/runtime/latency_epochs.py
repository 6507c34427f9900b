"""Latency epochs: what a recorder keeps so that each monitor gets the latencies of its own period.

Every snapshot closes one epoch. A thread keeps the min/max of the latencies it records in the
current epoch as a `Window`; a snapshot merges the windows closed so far (`LatencyEpochs.close`)
and keeps those of the newest WINDOWS_KEPT epochs, so a monitor learns its period's exact min/max
from the windows after the epoch its previous snapshot closed. The histograms of the newest
PERIODS_KEPT epochs are kept too: a monitor naming that epoch is handed its period's histograms
(Snapshot.period_*) rather than subtracting cumulative ones; one asking about an older epoch
subtracts them.
"""

from __future__ import annotations

from typing import NamedTuple

from otel_neuron.histogram import SCALE, bounds_from_buckets, dense_buckets
from otel_neuron.runtime import runtime_pb2

WINDOWS_KEPT = 256  # latency min/max epochs retained: enough for 256 monitors polling each period
PERIODS_KEPT = 32  # epochs whose histograms are retained (a few KB each): enough for 32 monitors

# The min/max of one epoch's latencies: (epoch, total min, total max, device min, device max).
Window = tuple[int, float, float, float, float]
# The same over several epochs, without the epoch: [total min, total max, device min, device max].
Bounds = list[float]


class Latencies(NamedTuple):
    """Both latency histograms' counts (cumulative, or of some epochs), as the shards keep them."""

    total_buckets: dict[int, int]
    device_buckets: dict[int, int]
    total_zero: int
    device_zero: int
    latency_count: int
    total_sum: float
    device_sum: float


NO_LATENCIES = Latencies({}, {}, 0, 0, 0, 0.0, 0.0)


class ClosedEpoch(NamedTuple):
    """What a snapshot reports of the epoch it closed."""

    epoch: int
    oldest_epoch: int  # the oldest epoch whose window is still kept
    windows: list[runtime_pb2.LatencyWindow]  # those after the epoch the caller named
    lifetime: Bounds | None  # min/max since start (None: no latency yet)
    period: Latencies | None  # the latencies since the epoch the caller named, while held
    period_bounds: Bounds | None  # their min/max


class LatencyEpochs:
    """A recorder's windows and per-epoch histograms; its snapshot lock guards every call."""

    def __init__(self) -> None:
        self._windows: dict[int, Bounds] = {}  # epoch -> [total min, max, device min, max]
        self._lifetime: Bounds | None = None  # the same since start
        self._totals = NO_LATENCIES  # cumulative latencies at the last snapshot
        self._held: dict[int, Latencies] = {}  # epoch -> the latencies recorded in it

    def close(self, closing: int, windows: list[Window], totals: Latencies, since_epoch: int) -> ClosedEpoch:
        """Close epoch `closing`: merge the threads' `windows`, keep what `totals` (cumulative) added
        in it, and give what a caller whose previous snapshot closed `since_epoch` is told."""
        kept = self._windows
        for window in windows:
            _merge_window(kept, window)
        oldest = max(1, closing - WINDOWS_KEPT + 1)
        for epoch in [epoch for epoch in kept if epoch < oldest]:
            del kept[epoch]
        messages = [
            runtime_pb2.LatencyWindow(
                epoch=epoch, total_min=w[0], total_max=w[1], device_min=w[2], device_max=w[3]
            )
            for epoch, w in sorted(kept.items())
            if since_epoch < epoch <= closing  # a caller needs none it has seen already
        ]
        lifetime = self._lifetime
        for epoch_bounds in kept.values():
            if lifetime is None:
                lifetime = self._lifetime = list(epoch_bounds)
            else:
                lifetime[0] = min(lifetime[0], epoch_bounds[0])
                lifetime[1] = max(lifetime[1], epoch_bounds[1])
                lifetime[2] = min(lifetime[2], epoch_bounds[2])
                lifetime[3] = max(lifetime[3], epoch_bounds[3])
        period = self._period_latencies(closing, totals, since_epoch)
        period_bounds = _period_bounds(kept, since_epoch, closing) if period is not None else None
        lifetime_now = list(lifetime) if lifetime is not None else None  # this snapshot's, not the next's
        return ClosedEpoch(closing, oldest, messages, lifetime_now, period, period_bounds)

    def _period_latencies(self, closing: int, totals: Latencies, since_epoch: int) -> Latencies | None:
        """Keep what epoch `closing` recorded; the latencies of epochs (since_epoch, closing], or None
        when one of them is no longer held (or was never asked for)."""
        held = self._held
        held[closing] = _difference(totals, self._totals)
        self._totals = totals
        held.pop(closing - PERIODS_KEPT, None)  # one epoch closes per snapshot: one leaves
        if not 0 < since_epoch < closing or since_epoch + 1 not in held:
            return None
        return _sum_of([held[epoch] for epoch in range(since_epoch + 1, closing + 1)])


def fill_latencies(
    snapshot: runtime_pb2.Snapshot, totals: Latencies, closed: ClosedEpoch, since_epoch: int
) -> None:
    """The snapshot's cumulative latency histograms and, while the caller's period is held, its own."""
    for message, buckets, zero_count, total, column in (
        (snapshot.total_latency, totals.total_buckets, totals.total_zero, totals.total_sum, 0),
        (snapshot.device_latency, totals.device_buckets, totals.device_zero, totals.device_sum, 2),
    ):
        _fill_buckets(message, buckets, zero_count, totals.latency_count, total)
        if closed.lifetime is not None:
            message.min = closed.lifetime[column]
            message.max = closed.lifetime[column + 1]
    if closed.period is not None:
        snapshot.period_since_epoch = since_epoch
        _fill_period_histograms(snapshot, closed.period, closed.period_bounds)


def _fill_period_histograms(snapshot: runtime_pb2.Snapshot, period: Latencies, bounds: Bounds | None) -> None:
    for message, buckets, zero_count, total, column in (
        (snapshot.period_total_latency, period.total_buckets, period.total_zero, period.total_sum, 0),
        (snapshot.period_device_latency, period.device_buckets, period.device_zero, period.device_sum, 2),
    ):
        offset, dense = _fill_buckets(message, buckets, zero_count, period.latency_count, total)
        if period.latency_count <= 0:
            continue
        if bounds is not None:
            message.min, message.max = bounds[column], bounds[column + 1]
        else:  # a latency recorded as its epoch closed: its window went to the epoch before
            lifetime = (snapshot.total_latency, snapshot.device_latency)[column // 2]
            message.min, message.max = bounds_from_buckets(
                offset, dense, SCALE, zero_count, lifetime.min, lifetime.max
            )


def _fill_buckets(
    message: runtime_pb2.LatencyHistogram, buckets: dict[int, int], zero_count: int, count: int, total: float
) -> tuple[int, list[int]]:
    """A histogram message's buckets, count and sum; its (offset, dense bucket counts)."""
    offset, dense = dense_buckets(buckets)
    message.scale = SCALE
    message.zero_count = zero_count
    message.offset = offset
    message.bucket_counts.extend(dense)
    message.count = count
    message.sum = total
    return offset, dense


def _merge_window(windows: dict[int, Bounds], window: Window) -> None:
    epoch = window[0]
    known = windows.get(epoch)
    if known is None:
        windows[epoch] = [window[1], window[2], window[3], window[4]]
    else:
        known[0] = min(known[0], window[1])
        known[1] = max(known[1], window[2])
        known[2] = min(known[2], window[3])
        known[3] = max(known[3], window[4])


def _period_bounds(windows: dict[int, Bounds], since_epoch: int, closing: int) -> Bounds | None:
    """[total min, max, device min, max] over the windows of epochs (since_epoch, closing]."""
    bounds: Bounds | None = None
    for epoch in range(since_epoch + 1, closing + 1):
        window = windows.get(epoch)
        if window is None:
            continue
        if bounds is None:
            bounds = list(window)
        else:
            bounds = [
                min(bounds[0], window[0]),
                max(bounds[1], window[1]),
                min(bounds[2], window[2]),
                max(bounds[3], window[3]),
            ]
    return bounds


def add_into(target: dict[int, int], source: dict[int, int]) -> None:
    """Add sparse bucket counts to `target`."""
    for index, count in source.items():
        target[index] = target.get(index, 0) + count


def _difference(now: Latencies, before: Latencies) -> Latencies:
    """What was recorded between two cumulative states (a bucket only where it grew)."""
    return Latencies(
        _bucket_difference(now.total_buckets, before.total_buckets),
        _bucket_difference(now.device_buckets, before.device_buckets),
        now.total_zero - before.total_zero,
        now.device_zero - before.device_zero,
        now.latency_count - before.latency_count,
        now.total_sum - before.total_sum,
        now.device_sum - before.device_sum,
    )


def _bucket_difference(now: dict[int, int], before: dict[int, int]) -> dict[int, int]:
    return {index: grown for index, count in now.items() if (grown := count - before.get(index, 0))}


def _sum_of(periods: list[Latencies]) -> Latencies:
    if len(periods) == 1:
        return periods[0]
    total: dict[int, int] = {}
    device: dict[int, int] = {}
    for period in periods:
        add_into(total, period.total_buckets)
        add_into(device, period.device_buckets)
    return Latencies(
        total,
        device,
        sum(period.total_zero for period in periods),
        sum(period.device_zero for period in periods),
        sum(period.latency_count for period in periods),
        sum(period.total_sum for period in periods),
        sum(period.device_sum for period in periods),
    )
