"""CPU of the whole monitor at trn2 scale, against the stock OpenTelemetry SDK measured in the same run.

  monitor   the real MonitorPipeline built from a config like the guide's: 16 runtimes (8 NeuronCores,
            4 models each: 64 models) with the five runtime groups, vcpu_usage + memory_info over a
            fake /proc with 192 vCPUs, every group at --period (1 s), one JSON report line per tick
            written by the ReportJsonExporter (to /dev/null)
  stock     an OpenTelemetry SDK MeterProvider + InMemoryMetricReader collecting observable gauges
            with as many data points as one tick of ours (collection only: no fetch, no JSON)

The runtimes are simulators, one child process each (as Neuron runtimes are), and the fake /proc is
rewritten in place by another child, so neither is counted; the monitor's CPU is time.process_time()
of this process (all its threads: the fetch loop, gRPC's own threads, garbage collection). Three
measurements:

  at 1 s       the pipeline's own run loop on the real clock for --seconds: what the monitor costs,
               idle time between ticks included; that CPU per period, and the median tick's own.
               The process's first two ticks are left out (WARM_UP_TICKS), the first printed
               apart: it does once, for several ticks' CPU, what the others reuse
  per tick     pipeline.tick() back to back (no idle time), the median; the difference to a period's
               CPU is what the cadence itself costs: caches gone cold, and a whole period's changes
               (histograms, /proc) to work through instead of a few milliseconds'
  stages       one tick taken apart: fetch, sample, MetricsData, report_from_metrics, JSON

and, to show how cold a process that wakes once a second finds this machine, the CPU of a file
read right after an idle second and of the same read just after.

Goal (issue 3): the whole monitor <= 0.5 % of one core at a 1 s period at this scale.
Run: .venv/bin/python bench/bench_monitor.py [--seconds 20] [--period 1]
(at --period 5, give --seconds 60 or more: a dozen ticks)
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import psutil

sys.path.insert(0, str(Path(__file__).parent))
from bench_runtime import point_count, stock_cost_per_point  # noqa: E402
from fake_procfs import write_fake_procfs  # noqa: E402

from otel_neuron.config import parse_config  # noqa: E402
from otel_neuron.exporters.report_json import (
    ReportJsonExporter,
    encode_line,
    merge_report,
    report_from_metrics,
)  # noqa: E402
from otel_neuron.exporters.section_memo import SectionMemo  # noqa: E402
from otel_neuron.pipeline import MonitorPipeline, build_groups, settle_garbage_collector  # noqa: E402
from otel_neuron.producer import Collected, MetricsDataProducer  # noqa: E402
from otel_neuron.resource import build_resource  # noqa: E402
from otel_neuron.sources.fetch_loop import TickFetch  # noqa: E402
from otel_neuron.sources.instance import InstanceFacts  # noqa: E402

RUNTIMES, CORES, MODELS, VCPUS = 16, 8, 4, 192
RUNTIME_GROUPS = [
    "neuroncore_counters",
    "inference_stats",
    "memory_used",
    "neuron_runtime_vcpu_usage",
    "hw_counters",
]
GOAL_PERCENT = 0.5


def advance_procfs(root: str) -> None:
    """Child process: every 250 ms, add 25 ticks (USER_HZ 100) to each vCPU of the fake /proc/stat.

    The file is rewritten in place, as the kernel regenerates /proc/stat (the same file, never
    renamed over), with its numbers at a fixed width so its length stays the same."""
    rng = random.Random(2)
    stat = Path(root) / "stat"
    lines = stat.read_text().splitlines()
    per_cpu = [
        [int(v) for v in line.split()[1:]] for line in lines if line.startswith("cpu") and line[3] != " "
    ]
    rest = [line for line in lines if not line.startswith("cpu")]
    switches = 0
    while True:
        for values in per_cpu:
            busy = [rng.randint(0, 8), rng.randint(0, 1), rng.randint(0, 4)]  # user, nice, system
            values[0] += busy[0]
            values[1] += busy[1]
            values[2] += busy[2]
            values[6] += rng.randint(0, 1)  # softirq
            values[3] += 25 - sum(busy)  # idle
        switches += 40_000
        totals = [sum(column) for column in zip(*per_cpu, strict=True)]
        text = ["cpu  " + " ".join(map(_fixed_width, totals))]
        text += [f"cpu{n} " + " ".join(map(_fixed_width, values)) for n, values in enumerate(per_cpu)]
        text += [f"ctxt {987654321 + switches}" if line.startswith("ctxt") else line for line in rest]
        data = ("\n".join(text) + "\n").encode()
        if switches == 40_000:  # the first time the length changes (fixed widths): whole, by rename
            stat.with_name("stat.next").write_bytes(data)
            os.replace(stat.with_name("stat.next"), stat)
        else:
            with open(stat, "r+b") as file:
                file.write(data)
        time.sleep(0.25)


def _fixed_width(value: int) -> str:
    return f"{value:010d}"  # a long-running host's idle ticks have about ten digits


def config_text(directory: str, period_s: float = 1.0) -> str:
    runtimes = [
        {
            "address": f"unix:{directory}/rt{index}.sock",
            "metrics": [{"type": name} for name in RUNTIME_GROUPS],
        }
        for index in range(RUNTIMES)
    ]
    return json.dumps(
        {
            "period": f"{period_s:g}s",
            "neuron_runtimes": runtimes,
            "system_metrics": [{"type": "vcpu_usage"}, {"type": "memory_info"}],
        }
    )


def build_pipeline(directory: str, out: io.TextIOBase, period_s: float = 1.0) -> MonitorPipeline:
    config = parse_config(config_text(directory, period_s), "bench_monitor.conf")
    exporter = ReportJsonExporter(runtime_count=len(config.runtimes), out=out)  # type: ignore[arg-type]
    return MonitorPipeline(build_groups(config), [exporter], build_resource(InstanceFacts(error="bench")))


class ScheduleRun(NamedTuple):
    percent: float  # of one core, from the first measured tick to the end of the run
    ticks: int  # measured
    shares: dict[str, float]  # % of one core by kind of thread, and the garbage collector's
    startup_ms: float  # CPU of the start (once per process), not included
    first_tick_ms: float  # CPU of the process's first tick, not included
    tick_ms: float  # median CPU of one measured tick (the idle time between left out)


# Ticks run before the measurement: the process's first tick does once what every later one reuses
# (an attribute set for each point, the snapshot sockets' connections, the first rendering of every
# section) and costs several ticks' CPU, which in a measurement of a few ticks (a long period) would
# pass for the period's cost; the second is the first to book its successor's answers.
WARM_UP_TICKS = 2


def on_schedule(pipeline: MonitorPipeline, seconds: float, period_s: float) -> ScheduleRun:
    """What this process costs while the pipeline runs its own schedule: one run, measured for
    `seconds` from the start of its tick number WARM_UP_TICKS + 1 on. Its start (freezing the objects
    alive for the garbage collector, one baseline fetch per runtime) and first tick are returned apart.
    """
    stop = threading.Event()
    timer = threading.Timer((WARM_UP_TICKS + 1) * period_s + seconds, stop.set)
    timer.start()
    collections = GcClock()
    started, clock = time.process_time(), _TickClock(pipeline, collections, WARM_UP_TICKS)
    pipeline.run(stop)
    cpu, wall = time.process_time() - clock.cpu, time.monotonic() - clock.wall
    timer.cancel()
    collections.stop()
    clock.remove()
    measured = clock.costs_ms[WARM_UP_TICKS:]
    shares = {name: ns / 1e9 / wall * 100.0 for name, ns in thread_cpu_ns(since=clock.threads).items()}
    shares["  of which garbage collection"] = (collections.seconds - clock.gc_seconds) / wall * 100.0
    return ScheduleRun(
        percent=cpu / wall * 100.0,
        ticks=len(measured),
        shares=shares,
        startup_ms=(clock.first_tick_at - started) * 1e3,
        first_tick_ms=clock.costs_ms[0],
        tick_ms=statistics.median(measured),
    )


class _TickClock:
    """The CPU of each tick, the process's clocks when tick number `skip` + 1 starts (the start of
    the measurement), and the process CPU when the first one starts (the end of the start-up)."""

    def __init__(self, pipeline: MonitorPipeline, collections: GcClock, skip: int) -> None:
        self.cpu, self.wall, self.gc_seconds, self.first_tick_at = 0.0, 0.0, 0.0, 0.0
        self.threads: dict[str, int] = {}
        self.costs_ms: list[float] = []
        self._skip = skip
        self._collections = collections
        self._pipeline = pipeline
        self._tick = pipeline.tick
        pipeline.tick = self._timed  # type: ignore[method-assign]

    def _timed(self, due_periods: Sequence[float], scheduled_at: float | None = None) -> None:
        started = time.process_time()
        if not self.costs_ms:
            self.first_tick_at = started
        if len(self.costs_ms) == self._skip:
            self.cpu, self.wall = started, time.monotonic()
            self.threads = thread_cpu_ns()
            self.gc_seconds = self._collections.seconds
        self._tick(due_periods, scheduled_at)
        self.costs_ms.append((time.process_time() - started) * 1e3)

    def remove(self) -> None:
        self._pipeline.tick = self._tick  # type: ignore[method-assign]


def thread_cpu_ns(since: dict[str, int] | None = None) -> dict[str, int]:
    """CPU nanoseconds of this process's threads by kind (Linux schedstat), minus `since`."""
    names = {str(thread.native_id): thread.name for thread in threading.enumerate()}
    totals: dict[str, int] = {}
    task = Path("/proc/self/task")
    for entry in task.iterdir() if task.exists() else ():
        try:
            nanoseconds = int((entry / "schedstat").read_text().split()[0])
        except OSError:
            continue
        python_name = names.get(entry.name)
        if python_name is None:
            kind = "gRPC core threads"
        else:
            kind = {
                "MainThread": "main thread (read sockets, sample, report)",
                "otel-neuron-fetch": "fetch loop (asyncio: gRPC, sim:)",
            }.get(python_name, "other Python threads (aio poller...)")
        totals[kind] = totals.get(kind, 0) + nanoseconds
    if since is not None:
        totals = {kind: ns - since.get(kind, 0) for kind, ns in totals.items()}
    return totals


