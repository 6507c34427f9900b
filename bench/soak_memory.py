"""Does memory stay flat? RSS growth in MB/h of three long-running subjects, polled at 100 ms.

  monitor     otel-neuron-monitor with four `sim:` runtimes inside it (the five runtime groups each,
              and both system groups), every group at 100 ms, its JSON report to /dev/null
  simulator   an otel-neuron-simulator process (200 inferences/s, a model replaced every 30 s on
              average: --churn, also for the monitor's), polled at 100 ms by
              an otel-neuron-monitor reading its five runtime groups
  in-app      an inference service recording a steady request rate into the process recorder, each
              request on a thread of its own (as http.server's ThreadingHTTPServer serves them); its
              NeuronInstrumentor is read every 100 ms by the app's own reader (the JSON report to
              /dev/null), and its runtime endpoint polled at 100 ms by an otel-neuron-monitor

All run at once, as child processes of this script; each subject's RSS (/proc/PID/status VmRSS)
is sampled every --sample seconds. Printed per subject: the least-squares slope of RSS over time
before the end of the warm-up and after it, in MB/h. Goal (issue 15): after warm-up <= 1 MB/h
each, over at least 10 minutes.

Run: .venv/bin/python bench/soak_memory.py [--duration 2700] [--warm-up 1200] [--sample 2]
(the default: 20 minutes for the histograms' buckets and the heap to fill, then 25 measured)
(the otel_neuron it runs is the one on PYTHONPATH, so an old checkout can be measured the same way:
PYTHONPATH=/tmp/old/src .venv/bin/python bench/soak_memory.py)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

PERIOD = "100ms"
RUNTIME_GROUPS = [
    "neuroncore_counters",
    "inference_stats",
    "memory_used",
    "hw_counters",
    "neuron_runtime_vcpu_usage",
]
SYSTEM_GROUPS = ["vcpu_usage", "memory_info"]
APP_REQUEST_RATE = 100.0  # requests per second into the in-app recorder


def monitor_config(addresses: Sequence[str], system: bool) -> dict[str, object]:
    return {
        "period": PERIOD,
        "neuron_runtimes": [
            {"address": address, "metrics": [{"type": group} for group in RUNTIME_GROUPS]}
            for address in addresses
        ],
        "system_metrics": [{"type": group} for group in SYSTEM_GROUPS] if system else [],
    }


@dataclass
class Subject:
    name: str
    process: subprocess.Popen[bytes]
    samples: list[tuple[float, float]] = field(default_factory=list)  # (seconds since start, RSS MB)


def rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def slope_mb_per_hour(samples: Sequence[tuple[float, float]]) -> float | None:
    """Least-squares slope of RSS against time, in MB per hour (None with fewer than 3 samples)."""
    if len(samples) < 3:
        return None
    n = len(samples)
    mean_t = sum(t for t, _ in samples) / n
    mean_m = sum(m for _, m in samples) / n
    spread = sum((t - mean_t) ** 2 for t, _ in samples)
    if spread == 0:
        return None
    return sum((t - mean_t) * (m - mean_m) for t, m in samples) / spread * 3600


def wait_for_socket(path: Path, process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"soak_memory: {path} never appeared (exit status {process.poll()})")
        time.sleep(0.1)


def start_monitor(
    config: dict[str, object], directory: Path, name: str, log: Path
) -> subprocess.Popen[bytes]:
    path = directory / f"{name}.conf"
    path.write_text(json.dumps(config))
    command = [sys.executable, "-m", "otel_neuron", "-c", str(path), "--imds", "off"]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log.open("wb"))


def run_soak(arguments: argparse.Namespace) -> int:
    environment = {**os.environ, "GRPC_VERBOSITY": "ERROR"}
    os.environ.update(environment)
    subjects: list[Subject] = []
    pollers: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="soak-memory-") as name:
        directory = Path(name)
        logs = directory / "logs"
        logs.mkdir()
        try:
            sims = [f"sim:?seed={seed}&churn={arguments.churn:g}" for seed in range(1, 5)]
            subjects.append(
                Subject(
                    "monitor",
                    start_monitor(monitor_config(sims, True), directory, "monitor", logs / "monitor"),
                )
            )
            simulator_socket = directory / "sim.sock"
            simulator = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "otel_neuron.runtime.simulator_cli",
                    "--address",
                    f"unix:{simulator_socket}",
                    "--churn",
                    f"{arguments.churn:g}",
                ],
                stdout=subprocess.DEVNULL,
                stderr=(logs / "simulator").open("wb"),
            )
            subjects.append(Subject("simulator", simulator))
            app_socket = directory / "app.sock"
            app = subprocess.Popen(
                [sys.executable, __file__, "--app", f"unix:{app_socket}", "--rate", str(arguments.rate)],
                stdout=subprocess.DEVNULL,
                stderr=(logs / "app").open("wb"),
            )
            subjects.append(Subject("in-app", app))
            wait_for_socket(simulator_socket, simulator)
            wait_for_socket(app_socket, app)
            for poller_name, socket in (("simulator-poller", simulator_socket), ("app-poller", app_socket)):
                config = monitor_config([f"unix:{socket}"], False)
                pollers.append(start_monitor(config, directory, poller_name, logs / poller_name))
            return measure(subjects, pollers, arguments, logs)
        finally:
            for process in [*pollers, *(subject.process for subject in subjects)]:
                if process.poll() is None:
                    process.terminate()
            for process in [*pollers, *(subject.process for subject in subjects)]:
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()


def measure(
    subjects: list[Subject], pollers: list[subprocess.Popen[bytes]], arguments: argparse.Namespace, logs: Path
) -> int:
    start = time.monotonic()
    next_sample = start
    last_line = start
    while (now := time.monotonic()) - start < arguments.duration:
        for subject in subjects:
            rss = rss_mb(subject.process.pid)
            if subject.process.poll() is not None or rss is None:
                print(f"soak_memory: {subject.name} ended early:", file=sys.stderr)
                print((logs / subject.name).read_text(errors="replace")[-2000:], file=sys.stderr)
                return 1
            subject.samples.append((now - start, rss))
        for poller in pollers:
            if poller.poll() is not None:
                print(f"soak_memory: a poller ended early (exit {poller.returncode})", file=sys.stderr)
                return 1
        if now - last_line >= 60:
            last_line = now
            figures = "  ".join(f"{s.name} {s.samples[-1][1]:.1f} MB" for s in subjects)
            print(f"  {now - start:5.0f} s  {figures}", flush=True)
        next_sample += arguments.sample
        time.sleep(max(0.0, next_sample - time.monotonic()))
    report(subjects, arguments)
    if arguments.samples:
        with open(arguments.samples, "w") as out:
            for subject in subjects:
                out.writelines(f"{t:.1f},{subject.name},{mb:.2f}\n" for t, mb in subject.samples)
    return 0


def report(subjects: list[Subject], arguments: argparse.Namespace) -> None:
    warm_up = arguments.warm_up
    print(
        f"RSS growth over {arguments.duration:g} s (warm-up {warm_up:g} s, a sample every "
        f"{arguments.sample:g} s), least-squares slope; goal after warm-up <= 1 MB/h"
    )
    print(f"  {'subject':<10} {'start MB':>9} {'end MB':>8} {'before warm-up':>16} {'after warm-up':>15}")
    for subject in subjects:
        before = slope_mb_per_hour([s for s in subject.samples if s[0] < warm_up])
        after = slope_mb_per_hour([s for s in subject.samples if s[0] >= warm_up])
        print(
            f"  {subject.name:<10} {subject.samples[0][1]:9.1f} {subject.samples[-1][1]:8.1f} "
            f"{_rate(before):>16} {_rate(after):>15}"
        )


def _rate(slope: float | None) -> str:
    return "n/a" if slope is None else f"{slope:+.2f} MB/h"


# -- the in-app subject (a child process of the soak) -------------------------------------------


def run_app(address: str, rate: float) -> int:
    """An inference service: a steady `rate` of requests, each on its own thread, recorded in-app."""
    import random

    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    import otel_neuron
    from otel_neuron.exporters.report_json import ReportJsonExporter

    recorder = otel_neuron.recorder()
    recorder.register_model("resnet50", [otel_neuron.Subgraph("sg00", core=0, device_bytes=512 << 20)])
    devnull = open(os.devnull, "w")  # noqa: SIM115 - open for the life of the process
    reader = PeriodicExportingMetricReader(
        ReportJsonExporter(runtime_count=1, out=devnull), export_interval_millis=100
    )
    provider = MeterProvider(metric_readers=[reader], views=otel_neuron.latency_views())
    instrumentor = otel_neuron.NeuronInstrumentor()
    instrumentor.instrument(meter_provider=provider)
    server = otel_neuron.serve_runtime_endpoint(address)
    rng = random.Random(1)

    def handle(latency: float, fails: bool) -> None:
        try:
            with recorder.time("resnet50"):
                time.sleep(latency)
                if fails:
                    raise otel_neuron.TransientError("device busy")
        except otel_neuron.TransientError:
            pass

    interval = 1.0 / rate
    due = time.monotonic()
    try:
        while True:
            due += interval
            threading.Thread(target=handle, args=(rng.lognormvariate(-6.0, 0.4), rng.random() < 0.02)).start()
            time.sleep(max(0.0, due - time.monotonic()))
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        provider.shutdown()
        instrumentor.uninstrument()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=2700.0, help="seconds in all (default 2700)")
    parser.add_argument(
        "--warm-up", type=float, default=1200.0, help="seconds before the fit that counts (default 1200)"
    )
    parser.add_argument("--sample", type=float, default=2.0, help="seconds between RSS samples (default 2)")
    parser.add_argument("--rate", type=float, default=APP_REQUEST_RATE, help="in-app requests per second")
    parser.add_argument(
        "--churn", type=float, default=30.0, help="simulators' mean seconds between model changes (0: none)"
    )
    parser.add_argument("--samples", metavar="CSV", help="write every sample there (seconds,subject,MB)")
    parser.add_argument("--app", metavar="ADDRESS", help=argparse.SUPPRESS)  # run as the in-app subject
    arguments = parser.parse_args()
    if arguments.app:
        import signal

        signal.signal(signal.SIGTERM, signal.default_int_handler)
        return run_app(arguments.app, arguments.rate)
    return run_soak(arguments)


if __name__ == "__main__":
    sys.exit(main())
