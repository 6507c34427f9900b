"""CPU per exposed sample of `--prometheus` scraped every second, against node_exporter in the same run.

Three processes run side by side for --seconds, on one fake /proc with 192 vCPUs (rewritten in place
every 250 ms by bench_monitor.py's writer, in a process of its own):

  monitor + prometheus   the real CLI: vcpu_usage and memory_info every second (the JSON report to
                         /dev/null, as always), `--prometheus` (otel names) scraped every second
  monitor                the same CLI without --prometheus, not scraped: what the collection costs
  node_exporter          Debian's prometheus-node-exporter on 127.0.0.1 with only its cpu, meminfo and
                         stat collectors (`--collector.disable-defaults`), `--path.procfs` on the fake
                         /proc, scraped every second

Each scrape asks what Prometheus 2 asks (OpenMetrics or the text format, gzip); `--accept text` asks
for the text format only. Samples are counted in each answer (lines not starting with `#`).
Printed: each process's CPU (% of one core, from /proc/<pid>/stat), samples per scrape, CPU per
sample, and the monitor's CPU per sample over node_exporter's (goal, issue 19.2: below 1).

node_exporter is installed with apt-get when missing and this runs as root; otherwise the bench
says so and measures the monitor alone. Every server listens on 127.0.0.1 only.

`--baseline-src DIR` adds a fourth process, `monitor + prometheus` from another checkout's src/
(e.g. `git worktree add /tmp/before <revision>`), scraped the same way.

Run: .venv/bin/python bench/bench_prometheus.py [--seconds 60] [--rounds 1] [--accept prometheus|text]
     [--baseline-src /tmp/before/src]
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).parent))
from fake_procfs import write_fake_procfs  # noqa: E402

VCPUS = 192
NODE_EXPORTER = "prometheus-node-exporter"
NODE_EXPORTER_PACKAGE = "prometheus-node-exporter"
# Prometheus 2.x's Accept header (its scrape default), and the text format alone.
ACCEPT = {
    "prometheus": "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
    "text": "text/plain;version=0.0.4",
}
WARM_UP_S = 5.0
START_TIMEOUT_S = 20.0
SCRAPE_TIMEOUT_S = 10.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, name: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {START_TIMEOUT_S} s")


def node_exporter_path() -> str | None:
    """The node_exporter binary, installed with apt-get if missing and we are root; None if absent."""
    found = shutil.which(NODE_EXPORTER)
    if found is None and os.geteuid() == 0 and shutil.which("apt-get"):
        print(f"installing {NODE_EXPORTER_PACKAGE} with apt-get ...", flush=True)
        subprocess.run(
            ["apt-get", "install", "-y", "--no-install-recommends", NODE_EXPORTER_PACKAGE],
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
            stdout=subprocess.DEVNULL,
            check=False,
        )
        found = shutil.which(NODE_EXPORTER)
    return found


@dataclass
class Target:
    """A process, and the scrapes of its /metrics (port None: not scraped)."""

    name: str
    process: subprocess.Popen[bytes]
    port: int | None
    samples: list[int] = field(default_factory=list)
    failures: int = 0
    cpu_s: float = 0.0  # of the measured run

    def cpu_now_s(self) -> float:
        times = psutil.Process(self.process.pid).cpu_times()
        return float(times.user + times.system)


def scrape(port: int, accept: str) -> int:
    """One scrape as Prometheus makes it; the number of samples in the answer."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=SCRAPE_TIMEOUT_S)
    try:
        connection.request("GET", "/metrics", headers={"Accept": accept, "Accept-Encoding": "gzip"})
        response = connection.getresponse()
        body = response.read()
        if response.status != 200:
            raise OSError(f"status {response.status}")
        if response.getheader("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
    finally:
        connection.close()
    return sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))


def scrape_every_second(targets: Sequence[Target], accept: str, stop: threading.Event) -> None:
    """Scrape each target once a second (the targets half a second apart from the monitor's ticks)."""
    next_at = time.monotonic()
    while not stop.wait(max(next_at - time.monotonic(), 0.0)):
        next_at += 1.0
        for target in targets:
            assert target.port is not None
            try:
                target.samples.append(scrape(target.port, accept))
            except OSError:
                target.failures += 1


def start_monitor(directory: Path, port: int | None, source: Path | None = None) -> subprocess.Popen[bytes]:
    config = directory / "monitor.conf"
    config.write_text(
        json.dumps({"period": "1s", "system_metrics": [{"type": "vcpu_usage"}, {"type": "memory_info"}]})
    )
    command = [sys.executable, "-m", "otel_neuron", "--imds", "off", "-c", str(config)]
    if port is not None:
        command += ["--prometheus", f"127.0.0.1:{port}"]
    environment = {**os.environ, "OTEL_NEURON_PROCFS_PATH": str(directory / "proc")}
    if source is not None:  # another checkout's package (its src/ directory)
        environment["PYTHONPATH"] = str(source)
    return subprocess.Popen(command, env=environment, stdout=subprocess.DEVNULL)


