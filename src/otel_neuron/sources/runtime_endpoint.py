"""The monitor's side of the runtime protocol: fetch a runtime's snapshot within a deadline.

Addresses (`parse_address`):

    unix:/run/neuron.sock, unix:///run/neuron.sock    a unix domain socket
    host:port, dns:///host:port                       TCP (gRPC target syntax)
    sim:, sim:?cores=4&models=2&seed=1                a simulator inside this process, no socket

One `RuntimeEndpoint` serves all metric groups of one runtime (it is their `SnapshotSource`):
`fetch()` answers from a cache younger than `max_age_s`, so the groups due at the same collection
tick share one snapshot (and one failure: a hung runtime costs one deadline per tick, not one per
group). Every failure is a `RuntimeEndpointError` whose message names the address and says what
went wrong. It is also the collector's `RuntimeTransport`: its gRPC fetches run on the fetch loop
it is given, which the monitor shares between all its runtimes.

A runtime at a `unix:` address that serves a snapshot socket (runtime/snapshot_socket.py) is read
there from its second fetch on, with gRPC's channel closed (sources/snapshot_socket_route.py);
whenever that socket fails the same fetch falls back to gRPC, whose answer (or error) is reported.
"""

from __future__ import annotations

import importlib
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from otel_neuron.runtime import runtime_pb2
from otel_neuron.runtime.protocol import PROTOCOL_VERSION
from otel_neuron.runtime.snapshot_socket import frame
from otel_neuron.sources.fetch_loop import FetchLoop, RuntimeTransport, TickFetch
from otel_neuron.sources.snapshot_socket_route import SnapshotSocketRoute
from otel_neuron.sources.snapshot_source import SnapshotSource

if TYPE_CHECKING:
    import grpc
    import grpc.aio

_METHOD = "/otel_neuron.runtime.v1.RuntimeMetrics/GetSnapshot"
_CHANNEL_OPTIONS = [
    ("grpc.enable_http_proxy", 0),  # a runtime is local; never route it through a proxy
    # A channel of its own connections: a new channel (made after any error) then connects at once,
    # instead of sharing the previous one's connection and waiting out its reconnect backoff, so a
    # restarted runtime is read at the first tick after its socket is back.
    ("grpc.use_local_subchannel_pool", 1),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.max_receive_message_length", 64 << 20),
    # Bandwidth probing pings after every response: a snapshot is a few KB over a local socket, so
    # there is no bandwidth to learn, and the probes cost gRPC's threads CPU at every call.
    ("grpc.http2.bdp_probe", 0),
]
_SIM_OPTIONS = {
    "cores": int,
    "devices": int,
    "models": int,
    "rate": float,
    "error_rate": float,
    "seed": int,
    "churn": float,
    "ecc_per_hour": float,
}


def snapshot_request(since_epoch: int, answer_in_s: float = 0.0) -> runtime_pb2.SnapshotRequest:
    """The request of a monitor whose previous snapshot of the runtime closed `since_epoch` (0: none),
    for an answer taken `answer_in_s` seconds after the runtime reads it (0: at once)."""
    return runtime_pb2.SnapshotRequest(
        protocol_version=PROTOCOL_VERSION, since_epoch=since_epoch, answer_in_nano=int(answer_in_s * 1e9)
    )


# A booked answer (see RuntimeEndpoint.book_socket_answer) is taken this long before the tick it is
# for, at most 5 % of the interval, so it is waiting when the monitor wakes: the report then shows
# the runtime as it was that much earlier, every period alike.
BOOKING_LEAD_S = 0.01
# A tick that starts later than this fraction of the interval after its time asks afresh rather than
# report a booked answer that old.
BOOKED_LATENESS = 0.05


class RuntimeEndpointError(Exception):
    """A runtime could not be read; the message is meant for the report's `error` field."""


@dataclass(frozen=True)
class Address:
    text: str  # as configured
    kind: str  # "unix", "tcp" or "sim"
    target: str = ""  # gRPC target
    socket_path: str = ""  # for unix
    sim_options: dict[str, Any] = field(default_factory=dict)


