"""This process as a Neuron runtime: its inference recorder read directly, no socket.

`InProcessEndpoint` is the runtime groups' `SnapshotSource` in-app: `fetch()` is the recorder's
snapshot. One snapshot is shared by every group sampled in the same collection:
`next_collection()` starts a new one, and the first `fetch()` after it takes the snapshot.
"""

from __future__ import annotations

import threading

from otel_neuron.runtime import runtime_pb2
from otel_neuron.runtime.recorder import InferenceRecorder
from otel_neuron.sources.runtime_endpoint import Address
from otel_neuron.sources.snapshot_source import SnapshotSource

IN_PROCESS_ADDRESS = Address("in-process", "in-process")


class InProcessEndpoint(SnapshotSource):
    """A `SnapshotSource` over this process's recorder."""

    def __init__(self, recorder: InferenceRecorder) -> None:
        self.recorder = recorder
        self.address = IN_PROCESS_ADDRESS
        self.last_error = ""
        self._lock = threading.Lock()
        self._snapshot: runtime_pb2.Snapshot | None = None
        self._latency_epoch = 0  # of the groups' baseline: the next snapshot carries the latencies since

    def next_collection(self) -> None:
        """The next `fetch()` takes a new snapshot; the ones after it share it."""
        with self._lock:
            self._snapshot = None

    def fetch(self) -> runtime_pb2.Snapshot:
        """The snapshot of this collection (taken by the first call after `next_collection`)."""
        with self._lock:
            if self._snapshot is None:
                self._snapshot = self.recorder.snapshot(self._latency_epoch)
            return self._snapshot

    def note_latency_baseline(self, epoch: int) -> None:
        """The inference_stats group now holds the snapshot that closed `epoch`."""
        self._latency_epoch = epoch

    def close(self) -> None:
        with self._lock:
            self._snapshot = None
