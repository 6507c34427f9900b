"""The runtime groups against a real simulator process over a real unix socket."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from percentiles import exact_percentile

from otel_neuron.groups.base import MetricGroup
from otel_neuron.groups.runtime import GROUP_TYPES, create_runtime_groups
from otel_neuron.report.section_table import SECTIONS_V1
from otel_neuron.report.sections_v1 import render_inference_stats
from otel_neuron.runtime import runtime_pb2, runtime_pb2_grpc
from otel_neuron.runtime.recorder import InferenceRecorder
from otel_neuron.runtime.server import serve_runtime_endpoint
from otel_neuron.semconv import (
    CORE_FLOPS,
    CORE_INDEX,
    CORE_MEMORY_BY_CATEGORY,
    DEVICE_INDEX,
    ECC_ERRORS,
    ECC_KINDS,
    ERROR_TYPE,
    ERROR_TYPES,
    ERROR_TYPES_V2,
    HOST_MEMORY_BY_CATEGORY,
    HW_ERROR_TYPE,
    INFERENCE_ERRORS,
    MEMORY_CATEGORY,
    MEMORY_LOCATION,
    OUTCOMES,
    PROCESS_PID,
    RUNTIME_INDEX,
    RUNTIME_MEMORY,
    RUNTIME_TAG,
)
from otel_neuron.sources.fetch_loop import TickFetch

SIMULATOR = [sys.executable, "-m", "otel_neuron.runtime.simulator_cli"]


@pytest.fixture
def socket_dir(tmp_path: Path) -> Iterator[Path]:
    """tmp_path, or a shorter directory when tmp_path would overflow a unix socket path."""
    if len(str(tmp_path)) < 80:
        yield tmp_path
        return
    with tempfile.TemporaryDirectory(prefix="on-", dir="/tmp") as short:
        yield Path(short)


class SimulatorProcess:
    def __init__(self, address: str, *arguments: str, env: dict[str, str] | None = None) -> None:
        self.address = address
        self.process = subprocess.Popen(
            [*SIMULATOR, "--address", address, *arguments],
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )
        line = self.process.stderr.readline() if self.process.stderr else ""
        assert "serving" in line, line
        self.channel = grpc.insecure_channel(address, options=[("grpc.enable_http_proxy", 0)])
        self.control = runtime_pb2_grpc.SimulatorControlStub(self.channel)

    def ground_truth(self, mark: bool = False) -> runtime_pb2.GroundTruth:
        return self.control.GetGroundTruth(runtime_pb2.GroundTruthRequest(mark=mark), timeout=5)

    def pause(self) -> None:
        self.control.Pause(runtime_pb2.Empty(), timeout=5)

    def resume(self) -> None:
        self.control.Resume(runtime_pb2.Empty(), timeout=5)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.channel.close()
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout=10)


@pytest.fixture
def start_simulator() -> Iterator:
    started: list[SimulatorProcess] = []

    def start(address: str, *arguments: str, env: dict[str, str] | None = None) -> SimulatorProcess:
        simulator = SimulatorProcess(address, *arguments, env=env)
        started.append(simulator)
        return simulator

    yield start
    for simulator in started:
        simulator.stop(signal.SIGKILL)


def by_key(groups: list[MetricGroup]) -> dict[str, MetricGroup]:
    return {group.report_key: group for group in groups}


def totals(truth: runtime_pb2.GroundTruth) -> dict[str, int]:
    counts = {name: getattr(truth.inferences, name) for name in OUTCOMES}
    counts.update({f"error.{name}": getattr(truth.errors, name) for name in ERROR_TYPES_V2})
    for device in truth.devices:
        counts.update({f"{device.device_index}.{kind}": getattr(device, kind) for kind in ECC_KINDS})
    return counts


def test_all_five_groups_sample_and_render_over_a_unix_socket(socket_dir: Path, start_simulator) -> None:
    address = f"unix:{socket_dir}/neuron.sock"
    start_simulator(address, "--cores", "4", "--models", "3", "--rate", "500", "--seed", "1")
    assert stat.S_IMODE(os.stat(socket_dir / "neuron.sock").st_mode) == 0o600
    groups = create_runtime_groups(0, address, list(GROUP_TYPES), deadline_s=0.5)
    for group in groups:
        group.prime()
    time.sleep(0.3)
    reports = {}
    for group in groups:
        sample = group.sample()
        assert sample.error == "", (group.report_key, sample.error)
        assert 0.25 < sample.period < 2
        for points in sample.points.values():
            assert all(attributes["neuron.runtime.index"] == 0 for attributes, _ in points)
        reports[group.report_key] = SECTIONS_V1[group.report_key].render(sample.points)
    cores = reports["neuroncore_counters"]["neuroncores_in_use"]
    assert sorted(cores) == ["0", "1", "2", "3"]
    assert all(0 <= core["neuroncore_utilization"] <= 100 for core in cores.values())
    assert sum(len(core["loaded_models"]) for core in cores.values()) >= 3
    assert all(":" in name for core in cores.values() for name in core["loaded_models"])
    stats = reports["inference_stats"]
    assert stats["inference_summary"]["completed"] > 0
    assert set(stats["error_summary"]) == set(ERROR_TYPES)
    for key in ("total_latency", "device_latency"):
        latency = stats["latency_stats"][key]
        assert list(latency) == ["p0", "p1", "p25", "p50", "p75", "p99", "p100"]
        assert list(latency.values()) == sorted(latency.values())
    memory = reports["memory_used"]
    assert len(memory["loaded_models"]) == 3
    model = memory["loaded_models"][0]
    assert set(model) == {"name", "uuid", "model_id", "is_running", "memory_used_bytes", "subgraphs"}
    assert memory["neuron_runtime_used_bytes"]["neuron_device"] >= sum(
        m["memory_used_bytes"]["neuron_device"] for m in memory["loaded_models"]
    )
    assert set(reports["neuron_runtime_vcpu_usage"]["vcpu_usage"]) == {"user", "system"}
    assert reports["hw_counters"]["neuron_devices"][0]["neuron_device_index"] == 0


def test_per_period_counts_add_up_to_the_simulators_ground_truth(socket_dir: Path, start_simulator) -> None:
    address = f"unix:{socket_dir}/neuron.sock"
    simulator = start_simulator(
        address,
        "--rate",
        "2000",
        "--error-rate",
        "0.2",
        "--ecc-per-hour",
        "360000",
        "--devices",
        "2",
        "--seed",
        "5",
    )
    groups = by_key(create_runtime_groups(0, address, ["inference_stats", "hw_counters"], deadline_s=0.5))
    stats, hw = groups["inference_stats"], groups["hw_counters"]
    simulator.pause()
    start = totals(simulator.ground_truth(mark=True))
    stats.prime()
    hw.prime()
    simulator.resume()
    summed: dict[str, int] = dict.fromkeys(start, 0)
    for number in range(6):
        time.sleep(0.15)
        if number == 5:
            simulator.pause()
            end = totals(simulator.ground_truth())
        stats_points = stats.sample().points
        report = render_inference_stats(stats_points)
        for name in OUTCOMES:
            summed[name] += report["inference_summary"][name]
        for attributes, value in stats_points[INFERENCE_ERRORS.name]:  # the 2.x error types
            summed[f"error.{attributes[ERROR_TYPE]}"] += value
        for attributes, value in hw.sample().points[ECC_ERRORS.name]:  # all four ECC kinds
            summed[f"{attributes[DEVICE_INDEX]}.{attributes[HW_ERROR_TYPE]}"] += value
    expected = {name: end[name] - start[name] for name in start}
    assert expected["completed"] > 100 and expected["error.generic"] > 0 and expected["error.model"] > 0
    assert expected["0.sram_ecc_corrected"] > 0 and expected["1.sram_ecc_corrected"] > 0
    assert summed == expected

    # One more period with the exact latencies the simulator recorded in it.
    simulator.ground_truth(mark=True)
    simulator.resume()
    time.sleep(0.3)
    simulator.pause()
    truth = simulator.ground_truth(mark=True)
    latency = render_inference_stats(stats.sample().points)["latency_stats"]
    for key, values in (("total_latency", truth.total_latencies), ("device_latency", truth.device_latencies)):
        assert len(values) > 50
        assert latency[key]["p0"] == min(values) and latency[key]["p100"] == max(values)
        for q in (1, 25, 50, 75, 99):
            exact = exact_percentile(list(values), q)
            assert abs(latency[key][f"p{q}"] - exact) <= 0.01 * exact
    simulator.resume()


def test_a_simulator_names_its_process_and_tag_and_splits_its_memory_into_categories(
    socket_dir: Path, start_simulator
) -> None:
    address = f"unix:{socket_dir}/neuron.sock"
    arguments = ("--cores", "4", "--devices", "2", "--models", "3", "--churn", "0", "--seed", "11")
    simulator = start_simulator(address, *arguments, env={"NEURON_PROCESS_TAG": "sim_app"})
    groups = create_runtime_groups(1, address, list(GROUP_TYPES), deadline_s=0.5)
    for group in groups:
        group.prime()
    time.sleep(0.3)
    simulator.pause()
    truth = simulator.ground_truth()
    points: dict[str, list] = {}
    for group in groups:
        sample = group.sample()
        assert sample.error == "", (group.report_key, sample.error)
        for name, block in sample.points.items():
            points.setdefault(name, []).extend(block)
    simulator.resume()
    for block in points.values():
        for attributes, _ in block:
            assert attributes[RUNTIME_INDEX] == 1
            assert (attributes[PROCESS_PID], attributes[RUNTIME_TAG]) == (simulator.process.pid, "sim_app")

    used = {a[MEMORY_LOCATION]: v for a, v in points[RUNTIME_MEMORY.name]}
    assert used == {"host": truth.memory.host_bytes, "neuron_device": truth.memory.device_bytes}
    host = {a[MEMORY_CATEGORY]: v for a, v in points[HOST_MEMORY_BY_CATEGORY.name]}
    assert host == {part.category: part.bytes for part in truth.memory.host_categories}
    assert sum(host.values()) == used["host"]
    device: dict[str, int] = {}
    for attributes, value in points[CORE_MEMORY_BY_CATEGORY.name]:
        device[attributes[MEMORY_CATEGORY]] = device.get(attributes[MEMORY_CATEGORY], 0) + value
    assert device == {part.category: part.bytes for part in truth.memory.device_categories}
    assert sum(device.values()) == used["neuron_device"]
    flops = {a[CORE_INDEX]: v for a, v in points[CORE_FLOPS.name]}
    assert sorted(flops) == [0, 1, 2, 3] and sum(flops.values()) > 0


def test_a_killed_and_restarted_runtime_errors_then_resumes_cleanly(
    socket_dir: Path, start_simulator
) -> None:
    address = f"unix:{socket_dir}/neuron.sock"
    first = start_simulator(address, "--rate", "1000", "--seed", "2")
    groups = by_key(create_runtime_groups(0, address, list(GROUP_TYPES), deadline_s=0.5))
    for group in groups.values():
        group.prime()
    time.sleep(0.2)
    assert groups["inference_stats"].sample().error == ""
    first.stop(signal.SIGKILL)  # leaves its socket file behind
    time.sleep(0.3)  # the next collection tick (the endpoint shares a snapshot for 0.25 s)
    began = time.monotonic()
    for group in groups.values():
        sample = group.sample()
        assert sample.error == f"cannot connect to {address}: connection refused"
    assert time.monotonic() - began < 1.0
    assert groups["memory_used"].runtime_error() == f"cannot connect to {address}: connection refused"

    second = start_simulator(address, "--rate", "1000", "--seed", "3")  # replaces the stale socket
    second.pause()
    truth = second.ground_truth()
    time.sleep(0.3)  # next tick
    sample = groups["inference_stats"].sample()
    assert sample.error == ""
    report = render_inference_stats(sample.points)
    assert report["inference_summary"]["completed"] == truth.inferences.completed  # since its start, no spike
    assert all(value >= 0 for value in report["inference_summary"].values())
    assert groups["inference_stats"].runtime_error() == ""
    second.resume()
    time.sleep(0.1)
    for group in groups.values():
        assert group.sample().error == ""


def test_two_runtimes_one_of_them_down(socket_dir: Path, start_simulator) -> None:
    up, down = f"unix:{socket_dir}/up.sock", f"unix://{socket_dir}/down.sock"
    start_simulator(up, "--seed", "4")
    runtimes = [
        create_runtime_groups(index, address, list(GROUP_TYPES), 0.5)
        for index, address in enumerate((up, down))
    ]
    for groups in runtimes:
        for group in groups:
            group.prime()
    time.sleep(0.2)
    results: dict[int, list[str]] = {}

    def collect(index: int) -> None:
        results[index] = [group.sample().error for group in runtimes[index]]

    began = time.monotonic()
    threads = [threading.Thread(target=collect, args=(index,)) for index in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert time.monotonic() - began < 1.0
    assert results[0] == [""] * len(GROUP_TYPES)
    assert results[1] == [f"cannot connect to {down}: no such file"] * len(GROUP_TYPES)


def _serve_raw(path: str, reply: bytes | None) -> socket.socket:
    """A unix socket server that answers any connection with `reply` (None: never answers)."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(8)
    held: list[socket.socket] = []

    def run() -> None:
        while True:
            try:
                connection, _ = server.accept()
            except OSError:
                return
            if reply is None:
                held.append(connection)
            else:
                try:
                    connection.recv(4096)
                    connection.sendall(reply)
                finally:
                    connection.close()

    threading.Thread(target=run, daemon=True).start()
    return server


