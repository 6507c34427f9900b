"""`otel-neuron-monitor --kubernetes` as a subprocess beside a fake kubelet (PodResources v1 over a unix
socket): the pod labels on Prometheus series and OTLP points, the 2.x report's neuron_k8s_info, and
what a kubelet that goes away, hangs or answers garbage does to them (nothing but one warning line).

The node: a simulated runtime with 4 NeuronCores on 2 devices, and the trn1 sysfs fixture (2 devices
of 2 NeuronCores), whose neuron_hardware_info tells the monitor that a device has 2 cores.
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_kubelet import FakeKubelet, GarbageSocket, pod
from monitor_cli import FIXTURES, clean_environment, monitor_command, reports, run_monitor, write_config
from peers import RotelFactory
from prometheus_client.parser import text_string_to_metric_families

CORE = "aws.amazon.com/neuroncore"
DEVICE = "aws.amazon.com/neuron"
PERIOD = 0.5
WAIT_S = 20.0  # how long a test waits for what normally takes a second or two
BERT = pod("bert-0", "ml", server={CORE: ["0"]})
LLAMA = pod("llama-7b", "ml", vllm={DEVICE: ["1"]})  # device 1: NeuronCores 2 and 3
TRAIN = pod("train-3", "research", worker={CORE: ["1", "2"]})


class Names:
    """How a Prometheus naming mode writes the pod labels and the NeuronCore utilization."""

    def __init__(self, mode: str, pod_labels: tuple[str, str, str], utilization: str, core: str) -> None:
        self.mode, self.pod_labels, self.utilization, self.core = mode, pod_labels, utilization, core


OTEL = Names(
    "otel",
    ("k8s_pod_name", "k8s_namespace_name", "k8s_container_name"),
    "neuron_core_utilization",
    "neuron_core_index",
)
NEURON_MONITOR = Names(
    "neuron-monitor",
    ("pod_name", "namespace", "container_name"),
    "neuroncore_utilization_ratio",
    "neuroncore",
)


def node_config(directory: Path) -> Path:
    return write_config(
        directory,
        {
            "period": "500ms",
            "neuron_runtimes": [
                {
                    "address": "sim:?cores=4&devices=2&models=2&seed=1",
                    "metrics": [{"type": t} for t in ("neuroncore_counters", "memory_used", "hw_counters")],
                },
                {
                    "address": f"sysfs:{FIXTURES / 'sysfs' / 'trn1'}",
                    "metrics": [{"type": t} for t in ("memory_used", "hw_counters", "neuron_hardware_info")],
                },
            ],
            "system_metrics": [{"type": "memory_info"}],
        },
    )


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory short enough for unix socket paths."""
    with tempfile.TemporaryDirectory(prefix="k8s-", dir="/tmp") as short:
        yield Path(short)


