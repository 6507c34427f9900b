"""Start-up time and resident memory of otel-neuron-monitor, against the bare interpreter in the same run.

  start-up   wall time of `otel-neuron-monitor --version` and of `--help` (output to /dev/null),
             against `python -c pass`: the interpreter's own floor. Runs interleaved, the median of
             --rounds each.
  memory     VmRSS of an otel-neuron-monitor process at trn2 scale after --warm-up seconds: 16
             runtimes x 8 NeuronCores (4 models each, 64 models; simulators in child processes, on
             unix sockets) with the five runtime groups, vcpu_usage + memory_info over a fake /proc
             with 192 vCPUs rewritten every 250 ms, every group at 1 s, the JSON report to /dev/null
             (--imds off); then the same with --otlp to a local rotel collector (OTLP/gRPC, blackhole
             exporter; skipped when rotel is not installed). Against the RSS of
             `python -c "import time; time.sleep(5)"`. The figure is the largest of the samples taken
             every 0.5 s over the --sample seconds after warm-up.

Every child runs with its bytecode cached (PYTHONPYCACHEPREFIX in a temporary directory, whatever
PYTHONDONTWRITEBYTECODE says), as an installed package runs, after one unmeasured run that fills it.

Goals (issue 19.3): --version and --help under 0.1 s wall; RSS with the JSON report under 45 MB.
Run: .venv/bin/python bench/bench_footprint.py [--rounds 15] [--warm-up 10] [--sample 5]
(the otel_neuron measured is the one on PYTHONPATH, so an older checkout is measured the same way:
PYTHONPATH=/tmp/old/src .venv/bin/python bench/bench_footprint.py)
"""

from __future__ import annotations

import argparse
import os
import shutil
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

STARTUP_GOAL_S = 0.1
RSS_GOAL_MB = 45.0
MONITOR = [sys.executable, "-m", "otel_neuron"]
SLEEPER = [sys.executable, "-c", "import time; time.sleep(5)"]


def startup_commands() -> dict[str, list[str]]:
    """The interpreter floor and the two commands, as a user runs them (the console script)."""
    script = Path(sys.executable).with_name("otel-neuron-monitor")
    monitor = [sys.executable, str(script)] if script.exists() else MONITOR
    return {
        "python -c pass": [sys.executable, "-c", "pass"],
        "otel-neuron-monitor --version": [*monitor, "--version"],
        "otel-neuron-monitor --help": [*monitor, "--help"],
    }


