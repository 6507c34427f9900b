"""CPU of the monitor with --otlp at trn2 scale, against the same monitor without it, in one run.

Each variant is the real CLI (`python -m otel_neuron -c bench.conf --imds off`, the JSON report to
/dev/null) over bench_monitor.py's trn2-scale setup: 16 simulated runtimes (8 NeuronCores, 4 models
each), one process each, and a fake /proc with 192 vCPUs (OTEL_NEURON_PROCFS_PATH) rewritten by
another process; every group at 1 s. Its CPU is measured from outside (all its threads, from
/proc/PID/task/*/schedstat) over --seconds, after WARM_UP_S of start-up (baselines, connections, the first
OTLP request, which encodes every attribute set once). The variants run in turn and the whole is
repeated --rounds times; each ratio is taken against the plain run of its own round.

  plain         the JSON report only (the anchor)
  otlp          + --otlp to a local collector over gRPC, every collection (the default)
  otlp http     + the same over HTTP/protobuf (OTEL_EXPORTER_OTLP_PROTOCOL)
  otlp 10 s     + --otlp with OTEL_METRIC_EXPORT_INTERVAL=10000
  stock SDK     + --otlp through the SDK's own OTLPMetricExporter (encode_metrics): what --otlp
                  cost before the requests were encoded from the producer's columns

The collector is rotel (`pip install rotel`) on 127.0.0.1 with its blackhole exporter, in its own
process. The monitor runs at --verbose 1: any export error would be on its stderr, whose line count
is printed for each run (0 expected).

Goal (issue 19.1): otlp / plain <= 2.
Run: .venv/bin/python bench/bench_otlp.py [--seconds 20] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_monitor import CORES, MODELS, RUNTIMES, VCPUS, config_text  # noqa: E402
from fake_procfs import write_fake_procfs  # noqa: E402

GOAL_RATIO = 2.0
WARM_UP_S = 6.0
START_TIMEOUT_S = 15.0

# The CLI with build_otlp_exporter returning the SDK's plain exporter: the "stock SDK" variant.
STOCK_SDK_MAIN = """
import sys
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
import otel_neuron.exporters.otlp as otlp
otlp.build_otlp_exporter = lambda endpoint=None, environ=None: OTLPMetricExporter(
    endpoint=otlp.normalize_endpoint(endpoint, "grpc"))
