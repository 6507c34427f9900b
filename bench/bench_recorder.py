"""Per-call cost of recording one inference, against a bare OpenTelemetry Histogram.record.

    python bench/bench_recorder.py [--calls 200000] [--threads 1,8]

Baseline, measured in the same run: ``Histogram.record(latency, {model, outcome})`` on an SDK
MeterProvider with one reader and the recommended base-2 exponential view (`latency_views()`).
Compared with it:

- ``recorder.record(model, outcome, total, device)``: one inference, counts + two latencies + core
  busy time (the hot path; goal <= 1.0x the baseline);
- ``with recorder.time(model):``: the same, timed by the context manager;
- the collection-time cost per inference, two ways: NeuronInstrumentor feeding the app's two SDK
  latency Histograms (the default; one record per inference and histogram), and a
  `LatencyExporter` adding them to the export from the recorder's buckets (paid by the reader's
  thread at export, not by the inference threads);
- the in-app total per inference (issue 19.4): the hot path plus the collection's share, each way,
  against the bare record.

With N threads each call's cost is wall time * threads / calls (all threads share the GIL). Last,
the percentile error of the app's exported latency histogram against the exact values.
"""

from __future__ import annotations

import argparse
import math
import random
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    InMemoryMetricReader,
    MetricExporter,
    MetricExportResult,
    MetricReader,
    MetricsData,
    PeriodicExportingMetricReader,
)

import otel_neuron
from otel_neuron.groups.base import HistogramDelta
from otel_neuron.histogram import percentile

MODEL = "resnet50"
INFERENCE_ONLY = {"neuron_runtimes": [{"address": "unix:/unused", "metrics": [{"type": "inference_stats"}]}]}


def exact_percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank percentile `q` (0..100) of `values`: what the estimate is held to."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered) - 1e-9))
    return ordered[0] if q <= 0 else ordered[min(rank, len(ordered)) - 1]


def latencies(count: int, seed: int = 1) -> list[float]:
    rng = random.Random(seed)
    return [rng.lognormvariate(-5.5, 0.5) for _ in range(count)]


def per_call_ns(work: Callable[[Sequence[float]], None], values: Sequence[float], threads: int) -> float:
    """Best of three: wall seconds for every thread to run `work` over `values`, per call, in ns."""
    best = float("inf")
    for _ in range(3):
        start = threading.Barrier(threads + 1)

        def run(barrier: threading.Barrier) -> None:
            barrier.wait()
            work(values)

        workers = [threading.Thread(target=run, args=(start,)) for _ in range(threads)]
        for worker in workers:
            worker.start()
        start.wait()
        began = time.perf_counter()
        for worker in workers:
            worker.join()
        best = min(best, time.perf_counter() - began)
    return best * 1e9 / (len(values) * threads)


def bare_histogram() -> Callable[[Sequence[float]], None]:
    provider = MeterProvider(metric_readers=[InMemoryMetricReader()], views=otel_neuron.latency_views())
    histogram = provider.get_meter("bench").create_histogram("neuron.inference.latency", unit="s")
    attributes = {"neuron.model.name": MODEL, "neuron.inference.outcome": "completed"}

    def work(values: Sequence[float]) -> None:
        record = histogram.record
        for value in values:
            record(value, attributes)

    return work


def new_recorder() -> otel_neuron.InferenceRecorder:
    recorder = otel_neuron.InferenceRecorder(cores=2)
    recorder.register_model(MODEL, [otel_neuron.Subgraph("sg00", 0), otel_neuron.Subgraph("sg01", 1)])
    return recorder


def recorder_record(recorder: otel_neuron.InferenceRecorder) -> Callable[[Sequence[float]], None]:
    def work(values: Sequence[float]) -> None:
        record = recorder.record
        for value in values:
            record(MODEL, "completed", value, value * 0.8)

    return work


def recorder_time(recorder: otel_neuron.InferenceRecorder) -> Callable[[Sequence[float]], None]:
    def work(values: Sequence[float]) -> None:
        timed = recorder.time
        for _ in values:
            with timed(MODEL):
                pass

    return work


class DroppingExporter(MetricExporter):
    """An exporter that sends nothing: what is measured is the collection and the wrapper."""

    def __init__(self) -> None:
        super().__init__()
        self.exported: list[MetricsData] = []

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        self.exported[:] = [metrics_data]  # the latest only: what the accuracy check reads
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        pass