def start_node_exporter(binary: str, procfs: Path, port: int) -> subprocess.Popen[bytes]:
    command = [
        binary,
        f"--web.listen-address=127.0.0.1:{port}",
        "--collector.disable-defaults",
        "--collector.cpu",
        "--collector.meminfo",
        "--collector.stat",
        f"--path.procfs={procfs}",
    ]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def measure(targets: Sequence[Target], seconds: float, accept: str) -> float:
    """Scrape the scraped targets every second for WARM_UP_S + `seconds`; the measured wall time."""
    stop = threading.Event()
    scraped = [target for target in targets if target.port is not None]
    scraper = threading.Thread(target=scrape_every_second, args=(scraped, accept, stop), daemon=True)
    scraper.start()
    try:
        time.sleep(WARM_UP_S)
        before = {target.name: target.cpu_now_s() for target in targets}
        for target in targets:
            target.samples[:], target.failures = [], 0
        started = time.monotonic()
        time.sleep(seconds)
        for target in targets:
            target.cpu_s = target.cpu_now_s() - before[target.name]
        return time.monotonic() - started
    finally:
        stop.set()
        scraper.join()


def report(targets: Sequence[Target], wall: float) -> None:
    per_sample: dict[str, float] = {}
    for target in targets:
        percent = target.cpu_s / wall * 100.0
        line = f"  {target.name:22} {percent:6.3f} % of a core"
        if target.port is not None:
            samples = max(target.samples) if target.samples else 0
            scrapes = len(target.samples)
            if samples:
                per_sample[target.name] = percent / samples
                line += f"   {samples:5d} samples, {scrapes} scrapes ({target.failures} failed)"
                line += f"   {percent / samples * 1e3:.3f} m% per sample"
        print(line)
    plain = next((t for t in targets if t.name == "monitor"), None)
    scraped = next((t for t in targets if t.name == "monitor + prometheus"), None)
    if plain is not None and scraped is not None:
        extra = (scraped.cpu_s - plain.cpu_s) / wall * 100.0
        print(f"  --prometheus itself (difference of the two monitors): {extra:.3f} % of a core")
    if "node_exporter" in per_sample and "monitor + prometheus" in per_sample:
        for name in per_sample:
            if name.endswith("prometheus"):
                ratio = per_sample[name] / per_sample["node_exporter"]
                print(f"  {name} / node_exporter, CPU per exposed sample: {ratio:.2f}x (goal < 1)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="measured seconds per round (default 60)")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--accept", choices=sorted(ACCEPT), default="prometheus")
    parser.add_argument(
        "--baseline-src",
        type=Path,
        help="also run `monitor + prometheus` from this src/ directory (another checkout, e.g. a git "
        "worktree of an older revision), scraped the same way",
    )
    args = parser.parse_args()
    binary = node_exporter_path()
    if binary is None:
        print(
            f"{NODE_EXPORTER} is not installed (apt-get install {NODE_EXPORTER_PACKAGE}, as root): "
            "measuring the monitor alone"
        )
    print(
        f"{VCPUS} vCPUs (fake /proc), scraped every second asking {args.accept!r} with gzip, "
        f"{args.seconds:g} s per round after {WARM_UP_S:g} s of warm-up"
    )
    with tempfile.TemporaryDirectory(prefix="bench-prom-") as name, ExitStack() as stack:
        directory = Path(name)
        write_fake_procfs(directory / "proc", cpus=VCPUS)
        writer = subprocess.Popen(
            [
                sys.executable,
                str(Path(__file__).with_name("bench_monitor.py")),
                "--advance-procfs",
                str(directory / "proc"),
            ]
        )
        stack.callback(_stop, writer)
        ports = {"monitor + prometheus": free_port(), "node_exporter": free_port()}
        targets = [
            Target(
                "monitor + prometheus",
                start_monitor(directory, ports["monitor + prometheus"]),
                ports["monitor + prometheus"],
            ),
            Target("monitor", start_monitor(directory, None), None),
        ]
        if args.baseline_src is not None:
            port = free_port()
            baseline = start_monitor(directory, port, args.baseline_src.resolve())
            targets.append(Target("baseline + prometheus", baseline, port))
        if binary is not None:
            node = start_node_exporter(binary, directory / "proc", ports["node_exporter"])
            targets.append(Target("node_exporter", node, ports["node_exporter"]))
        for target in targets:
            stack.callback(_stop, target.process)
            if target.port is not None:
                wait_for_port(target.port, target.name, target.process)
        for round_number in range(1, args.rounds + 1):
            wall = measure(targets, args.seconds, ACCEPT[args.accept])
            print(f"round {round_number}: {wall:.1f} s")
            report(targets, wall)


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


if __name__ == "__main__":
    main()