class GcClock:
    """Process CPU time spent in garbage collections from now until stop()."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._started = 0.0
        gc.callbacks.append(self._on_collection)

    def _on_collection(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.process_time()
        else:
            self.seconds += time.process_time() - self._started

    def stop(self) -> None:
        gc.callbacks.remove(self._on_collection)


def per_tick_us(pipeline: MonitorPipeline, ticks: int, period_s: float = 1.0) -> float:
    costs = []
    for _ in range(ticks):
        start = time.process_time()
        pipeline.tick([period_s])
        costs.append((time.process_time() - start) * 1e6)
    return statistics.median(costs)


def stages_us(pipeline: MonitorPipeline, ticks: int) -> dict[str, float]:
    """One tick taken apart, as Collector + MetricsDataProducer + ReportJsonExporter do it."""
    groups = [scheduled.group for scheduled in pipeline._groups]  # noqa: SLF001 - a benchmark looks inside
    runtime_sources = list({id(r): r for g in groups if (r := g.refreshable()) is not None}.values())
    producer = MetricsDataProducer(build_resource(InstanceFacts(error="bench")))
    exporter = ReportJsonExporter(runtime_count=RUNTIMES, out=io.StringIO())
    memo = SectionMemo()  # as the exporter keeps one
    names = (
        "fetch 16 runtimes",
        "sample system groups",
        "sample runtime groups",
        "MetricsData",
        "report_from_metrics",
        "JSON line",
    )
    samples: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(ticks):
        marks = [time.process_time()]
        TickFetch(runtime_sources).finish(time.monotonic() + 0.8)
        marks.append(time.process_time())
        collected = [Collected(g, g.sample()) for g in groups if g.runtime_index is None]
        marks.append(time.process_time())
        collected += [Collected(g, g.sample()) for g in groups if g.runtime_index is not None]
        marks.append(time.process_time())
        data = producer.produce(collected)
        marks.append(time.process_time())
        update = report_from_metrics(data, memo)
        marks.append(time.process_time())
        merge_report(exporter.report, update)
        encode_line(exporter.report)
        marks.append(time.process_time())
        for name, start, end in zip(names, marks, marks[1:], strict=False):
            samples[name].append((end - start) * 1e6)
    return {name: statistics.median(values) for name, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="how long to run on the schedule")
    parser.add_argument("--period", type=float, default=1.0, help="every group's period, s (default 1)")
    args = parser.parse_args()
    print(
        f"python {sys.version.split()[0]}; {RUNTIMES} runtimes x {CORES} cores x {MODELS} models "
        f"({RUNTIMES * MODELS} models) + {VCPUS} vCPUs; simulators and /proc writer in other processes"
    )
    with tempfile.TemporaryDirectory(prefix="bench-mon-", dir="/tmp") as directory:
        write_fake_procfs(Path(directory) / "proc", cpus=VCPUS)
        psutil.PROCFS_PATH = str(Path(directory) / "proc")
        runtimes = [  # one process per runtime, as Neuron runtimes are
            subprocess.Popen(
                [
                    sys.executable,
                    str(Path(__file__).with_name("bench_runtime.py")),
                    "--serve",
                    directory,
                    "1",
                    str(CORES),
                    str(MODELS),
                    str(index),
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for index in range(RUNTIMES)
        ]
        writer = subprocess.Popen(
            [sys.executable, __file__, "--advance-procfs", str(Path(directory) / "proc")]
        )
        try:
            for runtime in runtimes:
                assert runtime.stdout is not None and runtime.stdout.readline().strip() == "ready"
            run(directory, args.seconds, [runtime.pid for runtime in runtimes], args.period)
        finally:
            for runtime in runtimes:
                assert runtime.stdin is not None
                runtime.stdin.close()
            for runtime in runtimes:
                runtime.wait(timeout=10)
            writer.terminate()
            writer.wait(timeout=10)


def run(directory: str, seconds: float, runtimes: Sequence[int], period_s: float = 1.0) -> None:
    with open(os.devnull, "w") as devnull:
        pipeline = build_pipeline(directory, devnull, period_s)  # type: ignore[arg-type]
        settle_garbage_collector()  # as the CLI does before it runs the pipeline
        try:
            runtimes_before, wall_before = runtimes_cpu_s(runtimes), time.monotonic()
            scheduled = on_schedule(pipeline, seconds, period_s)
            percent, ticks, shares = scheduled.percent, scheduled.ticks, scheduled.shares
            runtimes_percent = (
                (runtimes_cpu_s(runtimes) - runtimes_before) / (time.monotonic() - wall_before) * 100.0
            )
            tick_us = per_tick_us(pipeline, 30, period_s)
            stages = stages_us(pipeline, 30)
        finally:
            pipeline.shutdown()
    groups = [scheduled.group for scheduled in pipeline._groups]  # noqa: SLF001
    producer = MetricsDataProducer(build_resource(InstanceFacts(error="bench")))
    points = point_count(producer.produce([Collected(g, g.last_sample) for g in groups if g.last_sample]))
    stock_us = stock_cost_per_point(points)
    stock_percent = stock_us * points / 1e4 / period_s  # the same points collected once a period
    print(f"\none tick: {len(groups)} groups, {points} data points, one JSON report line")
    where = f"at a {period_s:g} s period ({ticks} ticks, {seconds:g} s)"
    print(f"  {where:<33} {percent:8.3f} % of one core   (goal at 1 s <= {GOAL_PERCENT} %)")
    print(
        f"    that is, a period               {percent * period_s * 10:8.2f} ms of CPU; "
        f"a tick {scheduled.tick_ms:.2f} ms (median)"
    )
    print(
        f"    (start-up, once per process: {scheduled.startup_ms:.0f} ms of CPU, and its first tick "
        f"{scheduled.first_tick_ms:.1f} ms: not included)"
    )
    print(
        f"    (the {RUNTIMES} simulated runtimes meanwhile: {runtimes_percent:.2f} % of one core, "
        "their inferences and answers, not counted)"
    )
    for name, share in sorted(shares.items(), key=lambda item: -item[1] if item[0][0] != " " else 0):
        print(f"    {name:<40} {share:6.3f} %")
    print(f"  per tick, back to back            {tick_us:8.0f} us   ({tick_us / points:.2f} us/point)")
    cadence_ms = percent * period_s * 10 - tick_us / 1e3
    print(
        f"  the cadence itself (diff.)        {cadence_ms:8.2f} ms a period "
        f"(cold caches, a period's changes, the idle loop)"
    )
    print("  stages of one tick (median):")
    for name, cost in stages.items():
        print(f"    {name:<30} {cost:8.0f} us")
    print(f"    {'sum':<30} {sum(stages.values()):8.0f} us")
    print(
        f"  stock SDK, same point count       {stock_percent:8.3f} % of one core ({stock_us:.2f} us/point, "
        f"collection only)"
    )
    print(
        f"  ours / stock                      {percent / stock_percent:8.2f}x on the schedule, "
        f"{tick_us / 1e4 / period_s / stock_percent:.2f}x per tick"
    )
    first, second = read_after_idle_us()
    print(
        f"  this machine after an idle second: a file read costs {first:.0f} us of CPU, "
        f"the next one {second:.0f} us"
    )


def runtimes_cpu_s(pids: Sequence[int]) -> float:
    """CPU seconds of the runtime processes so far (each answers the monitor's requests), read in the
    real /proc (psutil's root is the fake one meanwhile; the monitor is not collecting now)."""
    fake, psutil.PROCFS_PATH = psutil.PROCFS_PATH, "/proc"
    try:
        return sum(sum(psutil.Process(pid).cpu_times()[:2]) for pid in pids)
    finally:
        psutil.PROCFS_PATH = fake


def read_after_idle_us(rounds: int = 5) -> tuple[float, float]:
    """CPU of reading a small file right after sleeping 1 s, and of the same read just after: how
    much colder than back to back a process finds everything when it wakes once a second."""
    first: list[float] = []
    second: list[float] = []
    for _ in range(rounds):
        time.sleep(1.0)
        for costs in (first, second):
            start = time.thread_time()
            Path(__file__).read_bytes()
            costs.append((time.thread_time() - start) * 1e6)
    return statistics.median(first), statistics.median(second)


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--advance-procfs":
        advance_procfs(sys.argv[2])
    else:
        main()
