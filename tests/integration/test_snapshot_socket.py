"""The snapshot socket: a local runtime is read without gRPC, and any failure of it falls back to gRPC."""

from __future__ import annotations

import os
import signal
import socket
import stat
import struct
import subprocess
import sys
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
from otel_neuron.sources.runtime_endpoint import RuntimeEndpoint, RuntimeEndpointError


@pytest.fixture
def socket_dir(tmp_path: Path) -> Iterator[Path]:
    short = Path(f"/tmp/ss-{os.getpid()}-{time.monotonic_ns()}")
    short.mkdir()
    yield short
    for entry in short.iterdir():
        entry.unlink()
    short.rmdir()


def wait_until_stopped(pid: int) -> None:
    """SIGSTOP is asynchronous: wait until the process is in state T."""
    deadline = time.monotonic() + 5.0
    while Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "T":
        assert time.monotonic() < deadline, "the process did not stop"
        time.sleep(0.01)


def recorded(completed: int) -> InferenceRecorder:
    recorder = InferenceRecorder(cores=2)
    for _ in range(completed):
        recorder.record("resnet", "completed", 0.010, 0.008)
    return recorder


def test_a_local_runtime_is_read_on_its_snapshot_socket_after_the_first_grpc_answer(socket_dir: Path) -> None:
    recorder = recorded(3)
    server = serve_runtime_endpoint(recorder, f"unix:{socket_dir}/rt.sock")
    endpoint = RuntimeEndpoint(f"unix:{socket_dir}/rt.sock", deadline_s=2.0, max_age_s=0.0)
    try:
        snapshot_path = f"{socket_dir}/rt.sock.snapshot"
        assert stat.S_IMODE(os.stat(snapshot_path).st_mode) == 0o600
        first = endpoint.fetch()
        assert first.snapshot_socket == snapshot_path
        assert endpoint.transport == "snapshot socket"
        recorder.record("resnet", "completed", 0.020, 0.015)
        second = endpoint.fetch()
        # Same runtime, same cumulative state, and each answer closed one epoch, as over gRPC.
        assert second.runtime_id == first.runtime_id
        assert second.inferences.completed == 4
        assert second.epoch == first.epoch + 1
        assert endpoint.transport == "snapshot socket"
    finally:
        endpoint.close()
        server.stop()
    assert not os.path.exists(snapshot_path)


class SnapshotOnly:
    """A runtime source written before since_epoch: its snapshot() takes no argument."""

    def __init__(self, recorder: InferenceRecorder) -> None:
        self._recorder = recorder

    def snapshot(self) -> runtime_pb2.Snapshot:
        return self._recorder.snapshot()


@pytest.mark.parametrize("with_socket", [True, False], ids=["snapshot socket", "grpc only"])
@pytest.mark.parametrize("source", [InferenceRecorder, SnapshotOnly], ids=["recorder", "older source"])
def test_both_transports_hand_over_period_histograms_when_the_source_can(
    socket_dir: Path, source: type, with_socket: bool
) -> None:
    recorder = recorded(0)
    served_source = recorder if source is InferenceRecorder else source(recorder)
    server = serve_runtime_endpoint(served_source, f"unix:{socket_dir}/rt.sock", snapshot_socket=with_socket)
    endpoint = RuntimeEndpoint(f"unix:{socket_dir}/rt.sock", deadline_s=2.0, max_age_s=0.0)
    try:
        answers = []
        for _ in range(3):  # the first baseline over gRPC, then on the snapshot socket if served
            baseline = endpoint.fetch()
            endpoint.note_latency_baseline(baseline.epoch)
            recorder.record("resnet", "completed", 0.020, 0.015)
            transport = endpoint.transport
            answer = endpoint.fetch()
            answers.append(
                (transport, answer.period_since_epoch == baseline.epoch, answer.period_total_latency.count)
            )
        assert {transport for transport, _, _ in answers} == {"snapshot socket" if with_socket else "grpc"}
        if source is InferenceRecorder:
            assert all(since and count == 1 for _, since, count in answers)
        else:  # answered all the same, without period histograms: the monitor subtracts
            assert all(not since and count == 0 for _, since, count in answers)
    finally:
        endpoint.close()
        server.stop()


def test_a_stopped_runtime_is_the_grpc_error_and_a_restarted_one_is_read_again(socket_dir: Path) -> None:
    address = f"unix:{socket_dir}/rt.sock"
    server = serve_runtime_endpoint(recorded(1), address)
    endpoint = RuntimeEndpoint(address, deadline_s=1.0, max_age_s=0.0)
    try:
        endpoint.fetch()
        endpoint.fetch()
        assert endpoint.transport == "snapshot socket"
        server.stop()
        with pytest.raises(RuntimeEndpointError, match=f"cannot connect to {address}: no such file"):
            endpoint.fetch()
        server = serve_runtime_endpoint(recorded(7), address)
        restarted = endpoint.fetch()
        assert restarted.inferences.completed == 7
        endpoint.fetch()
        assert endpoint.transport == "snapshot socket"
    finally:
        endpoint.close()
        server.stop()


