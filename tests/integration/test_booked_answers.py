"""Booked answers: on a steady schedule the monitor asks each runtime for the next tick's snapshot
right after this tick, so at the next tick the answer is already there and no runtime is woken."""

from __future__ import annotations

import os
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from otel_neuron.runtime import runtime_pb2
from otel_neuron.runtime.recorder import InferenceRecorder
from otel_neuron.runtime.server import serve_runtime_endpoint
from otel_neuron.runtime.snapshot_socket import frame
from otel_neuron.sources.fetch_loop import TickFetch
from otel_neuron.sources.runtime_endpoint import RuntimeEndpoint

PERIOD = 0.3


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    short = Path(f"/tmp/ba-{os.getpid()}-{time.monotonic_ns()}")
    short.mkdir()
    yield short
    for entry in short.iterdir():
        entry.unlink()
    short.rmdir()


class Ticks:
    """Scheduled ticks as the pipeline runs them: fetch at `at`, read, then book the next answer."""

    def __init__(self, endpoint: RuntimeEndpoint) -> None:
        self.endpoint = endpoint
        self.at = time.monotonic()

    def run(self, late_s: float = 0.0) -> tuple[runtime_pb2.Snapshot, int]:
        """One tick `late_s` after its time; its snapshot and the wall-clock ns the tick started."""
        time.sleep(max(0.0, self.at + late_s - time.monotonic()))
        started_ns = time.time_ns()
        fetch = TickFetch([self.endpoint], self.at)
        fetch.finish(time.monotonic() + 2.0)
        snapshot = self.endpoint.fetch()
        self.endpoint.note_latency_baseline(snapshot.epoch)
        fetch.book_next()
        self.at += PERIOD
        return snapshot, started_ns


def test_on_schedule_each_answer_is_taken_just_before_its_tick_and_closes_one_epoch(socket_dir: Path) -> None:
    recorder = InferenceRecorder(cores=2)
    server = serve_runtime_endpoint(recorder, f"unix:{socket_dir}/rt.sock")
    endpoint = RuntimeEndpoint(f"unix:{socket_dir}/rt.sock", deadline_s=0.2, max_age_s=0.0)
    ticks = Ticks(endpoint)
    try:
        for _ in range(3):  # gRPC first, then the socket, then two ticks to learn the interval
            ticks.run()
        previous, _ = ticks.run()
        for completed in range(1, 5):
            for _ in range(completed):
                recorder.record("resnet", "completed", 0.010, 0.008)
            snapshot, started_ns = ticks.run()
            # Booked: taken before the tick started (by about the lead), not when asked at the tick.
            assert snapshot.time_unix_nano < started_ns
            assert started_ns - snapshot.time_unix_nano < 0.1e9
            # One snapshot per tick, and its period histogram is exactly this period's.
            assert snapshot.epoch == previous.epoch + 1
            assert snapshot.period_since_epoch == previous.epoch
            assert snapshot.period_total_latency.count == completed
            assert snapshot.inferences.completed - previous.inferences.completed == completed
            previous = snapshot
    finally:
        endpoint.close()
        server.stop()


def test_a_late_tick_or_a_fetch_off_the_schedule_asks_afresh(socket_dir: Path) -> None:
    recorder = InferenceRecorder(cores=2)
    server = serve_runtime_endpoint(recorder, f"unix:{socket_dir}/rt.sock")
    endpoint = RuntimeEndpoint(f"unix:{socket_dir}/rt.sock", deadline_s=0.2, max_age_s=0.0)
    ticks = Ticks(endpoint)
    try:
        for _ in range(4):
            previous, _ = ticks.run()
        # Late by a third of the period: the booked answer would be that old, so it is dropped.
        snapshot, started_ns = ticks.run(late_s=PERIOD / 3)
        assert snapshot.time_unix_nano > started_ns
        assert snapshot.epoch == previous.epoch + 2  # the booked one (taken early, dropped) and this
        # A fetch off the schedule while an answer is booked: answered now, the booked one dropped.
        time.sleep(0.05)
        asked_ns = time.time_ns()
        (fresh,) = TickFetch([endpoint]).results(time.monotonic() + 2.0)
        assert isinstance(fresh, runtime_pb2.Snapshot)
        assert fresh.time_unix_nano > asked_ns
        assert fresh.epoch == snapshot.epoch + 2
        # And the schedule resumes with booked answers.
        ticks.at = time.monotonic() + PERIOD
        for _ in range(2):
            ticks.run()
        booked, started_ns = ticks.run()
        assert booked.time_unix_nano < started_ns
    finally:
        endpoint.close()
        server.stop()


