"""CPU cost of collecting runtime groups over the runtime protocol, against a stock-SDK baseline.

  one runtime   8 NeuronCores, 16 models: fetch one snapshot on the runtime's snapshot socket (and,
                for comparison, over gRPC), sample the five groups, build the MetricsData and the
                JSON report (what one tick costs per runtime)
  16 runtimes   the same through the pipeline's Collector (all requests sent, then every answer
                read with one selector), one MetricsData and one JSON report line written per tick
  stock         an OpenTelemetry SDK MeterProvider + InMemoryMetricReader collecting observable
                gauges with as many data points as our tick, measured in the same run

The runtimes are simulators in a separate process (their CPU is not counted); the monitor's CPU
time is time.process_time() of this process. Goal (issue 3): the whole monitor <= 0.5 % of one core
at a 1 s period at trn2 scale (16 runtimes x 8 cores, 64 models); the runtime part is printed here,
the system groups at 192 vCPUs are bench/bench_system.py.

Run: .venv/bin/python bench/bench_runtime.py
"""

from __future__ import annotations

import io
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

import grpc
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource

from otel_neuron.collection import Collector
from otel_neuron.exporters.report_json import ReportJsonExporter
from otel_neuron.groups.base import MetricGroup
from otel_neuron.groups.runtime import GROUP_TYPES, create_runtime_groups
from otel_neuron.producer import Collected, MetricsDataProducer
from otel_neuron.runtime import runtime_pb2, runtime_pb2_grpc


