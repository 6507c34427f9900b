"""Two versions of the monitor in one process, their ticks interleaved: a committed revision against
the working tree at trn2 scale (16 embedded runtimes x 8 cores x 4 models, 192 vCPUs of fake /proc).

    python bench/bench_versions.py [--base REV] [--ticks N] [--pause SECONDS] [--period SECONDS]

Separate runs of bench_monitor differ by up to a tenth on a shared machine, which hides a change
worth a few percent. Here both versions run the same simulated workload (the same seeds, the
simulators stepped by one simulated second per round, the same /proc file) in one process, one tick
each per round in alternating order, so the host's drift hits both alike: the ratio of their median
CPU per tick repeats within about 2 %. `--pause 1` sleeps a second before each tick (the cost after
an idle second, as at a 1 s period); the default 0 measures ticks back to back. `--period 5` makes
each tick cover five seconds of the workload (the groups' period; the simulators and /proc advance
that much a round): a 5 s period's histograms and counts. Embedded runtimes have no sockets:
fetching costs are not in these numbers (bench_monitor has them).

The base revision's package is extracted with `git archive` and imported as `otel_neuron_base`;
both must share the runtime protocol's descriptor (protobuf keeps one per process), so the base gets
the working tree's runtime_pb2.py.
"""

from __future__ import annotations

import argparse
import importlib
import io
import json
import random
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
from fake_procfs import write_fake_procfs

REPOSITORY = Path(__file__).resolve().parent.parent
RUNTIMES, CORES, MODELS, VCPUS = 16, 8, 4, 192
BASE_PACKAGE = "otel_neuron_base"


