"""The monitor's side of the runtime protocol: fetch a runtime's snapshot within a deadline.

Addresses (`parse_address`):

    unix:/run/neuron.sock, unix:///run/neuron.sock    a unix domain socket
    host:port, dns:///host:port                       TCP (gRPC target syntax)
    sim:, sim:?cores=4&models=2&seed=1                a simulator inside this process, no socket

One `RuntimeEndpoint` serves all metric groups of one runtime: `fetch()` answers from a cache
younger than `max_age_s`, so the groups due at the same collection tick share one snapshot (and
one failure: a hung runtime costs one deadline per tick, not one per group). Every failure is a
`RuntimeEndpointError` whose message names the address and says what went wrong.

On the collector's event loop (`fetch_result()`) a runtime is read over one long-lived
`StreamSnapshots` stream: a request message per tick, one in flight at a time, answered by the
snapshot GetSnapshot would return. That costs gRPC about half the CPU of a unary call. A stream
that fails or misses the deadline is cancelled and the next tick opens another; a runtime that
does not serve the stream (UNIMPLEMENTED: an older runtime; RESOURCE_EXHAUSTED: too many monitors
streaming) is polled with GetSnapshot until its channel is rebuilt.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import parse_qsl

import grpc
import grpc.aio

from otel_neuron.runtime import runtime_pb2
from otel_neuron.runtime.recorder import PROTOCOL_VERSION
from otel_neuron.sources.fetch_loop import FETCH_LOOP

_METHOD = "/otel_neuron.runtime.v1.RuntimeMetrics/GetSnapshot"
_STREAM_METHOD = "/otel_neuron.runtime.v1.RuntimeMetrics/StreamSnapshots"
# The runtime does not serve the stream: an older runtime, or one streaming to too many monitors.
_NO_STREAM = (grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.RESOURCE_EXHAUSTED)
_CHANNEL_OPTIONS = [
    ("grpc.enable_http_proxy", 0),  # a runtime is local; never route it through a proxy
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.max_receive_message_length", 64 << 20),
    # Bandwidth probing pings after every response; a snapshot is a few KB over a local socket, and
    # the probes cost gRPC's threads ~150 us of CPU per call at a 1 s period (bench/bench_monitor.py).
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


T = TypeVar("T")
_REQUEST = runtime_pb2.SnapshotRequest(protocol_version=PROTOCOL_VERSION)


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


class RuntimeEndpoint:
    """Fetches snapshots of one runtime, each within `deadline_s`, cached for `max_age_s`."""

    def __init__(self, address: str, deadline_s: float = 0.5, max_age_s: float | None = None) -> None:
        if not deadline_s > 0:
            raise ValueError(f"deadline must be > 0 seconds, not {deadline_s}")
        self.address = parse_address(address)
        self.deadline_s = deadline_s
        self.max_age_s = min(0.25, deadline_s / 2) if max_age_s is None else max_age_s
        self.last_error = ""
        self._lock = threading.Lock()
        self._cached: runtime_pb2.Snapshot | RuntimeEndpointError | None = None
        self._cached_at = 0.0
        self._handed_over = False  # the cache holds the collector's result for the current tick
        self._channel: grpc.Channel | None = None
        self._call: Any = None
        self._async_channel: grpc.aio.Channel | None = None
        self._async_call: Any = None
        self._async_stream: Any = None  # the StreamSnapshots multi-callable; None: poll with GetSnapshot
        self._stream: Any = None  # the open stream, if any
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

    def hand_over(self, result: object | None) -> None:
        """The collector's result for this tick: every group of this runtime reads it, however long
        their sampling takes; None means the fetch did not finish before the deadline."""
        if not isinstance(result, (runtime_pb2.Snapshot, RuntimeEndpointError)):
            result = RuntimeEndpointError(f"no answer from {self.address.text} within {self.deadline_s:g} s")
        with self._lock:
            self._store(result)
            self._handed_over = True

    def _store(self, result: runtime_pb2.Snapshot | RuntimeEndpointError) -> None:
        self.last_error = str(result) if isinstance(result, RuntimeEndpointError) else ""
        self._cached, self._cached_at = result, time.monotonic()
        self._handed_over = False

    async def _fetch_async(self) -> runtime_pb2.Snapshot:
        path = self.address.socket_path
        if path and not os.path.exists(path):
            await self._drop_async_channel()
            raise RuntimeEndpointError(f"cannot connect to {self.address.text}: no such file")
        deadline = time.monotonic() + self.deadline_s
        if self._async_channel is None:
            self._open_async_channel()
        if self._async_stream is not None:
            snapshot = await self._fetch_streamed(deadline)
            if snapshot is not None:
                return snapshot
        try:
            answer: runtime_pb2.Snapshot | None = await self._async_call(
                _REQUEST, timeout=max(deadline - time.monotonic(), 0.001)
            )
        except grpc.aio.AioRpcError as error:
            # Reconnect afresh next time instead of waiting out gRPC's backoff.
            await self._drop_async_channel()
            raise RuntimeEndpointError(self._describe(error)) from None
        if answer is None:  # grpc.aio's answer to bytes that do not parse
            await self._drop_async_channel()
            raise RuntimeEndpointError(self._garbage())
        return answer

    def _open_async_channel(self) -> None:
        self._async_channel = channel = grpc.aio.insecure_channel(
            self.address.target, options=_CHANNEL_OPTIONS
        )
        self._async_call = channel.unary_unary(
            _METHOD,
            request_serializer=runtime_pb2.SnapshotRequest.SerializeToString,
            response_deserializer=runtime_pb2.Snapshot.FromString,
        )
        self._async_stream = channel.stream_stream(
            _STREAM_METHOD,
            request_serializer=runtime_pb2.SnapshotRequest.SerializeToString,
            response_deserializer=runtime_pb2.Snapshot.FromString,
        )

    async def _fetch_streamed(self, deadline: float) -> runtime_pb2.Snapshot | None:
        """One snapshot over the stream (opened now if needed), or None when the runtime does not
        serve it; raises RuntimeEndpointError. A stream that answered before and fails now broke
        since (the runtime stopped or restarted): it is replaced once, within the same deadline, so
        the error reported is the one a new connection gets, as with GetSnapshot."""
        while True:
            stream, reused = self._stream, self._stream is not None
            if stream is None:
                stream = self._stream = self._async_stream()  # no timeout: it lives across ticks
            try:
                snapshot = await _within(_ask(stream), deadline - time.monotonic())
            except TimeoutError:
                handshake = self._async_channel is not None and self._async_channel.get_state() is (
                    grpc.ChannelConnectivity.READY
                )
                await self._drop_async_channel()
                suffix = "" if handshake else " (no gRPC handshake)"
                raise RuntimeEndpointError(
                    f"no answer from {self.address.text} within {self.deadline_s:g} s{suffix}"
                ) from None
            except asyncio.CancelledError:
                self._cancel_stream()  # the tick's deadline passed: never leave a request unanswered
                raise
            except (grpc.aio.AioRpcError, asyncio.InvalidStateError, EOFError) as error:
                self._cancel_stream()
                code, details = await _status(stream, error)
                if code in _NO_STREAM:
                    self._async_stream = None
                    return None
                if code is grpc.StatusCode.INTERNAL and not reused and "deserializ" not in details.lower():
                    # The server ended a new stream before our request went out (gRPC then says
                    # only "Internal error from Core"): GetSnapshot gets its real answer.
                    return None
                await self._drop_async_channel()
                if reused and deadline > time.monotonic():
                    self._open_async_channel()
                    continue
                raise RuntimeEndpointError(self._describe_status(code, details)) from None
            if snapshot is None:  # grpc.aio's answer to bytes that do not parse
                await self._drop_async_channel()
                raise RuntimeEndpointError(self._garbage())
            return snapshot

    def _cancel_stream(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.cancel()

    async def _drop_async_channel(self) -> None:
        self._cancel_stream()
        channel, self._async_channel, self._async_call, self._async_stream = (
            self._async_channel,
            None,
            None,
            None,
        )
        if channel is not None:
            await channel.close()

    def close(self) -> None:
        with self._lock:
            if self.simulator is not None:
                self.simulator.stop()
            self._drop_channel()
            if self._async_channel is not None:
                try:
                    FETCH_LOOP.submit(self._drop_async_channel()).result(timeout=1.0)
                except Exception:  # noqa: BLE001 - closing is best effort at shutdown
                    pass

    def _fetch(self) -> runtime_pb2.Snapshot:
        if self.simulator is not None:
            self.simulator.start()  # lazily: a configured but never collected runtime costs nothing
            return _checked(self.simulator.snapshot(), self.address.text)
        path = self.address.socket_path
        if path and not os.path.exists(path):
            self._drop_channel()
            raise RuntimeEndpointError(f"cannot connect to {self.address.text}: no such file")
        if self._call is None:
            self._channel = grpc.insecure_channel(self.address.target, options=_CHANNEL_OPTIONS)
            self._call = self._channel.unary_unary(
                _METHOD,
                request_serializer=runtime_pb2.SnapshotRequest.SerializeToString,
                response_deserializer=runtime_pb2.Snapshot.FromString,
            )
        try:
            snapshot = self._call(
                runtime_pb2.SnapshotRequest(protocol_version=PROTOCOL_VERSION),
                timeout=self.deadline_s,
                wait_for_ready=False,
            )
        except grpc.RpcError as error:
            self._drop_channel()  # reconnect afresh next time instead of waiting out gRPC's backoff
            raise RuntimeEndpointError(self._describe(error)) from None
        return _checked(snapshot, self.address.text)

    def _describe(self, error: grpc.RpcError) -> str:
        code = error.code() if hasattr(error, "code") else None
        details = (error.details() if hasattr(error, "details") else "") or ""
        return self._describe_status(code, details)

    def _describe_status(self, code: grpc.StatusCode | None, details: str) -> str:
        where = self.address.text
        lowered = details.lower()
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return f"no answer from {where} within {self.deadline_s:g} s"
        if code == grpc.StatusCode.UNIMPLEMENTED:
            return (
                f"{where} does not serve the otel-neuron runtime protocol v1 (GetSnapshot is unimplemented)"
            )
        if code == grpc.StatusCode.INTERNAL and "deserializ" in lowered:
            return self._garbage()
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

    def _garbage(self) -> str:
        return f"{self.address.text} answered garbage: not an otel_neuron.runtime.v1 snapshot"

    def _drop_channel(self) -> None:
        if self._channel is not None:
            self._channel.close()
        self._channel = None
        self._call = None


async def _ask(stream: Any) -> runtime_pb2.Snapshot | None:
    """Write one request and read its answer: None when it does not parse."""
    await stream.write(_REQUEST)
    snapshot = await stream.read()
    if snapshot is grpc.aio.EOF:
        raise EOFError("the runtime ended the stream")
    return snapshot  # type: ignore[no-any-return]


async def _status(stream: Any, error: BaseException) -> tuple[grpc.StatusCode | None, str]:
    """The status a failed stream ended with."""
    if isinstance(error, grpc.aio.AioRpcError):
        return error.code(), error.details() or ""
    if stream.done():
        return await stream.code(), await stream.details() or ""
    return grpc.StatusCode.UNKNOWN, str(error)


if sys.version_info >= (3, 11):

    async def _within(awaitable: Coroutine[Any, Any, T], seconds: float) -> T:
        async with asyncio.timeout(seconds):  # no task per call, unlike wait_for before 3.12
            return await awaitable

else:

    async def _within(awaitable: Coroutine[Any, Any, T], seconds: float) -> T:
        try:
            return await asyncio.wait_for(awaitable, seconds)
        except asyncio.TimeoutError:
            raise TimeoutError from None


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