class FakeSnapshotSocket:
    """A unix socket that answers each connection with `answer` (or never, when None)."""

    def __init__(self, path: str, answer: bytes | None) -> None:
        self.path = path
        self.connections = 0
        self._answer = answer
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(path)
        self._listener.listen()
        self._accepted: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            self._accepted.append(connection)
            connection.recv(64)
            if self._answer is not None:
                connection.sendall(self._answer)
                connection.close()

    def close(self) -> None:
        self._listener.close()
        for connection in self._accepted:
            connection.close()


class Advertising:
    """A recorder whose snapshots say a snapshot socket is served (by a fake, or at another path)."""

    def __init__(self, recorder: InferenceRecorder, path: str) -> None:
        self._recorder = recorder
        self._path = path

    def snapshot(self, since_epoch: int = 0) -> runtime_pb2.Snapshot:
        snapshot = self._recorder.snapshot(since_epoch)
        snapshot.snapshot_socket = self._path
        return snapshot


@pytest.mark.parametrize(
    "answer",
    [b"\x00\x00\x00\x05garbage", struct.pack(">I", 1 << 30), b"\x00\x00"],
    ids=["not a snapshot", "absurd length", "hangs up mid-frame"],
)
def test_a_snapshot_socket_answering_garbage_falls_back_to_grpc_for_good(
    socket_dir: Path, answer: bytes
) -> None:
    fake = FakeSnapshotSocket(f"{socket_dir}/rt.sock.snapshot", answer)
    address = f"unix:{socket_dir}/rt.sock"
    server = serve_runtime_endpoint(Advertising(recorded(2), fake.path), address, snapshot_socket=False)
    endpoint = RuntimeEndpoint(address, deadline_s=2.0, max_age_s=0.0)
    try:
        # The socket is there, so it is asked first; the fake fails, the same fetch is answered over
        # gRPC, and the fake is not tried again (gRPC's answers advertise it: not adopted either).
        assert endpoint.fetch().inferences.completed == 2
        assert endpoint.transport == "grpc"
        assert endpoint.fetch().inferences.completed == 2
        assert endpoint.fetch().inferences.completed == 2
        assert fake.connections == 1
    finally:
        endpoint.close()
        server.stop()
        fake.close()


def test_a_hung_snapshot_socket_is_a_deadline_error_not_a_hang(socket_dir: Path) -> None:
    fake = FakeSnapshotSocket(f"{socket_dir}/rt.sock.snapshot", None)
    address = f"unix:{socket_dir}/rt.sock"
    server = serve_runtime_endpoint(Advertising(recorded(2), fake.path), address, snapshot_socket=False)
    endpoint = RuntimeEndpoint(address, deadline_s=0.3, max_age_s=0.0)
    try:  # the socket is there, so it is asked from the first fetch on
        started = time.monotonic()
        with pytest.raises(RuntimeEndpointError, match=f"no answer from {address} within 0.3 s"):
            endpoint.fetch()
        assert time.monotonic() - started < 1.0
        # Still hung: the same request is waited for again, on the same connection.
        with pytest.raises(RuntimeEndpointError, match=f"no answer from {address} within 0.3 s"):
            endpoint.fetch()
        assert fake.connections == 1
    finally:
        endpoint.close()
        server.stop()
        fake.close()


def test_the_server_hangs_up_on_a_request_that_is_not_its_protocol(socket_dir: Path) -> None:
    server = serve_runtime_endpoint(recorded(1), f"unix:{socket_dir}/rt.sock")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.settimeout(2.0)
            client.connect(f"{socket_dir}/rt.sock.snapshot")
            client.sendall(b"GET / HTTP/1.1\r\n\r\n")
            try:  # hung up: an end of stream, or a reset since the server left the rest unread
                assert client.recv(64) == b""
            except ConnectionResetError:
                pass
    finally:
        server.stop()


def test_a_tcp_runtime_advertises_no_snapshot_socket() -> None:
    server = serve_runtime_endpoint(recorded(1), "127.0.0.1:0")
    endpoint = RuntimeEndpoint(f"127.0.0.1:{server.port}", deadline_s=2.0, max_age_s=0.0)
    try:
        assert endpoint.fetch().snapshot_socket == ""
        assert endpoint.transport == "grpc"
    finally:
        endpoint.close()
        server.stop()


