"""Per-call cost of recording one inference, against a bare OpenTelemetry Histogram.record.

    python bench/bench_recorder.py [--calls 200000] [--threads 1,8]

Baseline, measured in the same run: ``Histogram.record(latency, {model, outcome})`` on an SDK
MeterProvider with one reader and the recommended base-2 exponential view (`latency_views()`).
Compared with it:

- ``recorder.record(model, outcome, total, device)``: one inference, counts + two latencies + core
  busy time (the hot path; goal <= 1.0x the baseline);
- ``with recorder.time(model):``: the same, timed by the context manager;
- the collection-time cost per inference when NeuronInstrumentor feeds the app's latency
  histograms (paid by the reader's thread at export, not by the inference threads).

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

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

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


def collection_cost_ns(values: Sequence[float]) -> float:
    """Per inference: the reader's collection with NeuronInstrumentor feeding the latency histograms."""
    recorder = new_recorder()
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader], views=otel_neuron.latency_views())
    instrumentor = otel_neuron.NeuronInstrumentor(config=INFERENCE_ONLY, recorder=recorder)
    instrumentor.instrument(meter_provider=provider)
    try:
        reader.collect()
        recorder_record(recorder)(values)
        began = time.perf_counter()
        reader.collect()
        return (time.perf_counter() - began) * 1e9 / len(values)
    finally:
        instrumentor.uninstrument()


def percentile_error(values: Sequence[float]) -> tuple[float, bool]:
    """(largest relative error of p1..p99, whether p0 and p100 are exact) of the app's histogram."""
    recorder = new_recorder()
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader], views=otel_neuron.latency_views())
    instrumentor = otel_neuron.NeuronInstrumentor(config=INFERENCE_ONLY, recorder=recorder)
    instrumentor.instrument(meter_provider=provider)
    try:
        recorder_record(recorder)(values)
        data = reader.get_metrics_data()
    finally:
        instrumentor.uninstrument()
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

    collect = collection_cost_ns(values)
    bare = per_call_ns(bare_histogram(), values, 1)
    print(
        f"collection-time feed of the app's two latency histograms: {collect:.0f} ns per inference "
        f"({collect / bare:.2f}x the bare record; one reader)"
    )
    worst, exact_ends = percentile_error(latencies(100_000, seed=2))
    print(
        f"percentiles of the app's histogram vs exact (100000 lognormal latencies): worst p1..p99 error "
        f"{worst * 100:.3f} %, p0/p100 exact: {exact_ends}"
    )


if __name__ == "__main__":
    main()