def test_a_server_answering_garbage_gets_a_clear_error(socket_dir: Path) -> None:
    path = str(socket_dir / "garbage.sock")
    server = _serve_raw(path, b"HTTP/1.1 400 Bad Request\r\n\r\nnot grpc at all")
    try:
        (group,) = create_runtime_groups(0, f"unix:{path}", ["memory_used"], deadline_s=0.5)
        began = time.monotonic()
        error = group.sample().error
        assert time.monotonic() - began < 1.0
        assert error.startswith(f"cannot talk to unix:{path}: ") or error.startswith(
            f"no answer from unix:{path}"
        )
    finally:
        server.close()


def test_a_hung_runtime_never_holds_the_collection_past_its_deadline(socket_dir: Path) -> None:
    path = str(socket_dir / "hung.sock")
    server = _serve_raw(path, None)
    try:
        groups = create_runtime_groups(0, f"unix:{path}", list(GROUP_TYPES), deadline_s=0.3)
        began = time.monotonic()
        errors = {group.sample().error for group in groups}  # one fetch shared by the tick
        assert time.monotonic() - began < 0.8
        assert errors == {f"no answer from unix:{path} within 0.3 s (no gRPC handshake)"}
    finally:
        server.close()


class _Answer:
    """A gRPC GetSnapshot handler returning fixed bytes."""

    def __init__(self, payload: bytes) -> None:
        self.payload = payload

    def __call__(self, request: bytes, context: object) -> bytes:
        return self.payload


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"\xff\xff\xff\xff\xff", "answered garbage: not an otel_neuron.runtime.v1 snapshot"),
        (runtime_pb2.Snapshot(runtime_id="x").SerializeToString(), "answered garbage: no protocol version"),
        (
            runtime_pb2.Snapshot(protocol_version=2).SerializeToString(),
            "speaks runtime protocol version 2; this monitor speaks 1",
        ),
    ],
)
def test_garbage_and_incompatible_versions_are_named(socket_dir: Path, payload: bytes, expected: str) -> None:
    from concurrent import futures

    address = f"unix:{socket_dir}/odd.sock"
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    handler = grpc.method_handlers_generic_handler(
        "otel_neuron.runtime.v1.RuntimeMetrics",
        {"GetSnapshot": grpc.unary_unary_rpc_method_handler(_Answer(payload))},
    )
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(address)
    server.start()
    try:
        (group,) = create_runtime_groups(0, address, ["hw_counters"], deadline_s=0.5)
        error = group.sample().error
        assert error.startswith(address) and expected in error, error
        # The same answer through the collector's path: fetched on the event loop, then handed over.
        TickFetch([group.endpoint]).finish(time.monotonic() + 0.5)
        error = group.sample().error
        assert error.startswith(address) and expected in error, error
    finally:
        server.stop(None)