def serve(directory: str, runtimes: int, cores: int, models: int, first: int = 0) -> None:
    """Child process: `runtimes` simulators with a warm history, at directory/rtN.sock from N = `first`."""
    from otel_neuron.runtime.server import serve_runtime_endpoint
    from otel_neuron.runtime.simulator import Simulator, SimulatorOptions

    servers = []
    for index in range(first, first + runtimes):
        options = SimulatorOptions(
            cores=cores, devices=max(1, cores // 4), models=models, rate=100.0, seed=index, churn_s=0.0
        )
        simulator = Simulator(options)
        simulator.step(600.0)  # ten minutes of history: realistic histogram widths
        simulator.start()
        servers.append(serve_runtime_endpoint(simulator.recorder, f"unix:{directory}/rt{index}.sock"))
    print("ready", flush=True)
    sys.stdin.read()  # until the parent closes our stdin
    for server in servers:
        server.stop(None)


def cpu_us(step: Callable[[], object], rounds: int, per_round: int) -> float:
    """Median CPU microseconds of one step."""
    for _ in range(3):
        step()
    costs = []
    for _ in range(rounds):
        start = time.process_time()
        for _ in range(per_round):
            step()
        costs.append((time.process_time() - start) / per_round * 1e6)
    return statistics.median(costs)


def fresh_tick(groups: list[MetricGroup]) -> None:
    """Make the next sample fetch again, as a new collection tick would."""
    for group in groups:
        group.endpoint._cached = None  # type: ignore[attr-defined]


def point_count(data: object) -> int:
    count = 0
    for resource_metrics in data.resource_metrics:  # type: ignore[attr-defined]
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                count += len(metric.data.data_points)
    return count


def stock_cost_per_point(points: int) -> float:
    """CPU microseconds per data point of a stock SDK collection of `points` observable gauge points."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader], resource=Resource.get_empty())
    meter = provider.get_meter("bench")
    per_instrument = 50
    attributes = [{"neuron.runtime.index": i // 8, "neuron.core.index": i % 8} for i in range(per_instrument)]

    def callback(options: CallbackOptions) -> list[Observation]:
        return [Observation(0.5, attrs) for attrs in attributes]

    for number in range(max(1, points // per_instrument)):
        meter.create_observable_gauge(f"bench.gauge.{number}", callbacks=[callback])
    actual = max(1, points // per_instrument) * per_instrument
    cost = cpu_us(reader.get_metrics_data, rounds=7, per_round=5)
    provider.shutdown()
    return cost / actual


def main() -> None:
    print(f"python {sys.version.split()[0]}; runtimes served by simulators in another process")
    for runtimes, cores, models in ((16, 8, 16), (16, 8, 4)):  # the issue's case, then trn2's 64 models
        measure(runtimes, cores, models)


def measure(runtimes: int, cores: int, models: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-rt-", dir="/tmp") as directory:
        server = subprocess.Popen(
            [sys.executable, __file__, "--serve", directory, str(runtimes), str(cores), str(models)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert server.stdout is not None and server.stdout.readline().strip() == "ready"
            run(directory, runtimes, cores, models)
        finally:
            if server.stdin is not None:
                server.stdin.close()
            server.wait(timeout=10)


def run(directory: str, runtimes: int, cores: int, models: int) -> None:
    all_groups = [
        create_runtime_groups(index, f"unix:{directory}/rt{index}.sock", list(GROUP_TYPES), deadline_s=0.8)
        for index in range(runtimes)
    ]
    for groups in all_groups:
        for group in groups:
            group.prime()
    time.sleep(0.2)

    # -- one runtime, step by step ---------------------------------------------------------------
    groups = all_groups[0]
    endpoint = groups[0].endpoint  # type: ignore[attr-defined]
    producer = MetricsDataProducer(Resource.get_empty())
    out = io.StringIO()
    exporter = ReportJsonExporter(runtime_count=1, out=out)

    def fetch() -> object:
        endpoint._cached = None
        return endpoint.fetch()

    channel = grpc.insecure_channel(f"unix:{directory}/rt0.sock", options=[("grpc.http2.bdp_probe", 0)])
    stub = runtime_pb2_grpc.RuntimeMetricsStub(channel)

    def fetch_grpc() -> object:
        return stub.GetSnapshot(runtime_pb2.SnapshotRequest(protocol_version=1), timeout=0.8)

    def sample() -> object:
        fresh_tick(groups)
        return [Collected(group, group.sample()) for group in groups]

    collected = sample()
    data = producer.produce(collected)  # type: ignore[arg-type]

    def whole() -> None:
        fresh_tick(groups)
        exporter.export(producer.produce([Collected(group, group.sample()) for group in groups]))
        out.seek(0)
        out.truncate()

    points_one = point_count(data)
    fetch_us = cpu_us(fetch, 9, 20)
    grpc_us = cpu_us(fetch_grpc, 9, 20)
    channel.close()
    sample_us = cpu_us(sample, 9, 20)
    whole_us = cpu_us(whole, 9, 20)
    stock_us = stock_cost_per_point(points_one * runtimes)
    print(f"\none runtime ({cores} cores, {models} models): {points_one} data points per tick")
    print(f"  fetch snapshot (snapshot socket)       {fetch_us:8.1f} us   (over gRPC: {grpc_us:.1f} us)")
    print(f"  + sample the five groups               {sample_us:8.1f} us")
    print(
        f"  + MetricsData + JSON report line       {whole_us:8.1f} us  = {whole_us / points_one:.2f} us/point"
    )
    print(
        f"  stock SDK collection, same run         {stock_us:8.2f} us/point -> ours/stock "
        f"{whole_us / points_one / stock_us:.2f}x per point"
    )

    # -- 16 runtimes concurrently through the pipeline's Collector --------------------------------
    flat = [group for groups in all_groups for group in groups]
    collector = Collector(max_workers=runtimes)
    out_all = io.StringIO()
    exporter_all = ReportJsonExporter(runtime_count=runtimes, out=out_all)
    producer_all = MetricsDataProducer(Resource.get_empty())

    def tick() -> None:
        for groups in all_groups:
            fresh_tick(groups)
        exporter_all.export(producer_all.produce(collector.collect(flat, 0.8)))
        out_all.seek(0)
        out_all.truncate()

    tick()
    wall_start = time.monotonic()
    tick_us = cpu_us(tick, 9, 5)
    wall = (time.monotonic() - wall_start) / (9 * 5 + 3)
    points_all = point_count(producer_all.produce(collector.collect(flat, 0.8)))
    collector.shutdown()
    print(
        f"\n{runtimes} runtimes x {cores} cores x {models} models, concurrently: "
        f"{points_all} data points per tick"
    )
    print(f"  CPU per tick                           {tick_us:8.1f} us  (wall {wall * 1e3:.1f} ms)")
    print(
        f"  at a 1 s period                        {tick_us / 1e4:8.3f} % of one core "
        "(goal for the whole monitor <= 0.5 %)"
    )
    print(
        f"  per data point                         {tick_us / points_all:8.2f} us  -> ours/stock "
        f"{tick_us / points_all / stock_us:.2f}x"
    )
    print(f"  stock SDK for the same point count     {stock_us * points_all / 1e4:8.3f} % of one core")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        serve(sys.argv[2], *map(int, sys.argv[3:]))
    else:
        main()
