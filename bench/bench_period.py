"""The working tree at a 1 s period against the same at a longer one, ticks interleaved in one process
(16 embedded runtimes x 8 cores x 4 models, 192 vCPUs of fake /proc, as bench_versions).

    python bench/bench_period.py [--long 5] [--ticks 25] [--idle]

What a longer period changes in one tick, apart from the host's drift (both pipelines run in turn,
in alternating order). Without --idle the ticks run back to back and only the work differs: the
long pipeline's simulators advance `--long` seconds of inferences between its ticks, the other's
one second, so its period histograms, counts and ECC events are a longer period's. With --idle,
each tick is also preceded by its own period of sleep (1 s, `--long` s): what the process finds
cold after a longer idle comes on top. The fake /proc advances a second a round for both (reading
it costs the same whatever its numbers).

Also printed: the period histograms' width (the dense bucket span the percentiles walk) and count.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).parent))
from bench_versions import FakeProcStat, Version  # noqa: E402

from otel_neuron.groups.base import HistogramDelta  # noqa: E402
from otel_neuron.semconv import INFERENCE_STATS  # noqa: E402


class Timed:
    """One pipeline at `period_s`: the CPU of its ticks and the shape of its period histograms."""

    def __init__(self, version: Version, period_s: float, idle: bool) -> None:
        self.version = version
        self.period_s = period_s
        self.pause_s = period_s if idle else 0.0
        self.cpu_s: list[float] = []
        self.widths: list[int] = []
        self.counts: list[int] = []

    def tick(self, measured: bool) -> None:
        if self.pause_s:
            time.sleep(self.pause_s)
        spent = self.version.tick_cpu_s()
        if measured:
            self.cpu_s.append(spent)
            self._note_histograms()

    def _note_histograms(self) -> None:
        for scheduled in self.version.pipeline._groups:  # noqa: SLF001 - a benchmark looks inside
            sample = scheduled.group.last_sample
            if scheduled.group.report_key != INFERENCE_STATS or sample is None:
                continue
            for points in sample.points.values():
                for _, value in points:
                    if isinstance(value, HistogramDelta):
                        self.widths.append(len(value.bucket_counts))
                        self.counts.append(value.count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--long", type=float, default=5.0, help="the longer period, s (default 5)")
    parser.add_argument("--ticks", type=int, default=25, help="ticks of each pipeline (default 25)")
    parser.add_argument("--idle", action="store_true", help="sleep each pipeline's period before its tick")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-period-") as directory, open(os.devnull, "w") as devnull:
        proc = FakeProcStat(Path(directory) / "proc")
        psutil.PROCFS_PATH = str(Path(directory) / "proc")
        short = Timed(Version("otel_neuron", devnull, 1.0), 1.0, args.idle)
        long = Timed(Version("otel_neuron", devnull, args.long), args.long, args.idle)
        short.version.settle()  # as the CLI does: one process-wide garbage collector setting for both
        for round_number in range(3 + args.ticks):
            proc.advance()
            for timed in (short, long):
                timed.version.step(timed.period_s)
            for timed in (short, long) if round_number % 2 else (long, short):
                timed.tick(measured=round_number >= 3)  # the first rounds fill caches and plans
        kind = "each after its own period of sleep" if args.idle else "back to back"
        print(f"16 embedded runtimes x 8 cores x 4 models + 192 vCPUs, {args.ticks} ticks each, {kind}")
        for timed in (short, long):
            print(
                f"  {timed.period_s:g} s of workload a tick   {statistics.median(timed.cpu_s) * 1e3:6.2f} ms "
                f"of CPU (median); period histograms {statistics.mean(timed.widths):.0f} buckets wide, "
                f"{statistics.mean(timed.counts):.0f} latencies"
            )
        ratio = statistics.median(long.cpu_s) / statistics.median(short.cpu_s)
        print(f"  {args.long:g} s / 1 s   {ratio:.3f}")
        for timed in (short, long):
            timed.version.pipeline.shutdown()


if __name__ == "__main__":
    main()