def parse_address(address: str) -> Address:
    """Check a runtime address; raises ValueError with a one-line reason."""
    text = address.strip()
    if text == "sim:" or text.startswith("sim:?") or text == "sim":
        query = text.partition("?")[2]
        options: dict[str, Any] = {}
        for key, value in parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)):
            name = key.replace("-", "_")
            if name not in _SIM_OPTIONS:
                raise ValueError(
                    f"{address!r}: unknown simulator option {key!r} (known: {', '.join(_SIM_OPTIONS)})"
                )
            try:
                options[name] = _SIM_OPTIONS[name](value)
            except ValueError:
                raise ValueError(f"{address!r}: simulator option {key}={value!r} is not a number") from None
        return Address(text, "sim", sim_options=options)
    if text.startswith("unix:"):
        path = text[len("unix://") :] if text.startswith("unix://") else text[len("unix:") :]
        if not path:
            raise ValueError(f"{address!r} has no socket path (like unix:/run/neuron.sock)")
        return Address(text, "unix", target=text, socket_path=path)
    if text.startswith("dns:"):
        rest = text[len("dns:") :].lstrip("/")
        if not _has_port(rest):
            raise ValueError(f"{address!r} is not like dns:///host:port")
        return Address(text, "tcp", target=text)
    if "://" not in text and _has_port(text):
        return Address(text, "tcp", target=text)
    raise ValueError(
        f"{address!r} is not a runtime address "
        "(unix:/path, unix:///abs/path, host:port, dns:///host:port, sim:, neuron-monitor:, stdin:, sysfs:)"
    )


def _has_port(hostport: str) -> bool:
    host, _, port = hostport.rpartition(":")
    return bool(host) and port.isdigit() and 0 < int(port) < 65536


