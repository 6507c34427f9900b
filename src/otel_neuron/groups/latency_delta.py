"""A period's latency histogram from two runtime snapshots, for inference_stats.

The runtime hands over the period's histograms itself when asked since the previous snapshot's
epoch (`period_histogram`); otherwise the period's buckets are the bucket-wise increase between
the two snapshots' cumulative histograms, with the exact min/max of the period from the
snapshot's latency windows (`histogram_delta`).
"""

from __future__ import annotations

from dataclasses import dataclass

from otel_neuron.groups.base import HistogramDelta
from otel_neuron.histogram import Buckets, as_buckets, bounds_from_buckets, subtract_buckets
from otel_neuron.runtime import runtime_pb2


def period_histogram(period: runtime_pb2.LatencyHistogram) -> HistogramDelta | None:
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


class BucketArrays:
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


def histogram_delta(
    current: runtime_pb2.Snapshot,
    previous: runtime_pb2.Snapshot | None,
    field: str,
    windows: PeriodWindows,
    lists: BucketArrays,
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


class PeriodWindows:
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
