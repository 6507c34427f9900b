"""What pod attribution (--kubernetes) costs at trn2 scale: 64 pods holding 2 NeuronCores each of 128,
the kubelet read once a second, against the same monitor without it, in one process.

    python bench/bench_kubernetes.py [--ticks N]

Two pipelines as bench_versions builds them (16 embedded runtimes x 8 cores x 4 models, 192 vCPUs of
fake /proc, a 1 s period), both exporting as the DaemonSet does (the JSON report and Prometheus with
OpenTelemetry names, so the attribution runs for two producers); one of them with the attribution,
its allocation read from a fake kubelet serving PodResources v1 on a unix socket. Each round the
kubelet is read once (one List, as the refresher does each second; its CPU measured on its own),
then both pipelines tick, in alternating order. Every core point of every runtime is held by a pod:
the sims number their cores 0-7, which pods 0-3 hold.

Two phases: the allocation unchanged (the steady state: the labelled attribute sets are reused), and
one pod leaving and coming back every second (every labelled set rebuilt each tick, the worst case).
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
from bench_versions import RUNTIMES, VCPUS, FakeProcStat, config_text

REPOSITORY = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPOSITORY / "tests" / "integration"))

from fake_kubelet import FakeKubelet, pod  # noqa: E402

from otel_neuron.config import parse_config  # noqa: E402
from otel_neuron.exporters.prometheus import PrometheusExporter  # noqa: E402
from otel_neuron.exporters.report_json import ReportJsonExporter  # noqa: E402
from otel_neuron.pipeline import MonitorPipeline, build_groups, settle_garbage_collector  # noqa: E402
from otel_neuron.resource import build_resource  # noqa: E402
from otel_neuron.runtime.simulator import Simulator  # noqa: E402
from otel_neuron.sources.instance import InstanceFacts  # noqa: E402
from otel_neuron.sources.kubelet import AllocationRefresher, PodResourcesSource  # noqa: E402

PODS, CORES_PER_POD = 64, 2


def pods(leaving: int | None = None) -> list[Any]:
    """64 pods of one container holding two NeuronCores each; `leaving`: that pod is gone."""
    return [
        pod(f"model-{n}", "inference", server={"aws.amazon.com/neuroncore": [str(2 * n), str(2 * n + 1)]})
        for n in range(PODS)
        if n != leaving
    ]


class Clock:
    """The refresher's clock, one second further at each round: one read per round."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Monitor:
    """One pipeline with its embedded simulators stepped by hand, as bench_versions steps them."""

    def __init__(
        self, devnull: io.TextIOBase, kubernetes: AllocationRefresher | None, prometheus: bool
    ) -> None:
        Simulator.start = lambda self: self  # type: ignore[method-assign]  # stepped below, not in real time
        groups = build_groups(parse_config(config_text(), "bench_kubernetes.conf"))
        exporters: list[Any] = [ReportJsonExporter(runtime_count=RUNTIMES, out=devnull)]
        if prometheus:
            exporters.append(PrometheusExporter(listen=None))
        self.pipeline = MonitorPipeline(
            groups, exporters, build_resource(InstanceFacts(error="bench")), kubernetes
        )
        self._simulators = [g.group.endpoint.simulator for g in groups if g.group.report_key == "hw_counters"]
        self.step(600.0)  # ten minutes of history: warm histograms, as on a running host
        for scheduled in groups:
            scheduled.group.prime()

    def step(self, seconds: float) -> None:
        for simulator in self._simulators:
            simulator.step(seconds)

    def tick_cpu_s(self) -> float:
        started = time.thread_time()
        self.pipeline.tick([1.0])
        return time.thread_time() - started


def run_phase(
    plain: Monitor,
    labelled: Monitor,
    refresher: AllocationRefresher,
    clock: Clock,
    kubelet: FakeKubelet,
    proc: FakeProcStat,
    ticks: int,
    churn: bool,
) -> dict[str, list[float]]:
    cpu: dict[str, list[float]] = {"plain": [], "labelled": [], "read": []}
    for round_number in range(3 + ticks):
        if churn:
            kubelet.set_pods(pods(leaving=round_number % 2))  # pod 0 or pod 1 gone, by turns
        clock.now += 1.0
        started = time.thread_time()
        refresher.refresh_if_due()
        read = time.thread_time() - started
        proc.advance()
        order = (plain, labelled) if round_number % 2 else (labelled, plain)
        for monitor in order:
            monitor.step(1.0)
        spent = {id(monitor): monitor.tick_cpu_s() for monitor in order}
        if round_number >= 3:  # the first rounds fill caches and plans
            cpu["plain"].append(spent[id(plain)])
            cpu["labelled"].append(spent[id(labelled)])
            cpu["read"].append(read)
    return cpu


def report(title: str, cpu: dict[str, list[float]]) -> None:
    plain, labelled, read = (statistics.median(cpu[key]) * 1e6 for key in ("plain", "labelled", "read"))
    print(title)
    print(f"  tick without attribution     {plain:7.0f} us of CPU (median)")
    print(f"  tick with attribution        {labelled:7.0f} us   ratio {labelled / plain:.3f}")
    print(f"  kubelet read (one List)      {read:7.0f} us")
    print(f"  tick + read, once a second   {labelled + read:7.0f} us   ratio {(labelled + read) / plain:.3f}")
    print(f"    = {(labelled + read) / 1e4:.3f} % of one core, against {plain / 1e4:.3f} % without")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=60, help="ticks of each pipeline per phase (default 60)")
    parser.add_argument(
        "--json-only", action="store_true", help="export the JSON report only (default: JSON + Prometheus)"
    )
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="bench-k8s-", dir="/tmp") as directory,
        open(os.devnull, "w") as devnull,
    ):
        proc = FakeProcStat(Path(directory) / "proc")
        psutil.PROCFS_PATH = str(Path(directory) / "proc")
        socket_path = str(Path(directory) / "kubelet.sock")
        with FakeKubelet(socket_path, pods()) as kubelet:
            source = PodResourcesSource(socket_path)
            clock = Clock()
            refresher = AllocationRefresher(source, clock=clock)
            prometheus = not args.json_only
            plain = Monitor(devnull, None, prometheus)  # type: ignore[arg-type]
            labelled = Monitor(devnull, refresher, prometheus)  # type: ignore[arg-type]
            settle_garbage_collector()  # as the CLI does
            steady = run_phase(plain, labelled, refresher, clock, kubelet, proc, args.ticks, churn=False)
            churn = run_phase(plain, labelled, refresher, clock, kubelet, proc, args.ticks, churn=True)
            held = len(refresher.allocation.cores)
            plain.pipeline.shutdown()
            labelled.pipeline.shutdown()  # closes the refresher and its source
        exported = "JSON" if args.json_only else "JSON + Prometheus (otel names)"
        print(
            f"{RUNTIMES} embedded runtimes x 8 cores + {VCPUS} vCPUs, {exported}; "
            f"{PODS} pods x {CORES_PER_POD} NeuronCores ({held} held at the end); {args.ticks} ticks each"
        )
        report("allocation unchanged", steady)
        report("one pod leaving or coming back every second", churn)


if __name__ == "__main__":
    main()