class RuntimeEndpoint(SnapshotSource, RuntimeTransport):
    """Fetches snapshots of one runtime, each within `deadline_s`, cached for `max_age_s`.

    `fetch_loop`: the loop its gRPC fetches run on (None: one of its own, stopped by `close()`)."""

    def __init__(
        self,
        address: str,
        deadline_s: float = 0.5,
        max_age_s: float | None = None,
        fetch_loop: FetchLoop | None = None,
    ) -> None:
        if not deadline_s > 0:
            raise ValueError(f"deadline must be > 0 seconds, not {deadline_s}")
        self.address = parse_address(address)
        self.fetch_loop = fetch_loop if fetch_loop is not None else FetchLoop()
        self._owns_fetch_loop = fetch_loop is None
        self.deadline_s = deadline_s
        self.max_age_s = min(0.25, deadline_s / 2) if max_age_s is None else max_age_s
        self.last_error = ""
        self._lock = threading.Lock()
        self._cached: runtime_pb2.Snapshot | RuntimeEndpointError | None = None
        self._cached_at = 0.0
        self._handed_over = False  # the cache holds the collector's result for the current tick
        # The epoch whose latencies the groups have seen: asking for those since spares them
        # subtracting cumulative histograms (the runtime's period_* fields). The last snapshot's,
        # unless a group taking latencies keeps an older baseline (a longer period than the others').
        self._last_epoch = 0
        self._latency_epoch: int | None = None
        self._async_channel: grpc.aio.Channel | None = None
        self._async_call: Any = None
        self._socket_route = (
            SnapshotSocketRoute(self.address.socket_path, self.address.text)
            if self.address.kind == "unix"
            else None
        )
        if self.address.kind != "sim" and not (self._socket_route is not None and self._socket_route.exists):
            # gRPC is loaded for a runtime that needs it, and now: imported at the first gRPC fetch,
            # it would hold the fetch loop, and the other runtimes' fetches on it, while it loads.
            # A runtime serving a snapshot socket is read there: gRPC loads only if that ever fails.
            importlib.import_module("grpc.aio")
        # The scheduled times of this tick and the previous one; the tick an answer is booked for and
        # the latest it may start and still use it.
        self._tick_at: float | None = None
        self._previous_tick_at: float | None = None
        self._booked: tuple[float, float] | None = None
        self._defers_answers = False  # the last answer said the runtime honors answer_in_nano
        self.simulator: Any = None
        if self.address.kind == "sim":
            from otel_neuron.runtime.simulator import Simulator, SimulatorOptions

            options = dict(self.address.sim_options)
            renamed = {"churn": "churn_s"}
            try:
                simulator_options = SimulatorOptions(**{renamed.get(k, k): v for k, v in options.items()})
                self.simulator = Simulator(simulator_options)
            except ValueError as error:
                raise ValueError(f"{address!r}: {error}") from None

    def fetch(self) -> runtime_pb2.Snapshot:
        """This tick's snapshot as the collector handed it over, else one fetched now (shared with
        other callers within max_age_s); raises RuntimeEndpointError."""
        with self._lock:
            now = time.monotonic()
            if self._cached is not None and (self._handed_over or now - self._cached_at < self.max_age_s):
                result = self._cached
            else:
                try:
                    result = self._fetch()
                except RuntimeEndpointError as error:
                    result = error
                self._store(result)
        if isinstance(result, RuntimeEndpointError):
            raise result
        return result

    async def fetch_result(self) -> runtime_pb2.Snapshot | RuntimeEndpointError:
        """Fetch on the collector's event loop, concurrently with other runtimes."""
        try:
            if self.simulator is not None:
                return self._fetch()
            return _checked(await self._fetch_async(), self.address.text)
        except RuntimeEndpointError as error:
            return error

    def note_latency_baseline(self, epoch: int) -> None:
        """A group computing latencies from this runtime's snapshots now holds the one that closed
        `epoch`: later requests ask for the latencies since then."""
        self._latency_epoch = epoch

    @property
    def since_epoch(self) -> int:
        """What the next request names as `since_epoch`."""
        return self._last_epoch if self._latency_epoch is None else self._latency_epoch

    def hand_over(self, result: object | None) -> None:
        """The collector's result for this tick: every group of this runtime reads it, however long
        their sampling takes; None means the fetch did not finish before the deadline."""
        if not isinstance(result, (runtime_pb2.Snapshot, RuntimeEndpointError)):
            result = RuntimeEndpointError(f"no answer from {self.address.text} within {self.deadline_s:g} s")
        with self._lock:
            self._store(result)
            self._handed_over = True

    def _store(self, result: runtime_pb2.Snapshot | RuntimeEndpointError) -> None:
        if isinstance(result, RuntimeEndpointError):
            self.last_error = str(result)
        else:
            self.last_error = ""
            self._last_epoch = result.epoch
            self._defers_answers = result.defers_answers
        self._cached, self._cached_at = result, time.monotonic()
        self._handed_over = False

    @property
    def transport(self) -> str:
        """How the next fetch will go: "snapshot socket", "grpc" or "simulator"."""
        if self.simulator is not None:
            return "simulator"
        return "snapshot socket" if self._socket_route is not None and self._socket_route.active else "grpc"

    def send_socket_request(self, at: float | None = None) -> socket.socket | None:
        """Send this tick's request on the runtime's snapshot socket (None: fetch over gRPC). `at`:
        the monotonic time the tick was scheduled for (None: a fetch off the schedule). When the
        answer for that tick was booked, nothing is sent: the socket to wait on is returned."""
        if self._socket_route is None:
            return None
        if not self._socket_route.connect_direct():
            return None
        booked, self._booked = self._booked, None
        self._previous_tick_at, self._tick_at = self._tick_at, at
        if (
            at is not None
            and booked is not None
            and abs(at - booked[0]) < 1e-3
            and time.monotonic() <= booked[1]
        ):
            waiting_on = self._socket_route.booked()
            if waiting_on is not None:
                return waiting_on
        return self._socket_route.send(frame(snapshot_request(self.since_epoch).SerializeToString()))

    def book_socket_answer(self) -> None:
        """After this tick's groups have sampled: ask the runtime now for the answer of the next tick,
        taken just before it, when the ticks come at a steady interval and the runtime defers answers.
        At that tick the answer is then waiting: the monitor sends nothing and wakes no runtime
        (what that saves: docs/architecture.md, Cost)."""
        at, previous = self._tick_at, self._previous_tick_at
        if self._socket_route is None or at is None or previous is None or not self._defers_answers:
            return
        if self.last_error:
            return
        interval = at - previous
        answer_in = at + interval - min(BOOKING_LEAD_S, 0.05 * interval) - time.monotonic()
        if interval <= 0 or answer_in <= 0:
            return
        request = snapshot_request(self.since_epoch, answer_in).SerializeToString()
        if self._socket_route.book(frame(request)):
            self._booked = (at + interval, at + interval * (1 + BOOKED_LATENESS))

    def read_socket_answer(self) -> runtime_pb2.Snapshot | RuntimeEndpointError | None:
        """The checked snapshot once whole, None while more is due; OSError when the socket failed."""
        if self._socket_route is None:
            raise ConnectionResetError(f"{self.address.text}: no snapshot socket")
        snapshot = self._socket_route.read()
        if snapshot is None:
            return None
        try:
            return _checked(snapshot, self.address.text)
        except RuntimeEndpointError as error:
            return error

    async def _fetch_async(self) -> runtime_pb2.Snapshot:
        path = self.address.socket_path
        if path and not os.path.exists(path):
            await self._drop_async_channel()
            if self._socket_route is not None:
                self._socket_route.close()
            raise RuntimeEndpointError(f"cannot connect to {self.address.text}: no such file")
        snapshot = await self._fetch_grpc()
        if self._socket_route is not None and self._socket_route.adopt(snapshot):
            await self._drop_async_channel()  # idle until the socket fails: no gRPC threads at work
        return snapshot

    async def _fetch_grpc(self) -> runtime_pb2.Snapshot:
        import grpc.aio  # loaded by __init__: a monitor of simulators, sysfs or neuron-monitor never is

        if self._async_call is None:
            self._async_channel = grpc.aio.insecure_channel(self.address.target, options=_CHANNEL_OPTIONS)
            self._async_call = self._async_channel.unary_unary(
                _METHOD,
                request_serializer=runtime_pb2.SnapshotRequest.SerializeToString,
                response_deserializer=runtime_pb2.Snapshot.FromString,
            )
        try:
            snapshot: runtime_pb2.Snapshot | None = await self._async_call(
                snapshot_request(self.since_epoch), timeout=self.deadline_s
            )
        except grpc.aio.AioRpcError as error:
            # Reconnect afresh next time instead of waiting out gRPC's backoff.
            await self._drop_async_channel()
            raise RuntimeEndpointError(self._describe(error)) from None
        if snapshot is None:  # grpc.aio's answer when the bytes do not parse as a Snapshot
            raise RuntimeEndpointError(
                f"{self.address.text} answered garbage: not an otel_neuron.runtime.v1 snapshot"
            )
        return snapshot

    async def _drop_async_channel(self) -> None:
        channel, self._async_channel, self._async_call = self._async_channel, None, None
        if channel is not None:
            await channel.close()

    def close(self) -> None:
        with self._lock:
            if self.simulator is not None:
                self.simulator.stop()
            if self._socket_route is not None:
                self._socket_route.close()
            if self._async_channel is not None:
                try:  # the channel belongs to the fetch loop: close it there
                    self.fetch_loop.submit(self._drop_async_channel()).result(timeout=1.0)
                except Exception:  # noqa: BLE001 - closing is best effort at shutdown
                    pass
            if self._owns_fetch_loop:
                self.fetch_loop.close()

    def _fetch(self) -> runtime_pb2.Snapshot:
        """One snapshot now, for a caller outside the collector's tick (the start-up baseline), the
        way the collector fetches it (same connections)."""
        if self.simulator is not None:
            self.simulator.start()  # lazily: a configured but never collected runtime costs nothing
            return _checked(self.simulator.snapshot(self.since_epoch), self.address.text)
        (result,) = TickFetch([self]).results(time.monotonic() + self.deadline_s)
        if isinstance(result, runtime_pb2.Snapshot):
            return result
        if isinstance(result, RuntimeEndpointError):
            raise result
        raise RuntimeEndpointError(f"no answer from {self.address.text} within {self.deadline_s:g} s")

    def _describe(self, error: grpc.RpcError) -> str:
        import grpc

        code = error.code() if hasattr(error, "code") else None
        details = (error.details() if hasattr(error, "details") else "") or ""
        where = self.address.text
        lowered = details.lower()
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return f"no answer from {where} within {self.deadline_s:g} s"
        if code == grpc.StatusCode.UNIMPLEMENTED:
            return (
                f"{where} does not serve the otel-neuron runtime protocol v1 (GetSnapshot is unimplemented)"
            )
        if code == grpc.StatusCode.INTERNAL and "deserializ" in lowered:
            return f"{where} answered garbage: not an otel_neuron.runtime.v1 snapshot"
        if code == grpc.StatusCode.UNAVAILABLE:
            reason = _connect_reason(details)
            lowered = reason.lower()
            if "connection refused" in lowered or "connect failed" in lowered:
                return f"cannot connect to {where}: connection refused"
            if "no such file" in lowered:
                return f"cannot connect to {where}: no such file"
            if "permission denied" in lowered:
                return f"cannot connect to {where}: permission denied"
            if "timed out" in lowered or "deadline" in lowered:
                return f"no answer from {where} within {self.deadline_s:g} s (no gRPC handshake)"
            return (
                f"cannot talk to {where}: {reason or 'unavailable'} (is it an otel-neuron runtime endpoint?)"
            )
        name = code.name.lower() if code is not None else "error"
        return f"{where}: {name}: {_first_line(details)}"


def _checked(snapshot: runtime_pb2.Snapshot, where: str) -> runtime_pb2.Snapshot:
    if snapshot.protocol_version == 0:
        raise RuntimeEndpointError(
            f"{where} answered garbage: no protocol version (not an otel-neuron runtime)"
        )
    if snapshot.protocol_version != PROTOCOL_VERSION:
        raise RuntimeEndpointError(
            f"{where} speaks runtime protocol version {snapshot.protocol_version}; "
            f"this monitor speaks {PROTOCOL_VERSION}"
        )
    return snapshot


def _connect_reason(details: str) -> str:
    """gRPC's "failed to connect to all addresses; last error: UNKNOWN: unix:/x: reason" -> reason."""
    reason = _first_line(details)
    for prefix in ("failed to connect to all addresses; last error: ", "UNKNOWN: ", "UNAVAILABLE: "):
        if reason.startswith(prefix):
            reason = reason[len(prefix) :]
    head, separator, tail = reason.rpartition(": ")
    if separator and (head.startswith(("unix:", "ipv4:", "ipv6:", "dns:")) or head.count(":") == 1):
        reason = tail
    return reason


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""