def collection_cost_ns(values: Sequence[float], lean: bool) -> float:
    """Per inference: one collection after `values` were recorded, the latency histograms fed to
    SDK Histograms (`lean` False) or added by a LatencyExporter (True), best of three."""
    best = float("inf")
    for _ in range(3):
        recorder = new_recorder()
        if lean:
            exporter = otel_neuron.LatencyExporter(DroppingExporter())
            reader: MetricReader = PeriodicExportingMetricReader(exporter, export_interval_millis=10**9)
            options: dict[str, Any] = {"latency_exporter": exporter}
        else:
            reader = InMemoryMetricReader()
            options = {}
        provider = MeterProvider(metric_readers=[reader], views=otel_neuron.latency_views())
        instrumentor = otel_neuron.NeuronInstrumentor(config=INFERENCE_ONLY, recorder=recorder)
        instrumentor.instrument(meter_provider=provider, **options)
        try:
            collect = provider.force_flush if lean else reader.collect
            collect()
            recorder_record(recorder)(values)
            began = time.perf_counter()
            collect()
            best = min(best, time.perf_counter() - began)
        finally:
            instrumentor.uninstrument()
            provider.shutdown()
    return best * 1e9 / len(values)


def percentile_error(values: Sequence[float], lean: bool) -> tuple[float, bool]:
    """(largest relative error of p1..p99, whether p0 and p100 are exact) of the app's exported
    latency histogram, fed to SDK Histograms (`lean` False) or added by a LatencyExporter."""
    recorder = new_recorder()
    dropping = DroppingExporter()
    exporter = otel_neuron.LatencyExporter(dropping)
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=10**9)
    provider = MeterProvider(metric_readers=[reader], views=otel_neuron.latency_views())
    instrumentor = otel_neuron.NeuronInstrumentor(config=INFERENCE_ONLY, recorder=recorder)
    instrumentor.instrument(meter_provider=provider, **({"latency_exporter": exporter} if lean else {}))
    try:
        recorder_record(recorder)(values)
        provider.force_flush()
        data = dropping.exported[0]
    finally:
        instrumentor.uninstrument()
        provider.shutdown()
    assert data is not None
    point = next(
        metric.data.data_points[0]
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == "neuron.inference.latency"
    )
    histogram = HistogramDelta(
        point.scale,
        point.zero_count,
        point.positive.offset,
        tuple(point.positive.bucket_counts),
        point.count,
        point.sum,
        point.min,
        point.max,
    )
    worst = max(
        abs(percentile(histogram, q) - exact_percentile(values, q)) / exact_percentile(values, q)
        for q in (1, 25, 50, 75, 99)
    )
    exact_ends = percentile(histogram, 0) == min(values) and percentile(histogram, 100) == max(values)
    return worst, exact_ends


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200_000, help="calls per thread (default 200000)")
    parser.add_argument("--threads", default="1,8", help="comma-separated thread counts (default 1,8)")
    args = parser.parse_args()
    values = latencies(args.calls)

    print(f"{'threads':>7}  {'bare Histogram.record':>22}  {'recorder.record':>22}  {'recorder.time':>22}")
    for threads in (int(t) for t in args.threads.split(",")):
        bare = per_call_ns(bare_histogram(), values, threads)
        record = per_call_ns(recorder_record(new_recorder()), values, threads)
        timed = per_call_ns(recorder_time(new_recorder()), values, threads)
        print(
            f"{threads:>7}  {bare:>19.0f} ns  {record:>11.0f} ns {record / bare:>5.2f}x"
            f"  {timed:>11.0f} ns {timed / bare:>5.2f}x"
        )

    bare = per_call_ns(bare_histogram(), values, 1)
    record = per_call_ns(recorder_record(new_recorder()), values, 1)
    print("\nper inference, one thread, one reader collecting once after all the calls:")
    for name, lean in (("SDK Histograms fed (default)", False), ("LatencyExporter", True)):
        collect = collection_cost_ns(values, lean)
        total = record + collect
        print(
            f"  {name:<29} collection {collect:6.0f} ns ({collect / bare:5.2f}x the bare record);"
            f" hot path + collection {total:6.0f} ns = {total / bare:5.2f}x the bare record"
        )
    print("percentiles of the app's exported histogram vs exact (100000 lognormal latencies):")
    for name, lean in (("SDK Histograms fed (default)", False), ("LatencyExporter", True)):
        worst, exact_ends = percentile_error(latencies(100_000, seed=2), lean)
        print(f"  {name:<29} worst p1..p99 error {worst * 100:.3f} %, p0/p100 exact: {exact_ends}")


if __name__ == "__main__":
    main()