def wall_s(command: Sequence[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def startup(rounds: int) -> None:
    commands = startup_commands()
    samples: dict[str, list[float]] = {name: [] for name in commands}
    for command in commands.values():  # once each first: files into the page cache
        wall_s(command)
    for _ in range(rounds):
        for name, command in commands.items():
            samples[name].append(wall_s(command))
    floor = statistics.median(samples["python -c pass"])
    print(f"start-up, wall time (median of {rounds}, interleaved)   goal < {STARTUP_GOAL_S} s")
    for name, values in samples.items():
        median = statistics.median(values)
        print(f"  {name:<32} {median * 1e3:7.1f} ms   {median / floor:5.1f}x the interpreter")


def rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def peak_rss_mb(process: subprocess.Popen[bytes], warm_up: float, sample: float) -> float:
    """The largest VmRSS of `process` sampled every 0.5 s over `sample` seconds after `warm_up`."""
    time.sleep(warm_up)
    peak = 0.0
    deadline = time.monotonic() + sample
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode} during the measurement")
        peak = max(peak, rss_mb(process.pid) or 0.0)
        if time.monotonic() >= deadline:
            return peak
        time.sleep(0.5)


@contextmanager
def running(command: Sequence[str], env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, env=env)
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def trn2_scale(directory: Path) -> Iterator[Path]:
    """16 simulated runtimes and a 192-vCPU /proc being rewritten; yields the monitor's config file."""
    proc = write_fake_procfs(directory / "proc", cpus=VCPUS)
    here = Path(__file__).parent
    runtimes = [
        subprocess.Popen(
            [sys.executable, str(here / "bench_runtime.py"), "--serve", str(directory), "1"]
            + [str(CORES), str(MODELS), str(index)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for index in range(RUNTIMES)
    ]
    writer = subprocess.Popen([sys.executable, str(here / "bench_monitor.py"), "--advance-procfs", str(proc)])
    try:
        for runtime in runtimes:
            assert runtime.stdout is not None and runtime.stdout.readline().strip() == "ready"
        config = directory / "monitor.conf"
        config.write_text(config_text(str(directory)))
        yield config
    finally:
        for runtime in runtimes:
            assert runtime.stdin is not None
            runtime.stdin.close()
        for runtime in runtimes:
            runtime.wait(timeout=10)
        writer.terminate()
        writer.wait(timeout=10)


@contextmanager
def rotel_collector(directory: Path) -> Iterator[str | None]:
    """A local rotel collector receiving OTLP/gRPC into its blackhole exporter; yields its endpoint."""
    binary = rotel_binary()
    if binary is None:
        yield None
        return
    sys.path.insert(0, str(Path(__file__).parents[1] / "tests" / "integration"))
    from peers import free_port, stop, wait_for_port

    grpc_port, http_port = free_port(), free_port()
    environment = {key: value for key, value in os.environ.items() if not key.startswith("ROTEL_")}
    environment.update(
        {
            "ROTEL_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{grpc_port}",
            "ROTEL_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{http_port}",
            "ROTEL_EXPORTER": "blackhole",
            "ROTEL_PID_FILE": str(directory / "rotel.pid"),
            "ROTEL_LOG_FILE": str(directory / "rotel.log"),
        }
    )
    with open(directory / "rotel.out", "wb") as log:
        process = subprocess.Popen([binary, "start"], env=environment, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port(grpc_port, process)
        yield f"http://127.0.0.1:{grpc_port}"
    finally:
        stop(process)


def rotel_binary() -> str | None:
    try:
        import rotel
    except ImportError:
        return shutil.which("rotel-agent")
    candidate = Path(rotel.__file__).parent / "rotel-agent"
    return str(candidate) if candidate.exists() else shutil.which("rotel-agent")


def memory(warm_up: float, sample: float) -> None:
    with running(SLEEPER) as sleeper:
        time.sleep(1.0)
        floor = rss_mb(sleeper.pid) or 0.0
    print(
        f"\nresident memory (VmRSS, the largest over {sample:g} s after {warm_up:g} s of warm-up)"
        f"   goal < {RSS_GOAL_MB:g} MB with the JSON report"
    )
    print(f"  {'python sleeping (the floor)':<46} {floor:6.1f} MB")
    print(
        f"  ({RUNTIMES} runtimes x {CORES} cores x {MODELS} models, {VCPUS} vCPUs, every group at 1 s, "
        "JSON report to /dev/null)"
    )
    env = {**os.environ, "GRPC_VERBOSITY": "ERROR"}
    with tempfile.TemporaryDirectory(prefix="bench-footprint-", dir="/tmp") as name:
        directory = Path(name)
        env["OTEL_NEURON_PROCFS_PATH"] = str(directory / "proc")
        with trn2_scale(directory) as config:
            base = [*MONITOR, "-c", str(config), "--imds", "off"]
            subprocess.run([*base, "--max-reports", "2"], env=env, stdout=subprocess.DEVNULL, check=True)
            with running(base, env) as monitor:
                plain = peak_rss_mb(monitor, warm_up, sample)
            print(f"  {'otel-neuron-monitor, JSON report':<46} {plain:6.1f} MB   {plain - floor:+6.1f} MB")
            with rotel_collector(directory) as endpoint:
                if endpoint is None:
                    print("  --otlp: not measured (rotel-agent is not installed)")
                    return
                otlp_command = [*base, "--otlp", endpoint]
                subprocess.run(
                    [*otlp_command, "--max-reports", "2"], env=env, stdout=subprocess.DEVNULL, check=True
                )
                with running(otlp_command, env) as monitor:
                    otlp = peak_rss_mb(monitor, warm_up, sample)
            label = "otel-neuron-monitor --otlp (rotel on 127.0.0.1)"
            print(f"  {label:<46} {otlp:6.1f} MB   {otlp - floor:+6.1f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15, help="runs of each start-up command")
    parser.add_argument("--warm-up", type=float, default=10.0, help="seconds before RSS is sampled")
    parser.add_argument("--sample", type=float, default=5.0, help="seconds over which RSS is sampled")
    parser.add_argument("--skip-memory", action="store_true", help="measure start-up only")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-footprint-pyc-", dir="/tmp") as pycache:
        os.environ["PYTHONPYCACHEPREFIX"] = pycache  # for the children
        os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
        print(f"python {sys.version.split()[0]}; otel_neuron from {_package_path()}")
        startup(args.rounds)
        if not args.skip_memory:
            memory(args.warm_up, args.sample)


def _package_path() -> str:
    found = subprocess.run(
        [sys.executable, "-c", "import otel_neuron; print(otel_neuron.__file__)"],
        capture_output=True,
        text=True,
        check=True,
    )
    return str(Path(found.stdout.strip()).parent)


if __name__ == "__main__":
    main()