def extract_base(revision: str, into: Path) -> None:
    """`revision`'s src/otel_neuron as package otel_neuron_base under `into`."""
    archive = subprocess.run(
        ["git", "-C", str(REPOSITORY), "archive", revision, "src/otel_neuron"],
        check=True,
        capture_output=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    package = into / BASE_PACKAGE
    (into / "src" / "otel_neuron").rename(package)
    # One descriptor per proto file and process: the base reads the working tree's, which within
    # protocol v1 only adds fields (an older base ignores them).
    working_stubs = REPOSITORY / "src" / "otel_neuron" / "runtime" / "runtime_pb2.py"
    (package / "runtime" / "runtime_pb2.py").write_bytes(working_stubs.read_bytes())
    for path in package.rglob("*.py"):
        if path.name == "runtime_pb2.py":
            continue  # its serialized descriptor names the protocol, not the package: left as it is
        text = path.read_text()
        text = text.replace("from otel_neuron.", f"from {BASE_PACKAGE}.").replace(
            "from otel_neuron import", f"from {BASE_PACKAGE} import"
        )
        text = text.replace("import otel_neuron.", f"import {BASE_PACKAGE}.")
        path.write_text(text)


class FakeProcStat:
    """The fake /proc/stat, advanced by `seconds` of ticks per round (USER_HZ 100) for all readers."""

    def __init__(self, root: Path) -> None:
        write_fake_procfs(root, cpus=VCPUS)
        self._path = root / "stat"
        lines = self._path.read_text().splitlines()
        self._cpus = [
            [int(v) for v in line.split()[1:]] for line in lines if line[:3] == "cpu" and line[3] != " "
        ]
        self._rest = [line for line in lines if not line.startswith("cpu")]
        self._random = random.Random(2)

    def advance(self, seconds: float = 1.0) -> None:
        for values in self._cpus:
            busy = [self._random.randint(0, 30), self._random.randint(0, 3), self._random.randint(0, 15)]
            busy = [round(ticks * seconds) for ticks in busy]  # of 100 a second
            values[0] += busy[0]
            values[1] += busy[1]
            values[2] += busy[2]
            values[6] += round(self._random.randint(0, 2) * seconds)
            values[3] += round(100 * seconds) - sum(busy)
        totals = [sum(column) for column in zip(*self._cpus, strict=True)]
        text = ["cpu  " + " ".join(f"{x:010d}" for x in totals)]
        text += [f"cpu{n} " + " ".join(f"{x:010d}" for x in values) for n, values in enumerate(self._cpus)]
        with open(self._path, "r+b") as stat:  # in place, same length: as the kernel regenerates it
            stat.write(("\n".join(text + self._rest) + "\n").encode())


def config_text(period_s: float = 1.0) -> str:
    groups = [
        "neuroncore_counters",
        "inference_stats",
        "memory_used",
        "neuron_runtime_vcpu_usage",
        "hw_counters",
    ]
    runtimes = [
        {
            "address": f"sim:?cores={CORES}&devices=2&models={MODELS}&rate=100&seed={index}&churn=0",
            "metrics": [{"type": group} for group in groups],
        }
        for index in range(RUNTIMES)
    ]
    system = [{"type": "vcpu_usage"}, {"type": "memory_info"}]
    return json.dumps({"period": f"{period_s:g}s", "neuron_runtimes": runtimes, "system_metrics": system})


class CountingWriter(io.TextIOBase):
    """Discards what is written, counting its characters: how much report each version renders."""

    def __init__(self) -> None:
        self.written = 0

    def write(self, text: str) -> int:
        self.written += len(text)
        return len(text)


class Version:
    """One version's pipeline, its embedded simulators stepped by hand rather than by their clocks."""

    def __init__(self, package: str, devnull: io.TextIOBase, period_s: float = 1.0) -> None:
        def module(name: str) -> Any:
            return importlib.import_module(f"{package}.{name}")

        module("runtime.simulator").Simulator.start = lambda self: self  # stepped below, not in real time
        config = module("config").parse_config(config_text(period_s), "bench_versions.conf")
        self._period_s = period_s
        exporter = module("exporters.report_json").ReportJsonExporter(runtime_count=RUNTIMES, out=devnull)
        pipeline_module = module("pipeline")
        resource = module("resource").build_resource(module("sources.instance").InstanceFacts(error="bench"))
        self.pipeline = pipeline_module.MonitorPipeline(
            pipeline_module.build_groups(config), [exporter], resource
        )
        self.settle = pipeline_module.settle_garbage_collector
        groups = [scheduled.group for scheduled in self.pipeline._groups]
        self._simulators = [g.endpoint.simulator for g in groups if g.report_key == "hw_counters"]
        self.step(600.0)  # ten minutes of history: warm histograms, as on a running host
        for group in groups:
            group.prime()

    def step(self, seconds: float) -> None:
        for simulator in self._simulators:
            simulator.step(seconds)

    def tick_cpu_s(self) -> float:
        started = time.thread_time()
        self.pipeline.tick([self._period_s])
        return time.thread_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="HEAD", help="the git revision to compare with (default HEAD)")
    parser.add_argument("--ticks", type=int, default=60, help="ticks of each version (default 60)")
    parser.add_argument("--pause", type=float, default=0.0, help="seconds idle before each tick (default 0)")
    parser.add_argument(
        "--period", type=float, default=1.0, help="seconds of workload each tick covers (default 1)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-versions-") as directory:
        extract_base(args.base, Path(directory))
        sys.path.insert(0, directory)
        proc = FakeProcStat(Path(directory) / "proc")
        psutil.PROCFS_PATH = str(Path(directory) / "proc")
        outputs = {BASE_PACKAGE: CountingWriter(), "otel_neuron": CountingWriter()}
        base = Version(BASE_PACKAGE, outputs[BASE_PACKAGE], args.period)
        new = Version("otel_neuron", outputs["otel_neuron"], args.period)
        written_before = {name: output.written for name, output in outputs.items()}
        new.settle()  # as the CLI does: one process-wide garbage collector setting for both
        cpu: dict[Version, list[float]] = {base: [], new: []}
        for round_number in range(3 + args.ticks):
            proc.advance(args.period)
            for version in (base, new) if round_number % 2 else (new, base):
                version.step(args.period)
            for version in (base, new) if round_number % 2 else (new, base):
                if args.pause:
                    time.sleep(args.pause)
                spent = version.tick_cpu_s()
                if round_number >= 3:  # the first rounds fill caches and plans
                    cpu[version].append(spent)
        base_us, new_us = (statistics.median(cpu[v]) * 1e6 for v in (base, new))
        kind = f"after {args.pause:g} s idle" if args.pause else "back to back"
        scale = f"{RUNTIMES} embedded runtimes x {CORES} cores x {MODELS} models + {VCPUS} vCPUs"
        print(f"{scale}, a {args.period:g} s period, {args.ticks} ticks each, {kind}")
        print(f"  base ({args.base})      {base_us:7.0f} us of CPU a tick (median)")
        print(f"  working tree    {new_us:7.0f} us")
        print(f"  working tree / base  {new_us / base_us:.3f}")
        # What each tick renders (the reports' characters), to tell a dearer tree from one reporting more.
        rounds = 3 + args.ticks
        chars = {name: (out.written - written_before[name]) / rounds for name, out in outputs.items()}
        base_chars, new_chars = chars[BASE_PACKAGE], chars["otel_neuron"]
        print(f"  report a tick: base {base_chars:,.0f} characters, working tree {new_chars:,.0f}")
        for version in (base, new):
            version.pipeline.shutdown()


if __name__ == "__main__":
    main()