def test_the_runtime_answers_a_booked_request_early_when_asked_again(socket_dir: Path) -> None:
    server = serve_runtime_endpoint(InferenceRecorder(cores=1), f"unix:{socket_dir}/rt.sock")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.settimeout(2.0)
            client.connect(f"{socket_dir}/rt.sock.snapshot")
            booked = runtime_pb2.SnapshotRequest(protocol_version=1, answer_in_nano=int(60e9))
            client.sendall(frame(booked.SerializeToString()))
            time.sleep(0.1)
            started = time.monotonic()
            client.sendall(frame(runtime_pb2.SnapshotRequest(protocol_version=1).SerializeToString()))
            first, second = read_answer(client), read_answer(client)
            assert time.monotonic() - started < 1.0  # not the booked minute
            assert first.defers_answers and second.epoch == first.epoch + 1
    finally:
        server.stop()


def test_a_monitor_hanging_up_on_a_booked_answer_costs_the_runtime_no_snapshot(socket_dir: Path) -> None:
    recorder = InferenceRecorder(cores=1)
    server = serve_runtime_endpoint(recorder, f"unix:{socket_dir}/rt.sock")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.connect(f"{socket_dir}/rt.sock.snapshot")
            booked = runtime_pb2.SnapshotRequest(protocol_version=1, answer_in_nano=int(60e9))
            client.sendall(frame(booked.SerializeToString()))
            time.sleep(0.1)
        time.sleep(0.2)
        assert recorder.snapshot().epoch == 1  # this is the first snapshot taken: none was for the client
    finally:
        server.stop()


def read_answer(client: socket.socket) -> runtime_pb2.Snapshot:
    def exactly(size: int) -> bytes:
        data = b""
        while len(data) < size:
            part = client.recv(size - len(data))
            assert part, "hung up"
            data += part
        return data

    (length,) = struct.unpack(">I", exactly(4))
    return runtime_pb2.Snapshot.FromString(exactly(length))


class OlderSnapshotSocket:
    """A snapshot socket as runtimes served it before answers could be booked: every request is
    answered at once, and answers do not say defers_answers. Counts the requests."""

    def __init__(self, path: str, recorder: InferenceRecorder) -> None:
        self.requests = 0
        self._recorder = recorder
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(path)
        self._listener.listen()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        try:
            connection, _ = self._listener.accept()
        except OSError:
            return
        with connection:
            while header := connection.recv(4, socket.MSG_WAITALL):
                (length,) = struct.unpack(">I", header)
                request = runtime_pb2.SnapshotRequest.FromString(connection.recv(length, socket.MSG_WAITALL))
                self.requests += 1
                snapshot = self._recorder.snapshot(request.since_epoch)
                snapshot.snapshot_socket = "older"
                connection.sendall(frame(snapshot.SerializeToString()))

    def close(self) -> None:
        self._listener.close()


class AdvertisingOlder:
    """gRPC's answers name a snapshot socket, served by OlderSnapshotSocket."""

    def __init__(self, recorder: InferenceRecorder) -> None:
        self._recorder = recorder

    def snapshot(self, since_epoch: int = 0) -> runtime_pb2.Snapshot:
        snapshot = self._recorder.snapshot(since_epoch)
        snapshot.snapshot_socket = "older"
        return snapshot


def test_a_runtime_that_cannot_defer_answers_is_asked_at_every_tick(socket_dir: Path) -> None:
    recorder = InferenceRecorder(cores=1)
    address = f"unix:{socket_dir}/rt.sock"
    server = serve_runtime_endpoint(AdvertisingOlder(recorder), address, snapshot_socket=False)
    older = OlderSnapshotSocket(f"{socket_dir}/rt.sock.snapshot", recorder)
    endpoint = RuntimeEndpoint(address, deadline_s=0.2, max_age_s=0.0)
    ticks = Ticks(endpoint)
    try:
        for _ in range(2):
            ticks.run()
        assert endpoint.transport == "snapshot socket"
        for _ in range(3):
            snapshot, started_ns = ticks.run()
            assert snapshot.time_unix_nano > started_ns  # taken when asked, at the tick
        # one per tick, all on the socket (there from the start): nothing booked, nothing dropped
        assert older.requests == 5
    finally:
        endpoint.close()
        server.stop()
        older.close()
