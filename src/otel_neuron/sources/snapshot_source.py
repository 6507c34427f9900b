"""What a runtime group reads one runtime's snapshots from.

Two kinds implement `SnapshotSource`: `RuntimeEndpoint` (sources/runtime_endpoint.py), a runtime
reached over gRPC, its snapshot socket or an embedded simulator, fetched by the monitor's collector
at each tick; and `InProcessEndpoint` (sources/in_process.py), the recorder of the application the
in-app instrumentor runs in, read directly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from otel_neuron.runtime import runtime_pb2
    from otel_neuron.sources.runtime_endpoint import Address


class SnapshotSource(Protocol):
    """One runtime's snapshots, shared by every group of that runtime."""

    address: Address
    last_error: str  # why the last fetch failed, for the report's runtime `error` ("" when it did not)

    def fetch(self) -> runtime_pb2.Snapshot:
        """This collection's snapshot; raises RuntimeEndpointError saying why there is none."""
        ...

    def note_latency_baseline(self, epoch: int) -> None:
        """The group taking latencies now holds the snapshot that closed `epoch`: later snapshots
        carry the latencies since then."""

    def close(self) -> None:
        """Release what the source holds (connections, a simulator, a kept snapshot)."""