def test_the_server_replaces_a_stale_socket_refuses_a_live_one_and_cleans_up(socket_dir: Path) -> None:
    path = socket_dir / "app.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # the file stays, nobody listens
    handle = serve_runtime_endpoint(InferenceRecorder(), f"unix:{path}")
    try:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        with pytest.raises(OSError, match="another process is serving it"):
            serve_runtime_endpoint(InferenceRecorder(), f"unix://{path}")
        (group,) = create_runtime_groups(0, f"unix:{path}", ["memory_used"], deadline_s=0.5)
        assert group.sample().error == ""
    finally:
        handle.stop()
    assert not path.exists()


def test_the_simulator_cli_reports_bad_arguments_in_one_line() -> None:
    result = subprocess.run(
        [*SIMULATOR, "--address", "unix:/tmp/x.sock", "--error-rate", "2"],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert result.returncode == 2
    assert result.stderr == "otel-neuron-simulator: error: error rate must be between 0 and 1, not 2.0\n"
    for address, reason in (
        ("nowhere", "'nowhere' is not an address like unix:/run/neuron.sock or 127.0.0.1:50051"),
        ("unix:/nonexistent/dir/x.sock", "cannot listen on unix:/nonexistent/dir/x.sock: no such directory"),
    ):
        result = subprocess.run(
            [*SIMULATOR, "--address", address], capture_output=True, text=True, timeout=20
        )
        assert result.returncode == 2
        assert result.stderr.startswith(f"otel-neuron-simulator: {reason}")
        assert len(result.stderr.splitlines()) == 1


def test_the_simulator_stops_cleanly_on_sigterm(socket_dir: Path) -> None:
    path = socket_dir / "term.sock"
    simulator = SimulatorProcess(f"unix:{path}")
    assert path.exists()
    assert simulator.stop(signal.SIGTERM) == 0
    assert not path.exists()


def test_the_monitor_reports_every_runtime_group_from_a_simulator_valid_against_the_schema(
    socket_dir: Path, start_simulator
) -> None:
    import json

    from otel_neuron.report_schema import report_problem

    address = f"unix:{socket_dir}/neuron.sock"
    start_simulator(address, "--seed", "9", "--rate", "300")
    config = socket_dir / "monitor.conf"
    metrics = [
        {"type": name if name != "neuron_runtime_vcpu_usage" else "vcpu_usage"} for name in GROUP_TYPES
    ]
    runtimes = [
        {"address": address, "metrics": metrics},
        {"address": "sim:?cores=2&seed=1", "metrics": metrics},
    ]
    config.write_text(json.dumps({"period": "500ms", "neuron_runtimes": runtimes}))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "otel_neuron",
            "-c",
            str(config),
            "--validate",
            "--max-reports",
            "3",
            "--imds",
            "off",
        ],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    reports = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(reports) == 3
    for report in reports:
        assert report_problem(report) == ""
    for runtime in reports[-1]["neuron_runtime_data"]:
        assert runtime["error"] == ""
        assert set(runtime["report"]) == set(GROUP_TYPES)
        assert all(group["error"] == "" for group in runtime["report"].values())
        assert runtime["report"]["inference_stats"]["inference_summary"]["completed"] > 0