def test_a_runtime_stopped_then_continued_answers_again_on_its_snapshot_socket(socket_dir: Path) -> None:
    address = f"unix:{socket_dir}/rt.sock"
    simulator = subprocess.Popen(
        [sys.executable, "-m", "otel_neuron.runtime.simulator_cli", "--address", address, "--seed", "3"],
        stderr=subprocess.PIPE,
        text=True,
    )
    endpoint = RuntimeEndpoint(address, deadline_s=0.3, max_age_s=0.0)
    try:
        assert simulator.stderr is not None and "serving" in simulator.stderr.readline()
        first = endpoint.fetch()
        endpoint.fetch()
        assert endpoint.transport == "snapshot socket"
        simulator.send_signal(signal.SIGSTOP)
        wait_until_stopped(simulator.pid)
        # Hung for more periods than the socket's backlog holds connections: each fetch ends at its
        # deadline, and the snapshot socket is kept for when it answers again.
        for _ in range(7):
            started = time.monotonic()
            with pytest.raises(RuntimeEndpointError, match=f"no answer from {address} within 0.3 s"):
                endpoint.fetch()
            assert time.monotonic() - started < 1.0
        simulator.send_signal(signal.SIGCONT)
        resumed = endpoint.fetch()
        assert resumed.runtime_id == first.runtime_id and resumed.epoch > first.epoch
        assert endpoint.transport == "snapshot socket"
    finally:
        endpoint.close()
        simulator.send_signal(signal.SIGCONT)
        simulator.terminate()
        simulator.wait(timeout=10)


def test_the_socket_is_the_configured_one_whatever_path_the_runtime_names(socket_dir: Path) -> None:
    other = serve_runtime_endpoint(recorded(9), f"unix:{socket_dir}/other.sock")
    address = f"unix:{socket_dir}/rt.sock"
    # This runtime serves gRPC only but names the other runtime's snapshot socket (as a runtime in a
    # container may name a path that leads elsewhere here): it must never be read as this one.
    mine = recorded(2)
    server = serve_runtime_endpoint(
        Advertising(mine, f"{socket_dir}/other.sock.snapshot"), address, snapshot_socket=False
    )
    endpoint = RuntimeEndpoint(address, deadline_s=2.0, max_age_s=0.0)
    try:
        for _ in range(3):
            snapshot = endpoint.fetch()
            assert (snapshot.runtime_id, snapshot.inferences.completed) == (mine.runtime_id, 2)
        assert endpoint.transport == "grpc"
    finally:
        endpoint.close()
        server.stop()
        other.stop()


def test_a_snapshot_socket_answering_for_another_runtime_is_given_up(socket_dir: Path) -> None:
    address = f"unix:{socket_dir}/rt.sock"
    mine = recorded(2)
    path = f"{socket_dir}/rt.sock.snapshot"
    server = serve_runtime_endpoint(Advertising(mine, path), address, snapshot_socket=False)
    endpoint = RuntimeEndpoint(address, deadline_s=2.0, max_age_s=0.0)
    fake = None
    try:
        assert endpoint.fetch().runtime_id == mine.runtime_id  # over gRPC: no socket there yet
        # A socket appears at the path, answering for another runtime: it is not read as this one.
        fake = FakeSnapshotSocket(path, frame(recorded(9).snapshot().SerializeToString()))
        assert endpoint.fetch().runtime_id == mine.runtime_id  # gRPC's answer, in the same fetch
        assert endpoint.fetch().runtime_id == mine.runtime_id
        assert endpoint.transport == "grpc"
        assert fake.connections == 1
    finally:
        endpoint.close()
        server.stop()
        if fake is not None:
            fake.close()


def test_in_one_tick_a_failing_socket_gets_grpcs_answer_while_another_runtime_hangs(socket_dir: Path) -> None:
    hung = FakeSnapshotSocket(f"{socket_dir}/hung.sock.snapshot", None)
    broken = FakeSnapshotSocket(f"{socket_dir}/broken.sock.snapshot", b"\x00\x00\x00\x05garbage")
    servers = [
        serve_runtime_endpoint(
            Advertising(recorded(1), hung.path), f"unix:{socket_dir}/hung.sock", snapshot_socket=False
        ),
        serve_runtime_endpoint(
            Advertising(recorded(4), broken.path), f"unix:{socket_dir}/broken.sock", snapshot_socket=False
        ),
    ]
    endpoints = [
        RuntimeEndpoint(f"unix:{socket_dir}/{name}.sock", deadline_s=0.5, max_age_s=0.0)
        for name in ("hung", "broken")
    ]
    try:  # both sockets are there from the start: the first tick asks them
        started = time.monotonic()
        hung_result, broken_result = TickFetch(endpoints).results(time.monotonic() + 0.5)
        assert time.monotonic() - started < 0.9
        assert hung_result is None  # no answer by the deadline
        assert isinstance(broken_result, runtime_pb2.Snapshot) and broken_result.inferences.completed == 4
    finally:
        for endpoint in endpoints:
            endpoint.close()
        for server in servers:
            server.stop()
        hung.close()
        broken.close()