from otel_neuron.cli import main
sys.exit(main(sys.argv[1:]))
"""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rotel_binary() -> str:
    try:
        import rotel
    except ImportError:
        sys.exit("bench_otlp: rotel is not installed (pip install rotel)")
    return str(Path(rotel.__file__).parent / "rotel-agent")


@contextmanager
def local_collector() -> Iterator[tuple[int, int]]:
    """rotel on 127.0.0.1 (gRPC port, HTTP port), receiving metrics into its blackhole exporter."""
    grpc_port, http_port = free_port(), free_port()
    environment = {
        **os.environ,
        "ROTEL_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{grpc_port}",
        "ROTEL_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{http_port}",
        "ROTEL_EXPORTER": "blackhole",
        "ROTEL_OTLP_RECEIVER_TRACES_DISABLED": "true",
        "ROTEL_OTLP_RECEIVER_LOGS_DISABLED": "true",
    }
    process = subprocess.Popen(
        [rotel_binary(), "start"], env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        for port in (grpc_port, http_port):
            wait_for_port(port, process)
        yield grpc_port, http_port
    finally:
        process.terminate()
        process.wait(10)


def wait_for_port(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"bench_otlp: the collector exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"bench_otlp: nothing listened on 127.0.0.1:{port} within {START_TIMEOUT_S} s")


def variants(grpc_port: int, http_port: int) -> dict[str, tuple[list[str], dict[str, str]]]:
    """Each variant's extra arguments and environment."""
    grpc, http = f"127.0.0.1:{grpc_port}", f"127.0.0.1:{http_port}"
    return {
        "plain": ([], {}),
        "otlp": (["--otlp", grpc], {}),
        "otlp http": (["--otlp", http], {"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}),
        "otlp 10 s": (["--otlp", grpc], {"OTEL_METRIC_EXPORT_INTERVAL": "10000"}),
        "stock SDK": (["--otlp", grpc, "--stock-sdk"], {}),
    }


def measure(
    directory: str, arguments: Sequence[str], environment: dict[str, str], seconds: float
) -> tuple[float, int]:
    """% of one core of one monitor process over `seconds` after its warm-up, and its stderr lines."""
    stock = "--stock-sdk" in arguments
    arguments = [a for a in arguments if a != "--stock-sdk"]
    program = ["-c", STOCK_SDK_MAIN] if stock else ["-m", "otel_neuron"]
    command = [sys.executable, *program, "-c", f"{directory}/bench.conf", "--imds", "off", "--verbose", "1"]
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("OTEL_METRIC", "OTEL_EXPORTER_OTLP"))},
        "OTEL_NEURON_PROCFS_PATH": f"{directory}/proc",
        **environment,
    }
    with open(f"{directory}/stderr", "w+") as stderr:
        monitor = subprocess.Popen([*command, *arguments], env=env, stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            time.sleep(WARM_UP_S)
            before, started = cpu_ns(monitor.pid), time.monotonic()
            time.sleep(seconds)
            cpu, wall = (cpu_ns(monitor.pid) - before) / 1e9, time.monotonic() - started
        finally:
            monitor.terminate()
            monitor.wait(10)
        stderr.seek(0)
        lines = [line for line in stderr.read().splitlines() if line.strip()]
    return cpu / wall * 100.0, len(lines)


def cpu_ns(pid: int) -> int:
    """CPU time of all of a process's threads, in ns (Linux schedstat: finer than /proc/PID/stat's
    clock ticks, which would be a tenth of what a 20 s run at 0.5 % measures)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # a thread that ended meanwhile
    return total


def run(directory: str, seconds: float, rounds: int) -> None:
    with local_collector() as (grpc_port, http_port):
        chosen = variants(grpc_port, http_port)
        percents: dict[str, list[float]] = {name: [] for name in chosen}
        ratios: dict[str, list[float]] = {name: [] for name in chosen}
        for round_index in range(rounds):
            print(f"round {round_index + 1} of {rounds}")
            plain = 0.0
            for name, (arguments, environment) in chosen.items():
                percent, errors = measure(directory, arguments, environment, seconds)
                plain = percent if name == "plain" else plain
                percents[name].append(percent)
                ratios[name].append(percent / plain)
                print(f"  {name:<10} {percent:7.3f} % of one core  ({errors} lines on stderr)", flush=True)
    print(f"\nmedian over {rounds} rounds of {seconds:g} s, each ratio against the plain run of its round:")
    for name in chosen:
        ratio = statistics.median(ratios[name])
        goal = f"   (goal <= {GOAL_RATIO:g})" if name == "otlp" else ""
        spread = f"{min(ratios[name]):.2f}-{max(ratios[name]):.2f}"
        print(
            f"  {name:<10} {statistics.median(percents[name]):7.3f} %   {name} / plain {ratio:5.2f}x"
            f" ({spread}){goal}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="how long each run is measured")
    parser.add_argument("--rounds", type=int, default=3, help="how many times each variant runs")
    args = parser.parse_args()
    print(
        f"python {sys.version.split()[0]}; {RUNTIMES} runtimes x {CORES} cores x {MODELS} models "
        f"+ {VCPUS} vCPUs; simulators, /proc writer and collector in other processes"
    )
    with tempfile.TemporaryDirectory(prefix="bench-otlp-", dir="/tmp") as directory:
        write_fake_procfs(Path(directory) / "proc", cpus=VCPUS)
        Path(directory, "bench.conf").write_text(config_text(directory))
        bench_dir = Path(__file__).parent
        serve = [
            sys.executable,
            str(bench_dir / "bench_runtime.py"),
            "--serve",
            directory,
            "1",
            str(CORES),
            str(MODELS),
        ]
        runtimes = [  # one process per runtime, as Neuron runtimes are
            subprocess.Popen([*serve, str(index)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            for index in range(RUNTIMES)
        ]
        writer = subprocess.Popen(
            [
                sys.executable,
                str(bench_dir / "bench_monitor.py"),
                "--advance-procfs",
                str(Path(directory) / "proc"),
            ]
        )
        try:
            for runtime in runtimes:
                assert runtime.stdout is not None and runtime.stdout.readline().strip() == "ready"
            run(directory, args.seconds, args.rounds)
        finally:
            stop_children(runtimes, writer)


def stop_children(runtimes: Sequence[subprocess.Popen[str]], writer: subprocess.Popen[bytes]) -> None:
    for runtime in runtimes:
        assert runtime.stdin is not None
        runtime.stdin.close()
    for runtime in runtimes:
        runtime.wait(timeout=10)
    writer.terminate()
    writer.wait(timeout=10)


if __name__ == "__main__":
    main()