class Monitor:
    """The monitor as a subprocess: its reports and stderr lines as they come, its /metrics."""

    def __init__(self, args: list[str]) -> None:
        self.process = subprocess.Popen(
            [*monitor_command(), "--imds", "off", *args],
            env=clean_environment(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.reports: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self._threads = [
            threading.Thread(target=self._read_reports, daemon=True),
            threading.Thread(target=self._read_errors, daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        self.port = 0

    def _read_reports(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.reports.append(json.loads(line))

    def _read_errors(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.errors.append(line.rstrip("\n"))

    def wait_for(self, condition: Callable[[], Any], what: str) -> Any:
        end = time.monotonic() + WAIT_S
        while True:
            found = condition()
            if found:
                return found
            assert self.process.poll() is None, f"the monitor exited: {self.errors}"
            assert time.monotonic() < end, (
                f"still waiting for {what} after {WAIT_S:g} s; stderr: {self.errors}"
            )
            time.sleep(0.1)

    def serving_port(self) -> int:
        """The port `--prometheus 127.0.0.1:0` took, from its start-up notice."""
        if not self.port:
            line = self.wait_for(lambda: next((e for e in self.errors if "/metrics" in e), None), "the port")
            self.port = int(re.search(r":(\d+)/metrics", line).group(1))  # type: ignore[union-attr]
        return self.port

    def series(self) -> list[tuple[str, dict[str, str], float]]:
        url = f"http://127.0.0.1:{self.serving_port()}/metrics"
        text = urllib.request.urlopen(url, timeout=5).read().decode()
        return [
            (sample.name, dict(sample.labels), sample.value)
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        ]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        for thread in self._threads:
            thread.join(5)


@pytest.fixture
def start_monitor() -> Iterator[Callable[..., Monitor]]:
    started: list[Monitor] = []

    def start(*args: str) -> Monitor:
        started.append(Monitor(list(args)))
        return started[-1]

    yield start
    for monitor in started:
        monitor.stop()


def pods_by(
    series: list[tuple[str, dict[str, str], float]], name: str, key: str, names: Names = OTEL
) -> dict[str, Any]:
    """{index: (pod, namespace, container) or None} of the series of metric `name`; an index whose
    series disagree maps to the set of what they say."""
    found: dict[str, set[Any]] = {}
    for metric, labels, _ in series:
        if metric == name and labels.get(key):
            held = tuple(labels.get(label, "") for label in names.pod_labels)
            found.setdefault(labels[key], set()).add(held if any(held) else None)
    return {index: next(iter(said)) if len(said) == 1 else said for index, said in found.items()}


def held_series(
    series: list[tuple[str, dict[str, str], float]], names: Names = OTEL
) -> list[tuple[str, dict[str, str]]]:
    """The series that name a pod."""
    return [(name, labels) for name, labels, _ in series if labels.get(names.pod_labels[0])]


BERT_LABELS = ("bert-0", "ml", "server")
LLAMA_LABELS = ("llama-7b", "ml", "vllm")
TRAIN_LABELS = ("train-3", "research", "worker")


def test_pods_label_their_cores_and_devices_in_prometheus_and_the_2x_report(
    short_dir: Path, start_monitor: Callable[..., Monitor]
) -> None:
    socket_path = str(short_dir / "kubelet.sock")
    with FakeKubelet(socket_path, [BERT, LLAMA]):
        monitor = start_monitor(
            "-c", str(node_config(short_dir)), "--kubernetes", socket_path,
            "--prometheus", "127.0.0.1:0", "--verbose", "2", "--output-format", "2",
        )  # fmt: skip
        expected_cores = {"0": BERT_LABELS, "1": None, "2": LLAMA_LABELS, "3": LLAMA_LABELS}

        def labelled() -> list[tuple[str, dict[str, str], float]] | None:
            series = monitor.series()
            return (
                series
                if pods_by(series, "neuron_core_utilization", "neuron_core_index") == expected_cores
                else None
            )

        series = monitor.wait_for(labelled, "the pod labels on the NeuronCores")
        # Every core-scoped metric, from either source: the runtime's utilization and memory, the
        # driver's memory; device-scoped ones: the runtime's and the driver's ECC counts.
        for name in ("neuron_core_memory_usage_bytes", "neuron_core_flops"):
            assert pods_by(series, name, "neuron_core_index") == expected_cores, name
        assert pods_by(series, "neuron_device_ecc_errors_total", "neuron_device_index") == {
            "0": None,
            "1": LLAMA_LABELS,
        }
        allocation = {
            (labels.get("neuron_core_index") or None, labels.get("neuron_device_index") or None): value
            for name, labels, value in series
            if name == "neuron_k8s_allocation"
        }
        assert allocation == {
            ("0", None): 1.0,
            ("1", None): 0.0,
            ("2", None): 1.0,
            ("3", None): 1.0,
            (None, "0"): 0.0,
            (None, "1"): 1.0,
        }
        info = monitor.wait_for(
            lambda: (
                monitor.reports
                and monitor.reports[-1]["neuron_k8s_info"]["period"]
                and monitor.reports[-1]["neuron_k8s_info"]
            ),
            "two reads of the kubelet",
        )
    server = {"pod_name": "bert-0", "namespace": "ml", "container_name": ["server"]}
    vllm = {"pod_name": "llama-7b", "namespace": "ml", "container_name": ["vllm"]}
    assert info["neuroncores_k8s_info"] == {"0": server, "2": vllm, "3": vllm}
    assert info["neurondevices_k8s_info"] == {"1": vllm}
    assert info["error"] == "" and 0.5 <= info["period"] <= 1.5
    assert not any("Traceback" in line for line in monitor.errors)


@pytest.mark.parametrize("names", [OTEL, NEURON_MONITOR], ids=lambda names: names.mode)
def test_labels_follow_churn_and_a_pod_that_left_leaves_no_series(
    short_dir: Path, start_monitor: Callable[..., Monitor], names: Names
) -> None:
    socket_path = str(short_dir / "kubelet.sock")
    with FakeKubelet(socket_path, [BERT]) as kubelet:
        monitor = start_monitor(
            "-c", str(node_config(short_dir)), "--kubernetes", socket_path, "--prometheus", "127.0.0.1:0",
            "--prometheus-names", names.mode, "--verbose", "1",
        )  # fmt: skip

        def cores_are(expected: dict[str, Any]) -> Callable[[], bool]:
            return lambda: pods_by(monitor.series(), names.utilization, names.core, names) == expected

        monitor.wait_for(cores_are({"0": BERT_LABELS, "1": None, "2": None, "3": None}), "bert-0")
        kubelet.set_pods([BERT, TRAIN])  # a pod arrives
        monitor.wait_for(
            cores_are({"0": BERT_LABELS, "1": TRAIN_LABELS, "2": TRAIN_LABELS, "3": None}), "train-3"
        )
        kubelet.set_pods([TRAIN])  # bert-0 leaves
        monitor.wait_for(
            cores_are({"0": None, "1": TRAIN_LABELS, "2": TRAIN_LABELS, "3": None}), "bert-0 gone"
        )
        pod_label = names.pod_labels[0]
        assert not [s for s in held_series(monitor.series(), names) if s[1][pod_label] == "bert-0"]
        kubelet.set_pods([])  # every pod leaves: no series names a pod, not even the allocation gauge
        monitor.wait_for(lambda: not held_series(monitor.series(), names), "every pod label to go")
        assert monitor.process.poll() is None


def test_neuron_monitor_names_label_cores_and_devices(
    short_dir: Path, start_monitor: Callable[..., Monitor]
) -> None:
    socket_path = str(short_dir / "kubelet.sock")
    with FakeKubelet(socket_path, [BERT, LLAMA]):
        monitor = start_monitor(
            "-c", str(node_config(short_dir)), "--kubernetes", socket_path, "--prometheus", "127.0.0.1:0",
            "--prometheus-names", "neuron-monitor", "--verbose", "1",
        )  # fmt: skip
        expected = {"0": BERT_LABELS, "1": None, "2": LLAMA_LABELS, "3": LLAMA_LABELS}

        def labelled() -> list[tuple[str, dict[str, str], float]] | None:
            series = monitor.series()
            found = pods_by(series, NEURON_MONITOR.utilization, NEURON_MONITOR.core, NEURON_MONITOR)
            return series if found == expected else None

        series = monitor.wait_for(labelled, "the pod labels")
    assert pods_by(series, "neuroncore_memory_usage_tensors", "neuroncore", NEURON_MONITOR) == expected
    ecc = pods_by(series, "hardware_ecc_events_total", "neuron_device_index", NEURON_MONITOR)
    assert ecc == {"0": None, "1": LLAMA_LABELS}


def test_otlp_points_carry_the_pod_and_stop_carrying_it_when_it_leaves(
    short_dir: Path, start_monitor: Callable[..., Monitor], rotel: RotelFactory
) -> None:
    collector = rotel.start("gateway.env")
    socket_path = str(short_dir / "kubelet.sock")

    def latest_of_core(points: list[Any], core: str) -> Any:
        found = [
            p
            for p in points
            if p.name == "neuron.core.utilization" and p.attributes.get("neuron.core.index") == core
        ]
        return found[-1] if found else None

    with FakeKubelet(socket_path, [BERT, LLAMA]) as kubelet:
        start_monitor(
            "-c", str(node_config(short_dir)), "--kubernetes", socket_path,
            "--otlp", f"127.0.0.1:{collector.grpc_port}",
        )  # fmt: skip
        points = collector.wait_for(
            lambda points: (p := latest_of_core(points, "0")) is not None and "k8s.pod.name" in p.attributes,
            timeout=WAIT_S,
        )
        held = latest_of_core(points, "0").attributes
        assert (held["k8s.pod.name"], held["k8s.namespace.name"], held["k8s.container.name"]) == BERT_LABELS
        assert latest_of_core(points, "3").attributes["k8s.pod.name"] == "llama-7b"
        assert "k8s.pod.name" not in latest_of_core(points, "1").attributes
        kubelet.set_pods([LLAMA])  # bert-0 leaves
        collector.wait_for(
            lambda points: (
                (p := latest_of_core(points, "0")) is not None and "k8s.pod.name" not in p.attributes
            ),
            timeout=WAIT_S,
        )


def test_a_kubelet_that_goes_away_and_comes_back_is_one_warning_and_one_recovery_line(
    short_dir: Path, start_monitor: Callable[..., Monitor]
) -> None:
    socket_path = str(short_dir / "kubelet.sock")
    kubelet = FakeKubelet(socket_path, [BERT])
    try:
        monitor = start_monitor(
            "-c", str(node_config(short_dir)), "--kubernetes", socket_path, "--prometheus", "127.0.0.1:0",
            "--verbose", "2",
        )  # fmt: skip
        monitor.wait_for(lambda: held_series(monitor.series()), "the pod labels")
        kubelet.stop()
        # Metrics keep flowing, and a few seconds later without pod labels.
        monitor.wait_for(lambda: not held_series(monitor.series()), "the pod labels to go")
        reports_then = len(monitor.reports)
        monitor.wait_for(lambda: len(monitor.reports) >= reports_then + 2, "reports to go on")
        kubelet = FakeKubelet(socket_path, [LLAMA])
        monitor.wait_for(
            lambda: any(labels["k8s_pod_name"] == "llama-7b" for _, labels in held_series(monitor.series())),
            "the labels of the kubelet's new answer",
        )
    finally:
        kubelet.stop()
    kubelet_lines = [line for line in monitor.errors if "kubelet" in line]
    assert len(kubelet_lines) == 2, monitor.errors
    warning, recovery = kubelet_lines
    assert "WARNING" in warning and socket_path in warning and "no such socket" in warning
    assert "answers again" in recovery and socket_path in recovery
    assert not any("Traceback" in line for line in monitor.errors)


def test_a_hung_kubelet_makes_no_report_late(short_dir: Path) -> None:
    socket_path = str(short_dir / "kubelet.sock")
    with FakeKubelet(socket_path, [BERT]) as kubelet:
        kubelet.hang()
        finished = run_monitor(
            ["-c", str(node_config(short_dir)), "--imds", "off", "--kubernetes", socket_path,
             "--output-format", "2", "--max-reports", "10", "--verbose", "2"],
            timeout=60,
        )  # fmt: skip
        assert kubelet.calls >= 2  # it was asked, and held every call
    assert finished.returncode == 0, finished.stderr
    assert "Traceback" not in finished.stderr
    got = reports(finished.stdout)
    assert len(got) == 10
    periods = [
        group["period"]
        for report in got
        for entry in report["neuron_runtime_data"]
        for group in entry["report"].values()
    ] + [report["system_data"]["memory_info"]["period"] for report in got]
    # Every collection near its period, the first one included: the reads that hang (0.5 s each, a
    # whole period) run beside the ticks, never in them. The margin is for a loaded machine (a first
    # sysfs read can take 0.04 s there); one read in a tick would make a period twice as long.
    assert all(abs(period - PERIOD) <= 0.2 * PERIOD for period in periods), periods
    info = got[-1]["neuron_k8s_info"]
    assert info["error"] == f"{socket_path}: no answer within 0.5 s"
    assert info["neuroncores_k8s_info"] == {} and info["neurondevices_k8s_info"] == {}
    kubelet_lines = [line for line in finished.stderr.splitlines() if "kubelet" in line]
    assert len(kubelet_lines) == 1 and socket_path in kubelet_lines[0]


def test_garbage_on_the_socket_is_one_warning_and_metrics_without_pod_labels(short_dir: Path) -> None:
    socket_path = str(short_dir / "kubelet.sock")
    with GarbageSocket(socket_path):
        finished = run_monitor(
            ["-c", str(node_config(short_dir)), "--imds", "off", "--kubernetes", socket_path,
             "--output-format", "2", "--max-reports", "6", "--verbose", "2"],
            timeout=60,
        )  # fmt: skip
    assert finished.returncode == 0, finished.stderr
    assert "Traceback" not in finished.stderr
    got = reports(finished.stdout)
    assert len(got) == 6
    assert all(report["neuron_runtime_data"] for report in got)  # the metrics flow
    info = got[-1]["neuron_k8s_info"]
    assert info["error"].startswith(f"{socket_path}: ") and info["neuroncores_k8s_info"] == {}
    (warning,) = [line for line in finished.stderr.splitlines() if "kubelet" in line]
    assert socket_path in warning


@pytest.mark.parametrize(
    ("value", "complaint"),
    [
        ("", "the kubelet's socket path is empty"),
        (
            "{dir}",
            "{dir} is a directory; the kubelet's socket is /var/lib/kubelet/pod-resources/kubelet.sock",
        ),
        ("{dir}/monitor.conf", "{dir}/monitor.conf is not a socket"),
        ("/" + "x" * 120, "is longer than a unix socket path can be (107 bytes)"),
    ],
)
def test_a_bad_socket_is_one_line_and_exit_2(short_dir: Path, value: str, complaint: str) -> None:
    config = node_config(short_dir)
    value, complaint = value.format(dir=short_dir), complaint.format(dir=short_dir)
    finished = run_monitor(["-c", str(config), f"--kubernetes={value}", "--max-reports", "1"])
    assert finished.returncode == 2
    assert finished.stdout == ""
    assert finished.stderr.startswith("otel-neuron-monitor: --kubernetes: ")
    assert complaint in finished.stderr and finished.stderr.count("\n") == 1


def test_the_default_socket_and_a_unix_address_are_accepted(short_dir: Path) -> None:
    socket_path = str(short_dir / "kubelet.sock")
    with FakeKubelet(socket_path, [BERT]):
        finished = run_monitor(
            ["-c", str(node_config(short_dir)), "--imds", "off", f"--kubernetes=unix://{socket_path}",
             "--output-format", "2", "--max-reports", "4"],
            timeout=60,
        )  # fmt: skip
    assert finished.returncode == 0, finished.stderr
    assert (
        reports(finished.stdout)[-1]["neuron_k8s_info"]["neuroncores_k8s_info"]["0"]["pod_name"] == "bert-0"
    )
    # No value: the kubelet's own path, which this machine does not have (a warning, not an error).
    finished = run_monitor(
        ["-c", str(node_config(short_dir)), "--imds", "off", "--kubernetes", "--output-format", "2",
         "--max-reports", "2", "--verbose", "2"],
        timeout=60,
    )  # fmt: skip
    assert finished.returncode == 0, finished.stderr
    assert "/var/lib/kubelet/pod-resources/kubelet.sock" in finished.stderr
    assert (
        "/var/lib/kubelet/pod-resources/kubelet.sock"
        in reports(finished.stdout)[-1]["neuron_k8s_info"]["error"]
    )
