"""CPU cost of one vcpu_usage + memory_info collection, against two baselines measured in the same run.

  ours      sample both groups and build the OpenTelemetry MetricsData (what every exporter gets)
  stock     opentelemetry-instrumentation-system-metrics: system.cpu.utilization per CPU and mode
            + system.memory.usage, collected by an InMemoryMetricReader
  raw       read and split /proc/stat and /proc/meminfo, nothing else

Goals (issue 2): ours <= 0.5x stock, ours <= 5x raw, on this machine and at 192 vCPUs (fake /proc).
Run: .venv/bin/python bench/bench_system.py
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psutil
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource

sys.path.insert(0, str(Path(__file__).parent))
from fake_procfs import write_fake_procfs  # noqa: E402

from otel_neuron.groups.system import MemoryInfoGroup, VcpuUsageGroup  # noqa: E402
from otel_neuron.producer import Collected, MetricsDataProducer  # noqa: E402

CPU_MODES = ["idle", "user", "system", "irq", "nice", "iowait", "softirq"]


def ours() -> Callable[[], object]:
    groups = [VcpuUsageGroup(), MemoryInfoGroup()]
    for group in groups:
        group.prime()
    producer = MetricsDataProducer(Resource.get_empty())

    def collect() -> object:
        return producer.produce([Collected(group, group.sample()) for group in groups])

    return collect


def stock() -> Callable[[], object]:
    from opentelemetry.instrumentation.system_metrics import SystemMetricsInstrumentor

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    config = {"system.cpu.utilization": CPU_MODES, "system.memory.usage": ["used", "free", "cached"]}
    instrumentor = SystemMetricsInstrumentor(config=config)
    instrumentor.instrument(meter_provider=provider)
    return reader.get_metrics_data


def raw() -> Callable[[], object]:
    def collect() -> object:
        root = psutil.PROCFS_PATH
        with open(f"{root}/stat", "rb") as stat:
            cpu = [line.split() for line in stat if line.startswith(b"cpu")]
        with open(f"{root}/meminfo", "rb") as meminfo:
            memory = [line.split() for line in meminfo]
        return cpu, memory

    return collect


def cost_us(collect: Callable[[], object], repeats: int) -> float:
    """Median CPU time of one call, in microseconds, over `repeats` rounds of 20 calls."""
    for _ in range(5):
        collect()
    rounds = []
    for _ in range(repeats):
        start = time.process_time()
        for _ in range(20):
            collect()
        rounds.append((time.process_time() - start) / 20 * 1e6)
    return statistics.median(rounds)


def measure(label: str, repeats: int, stock_collect: Callable[[], object]) -> None:
    costs = {
        "ours": cost_us(ours(), repeats),
        "stock": cost_us(stock_collect, repeats),
        "raw": cost_us(raw(), repeats),
    }
    print(
        f"{label:<22} ours {costs['ours']:9.1f} us   stock {costs['stock']:9.1f} us   "
        f"raw {costs['raw']:7.1f} us   ours/stock {costs['ours'] / costs['stock']:.2f}x (goal <= 0.5x)   "
        f"ours/raw {costs['ours'] / costs['raw']:.2f}x (goal <= 5x)"
    )


def main() -> None:
    print(
        "one collection of vcpu_usage + memory_info; CPU time per collection (median); "
        f"python {sys.version.split()[0]}"
    )
    stock_collect = stock()  # the instrumentor is a singleton that reads /proc/self once: build it first
    measure(f"this machine ({psutil.cpu_count()} vCPU)", 15, stock_collect)
    with tempfile.TemporaryDirectory() as directory:
        psutil.PROCFS_PATH = str(write_fake_procfs(Path(directory), cpus=192))
        measure("fake /proc, 192 vCPU", 10, stock_collect)


if __name__ == "__main__":
    main()
