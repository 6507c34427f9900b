"""An inference service instrumented with otel-neuron (docs/in-app.md walks through it).

    python examples/inference_app.py --inferences 2000 --report-interval 1     # JSON report on stdout
    python examples/inference_app.py --address unix:/tmp/app.sock --duration 60  # a daemon can poll it
    opentelemetry-instrument python examples/inference_app.py                   # via the entry point

Worker threads run a stand-in for a Neuron model: it sleeps a lognormal few milliseconds and now and
then fails the way a real one does, by raising one of otel_neuron's exceptions (or a built-in one
the recorder maps). Every call goes through the process recorder. When the workload is done the
app writes one line to stderr, ``done {"completed": ..., ...}`` (its own tally per outcome), then
keeps serving until --duration has passed or it gets SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import json
import queue
import random
import signal
import sys
import threading
import time

from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

import otel_neuron
from otel_neuron.exporters.report_json import ReportJsonExporter

# The failures this fake model produces: the exception it raises and the outcome that counts as.
FAILURES: dict[type[Exception], str] = {
    otel_neuron.NumericalError: "completed_with_num_err",  # e.g. NaN in the output tensor
    otel_neuron.TransientError: "completed_with_err",
    otel_neuron.HardwareError: "completed_with_err",
    otel_neuron.InferenceTimeout: "timed_out",
    ValueError: "incorrect_input",  # e.g. a wrong input shape
    queue.Full: "failed_to_queue",  # the device queue is full
}


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", help="serve the runtime endpoint here, e.g. unix:/tmp/app.sock")
    parser.add_argument(
        "--inferences", type=int, default=1000, help="inferences to run in all (default 1000)"
    )
    parser.add_argument("--threads", type=int, default=4, help="worker threads (default 4)")
    parser.add_argument("--error-rate", type=float, default=0.05, help="fraction of failing inferences")
    parser.add_argument(
        "--report-interval", type=float, default=0.0, help="seconds between JSON reports (0: none)"
    )
    parser.add_argument("--delay", type=float, default=0.0, help="seconds to wait before the workload")
    parser.add_argument("--duration", type=float, default=0.0, help="seconds to keep serving after the work")
    parser.add_argument("--seed", type=int, default=1)
    return parser.parse_args()


def setup_metrics(report_interval: float) -> MeterProvider:
    """The app's own MeterProvider; with a report interval, the guide's JSON report goes to stdout."""
    readers = []
    if report_interval > 0:
        exporter = ReportJsonExporter(runtime_count=1, out=sys.stdout)
        readers.append(PeriodicExportingMetricReader(exporter, export_interval_millis=report_interval * 1000))
    current = metrics.get_meter_provider()
    if isinstance(current, MeterProvider):  # already configured (e.g. by an OpenTelemetry distro)
        for reader in readers:
            current.add_metric_reader(reader)
        return current
    provider = MeterProvider(metric_readers=readers, views=otel_neuron.latency_views())
    metrics.set_meter_provider(provider)
    return provider


def run_model(rng: random.Random, error_rate: float) -> None:
    """Stand-in for model(inputs): a few milliseconds on the 'device', sometimes a failure."""
    time.sleep(rng.lognormvariate(-6.0, 0.4))  # about 2.5 ms
    if rng.random() < error_rate:
        raise rng.choice(list(FAILURES))()


def main() -> int:
    args = parse_arguments()
    recorder = otel_neuron.recorder()
    recorder.register_model("resnet50", [otel_neuron.Subgraph("sg00", core=0, device_bytes=512 << 20)])
    provider = setup_metrics(args.report_interval)
    instrumentor = otel_neuron.NeuronInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:  # opentelemetry-instrument may have done it
        instrumentor.instrument()
    server = otel_neuron.serve_runtime_endpoint(args.address) if args.address else None

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait(args.delay)  # e.g. for a monitor to take its first snapshot
    tally = dict.fromkeys(["completed", *FAILURES.values()], 0)
    tally_lock = threading.Lock()

    def worker(number: int) -> None:
        rng = random.Random(args.seed * 1000 + number)
        share = args.inferences // args.threads + (number < args.inferences % args.threads)
        for _ in range(share):
            if stop.is_set():
                break
            outcome = "completed"
            try:
                with recorder.time("resnet50"):
                    run_model(rng, args.error_rate)
            except Exception as error:  # the recorder counted it; a real server would answer the client
                outcome = FAILURES[type(error)]
            with tally_lock:
                tally[outcome] += 1

    workers = [threading.Thread(target=worker, args=(n,)) for n in range(args.threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    print("done", json.dumps(tally), file=sys.stderr, flush=True)
    stop.wait(args.duration)

    if server is not None:
        server.stop()
    provider.shutdown()  # exports the last report
    instrumentor.uninstrument()
    return 0


if __name__ == "__main__":
    sys.exit(main())