def test_a_hung_runtime_leaves_the_system_groups_and_the_cadence_alone(socket_dir: Path) -> None:
    from io import StringIO

    from opentelemetry.sdk.resources import Resource

    from otel_neuron.config import parse_config
    from otel_neuron.exporters.report_json import ReportJsonExporter
    from otel_neuron.pipeline import MonitorPipeline, build_groups

    path = str(socket_dir / "hung.sock")
    server = _serve_raw(path, None)
    document = {
        "period": "500ms",
        "neuron_runtimes": [{"address": f"unix:{path}", "metrics": [{"type": "inference_stats"}]}],
        "system_metrics": [{"type": "memory_info"}],
    }
    out = StringIO()
    pipeline = MonitorPipeline(
        build_groups(parse_config(json.dumps(document))), [ReportJsonExporter(1, out)], Resource.get_empty()
    )
    stop = threading.Event()
    try:
        pipeline.run(stop, max_reports=6)
    finally:
        pipeline.shutdown()
        server.close()
    reports = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(reports) == 6
    periods = [report["system_data"]["memory_info"]["period"] for report in reports]
    # The hung runtime takes its whole 0.4 s deadline every tick, yet the system group is sampled
    # before waiting for it: its period stays the configured one.
    assert all(abs(period - 0.5) < 0.05 for period in periods), periods
    entry = reports[-1]["neuron_runtime_data"][0]
    assert entry["error"].startswith(f"no answer from unix:{path} within 0.4 s")
    assert entry["report"]["inference_stats"]["error"] == entry["error"]
