"""What the SDK's OTLP transports cost per request, apart from the encoding, against a plain socket.

The monitor's exporters (EncodedGrpcMetricExporter, EncodedHttpMetricExporter: the SDK's exporters
with our encoding) send a ready-made request every --period seconds to a local rotel collector
(blackhole exporter), --requests times; the encoder is replaced by the ready bytes, so what is
measured is the SDK's send path: its retry loop, gRPC's channel and threads, or the HTTP client.
"grpc-sdk-channel" is the gRPC exporter on the SDK's channel options alone, BDP probing on (see
exporters/otlp_grpc.py): what turning it off saves. The anchor sends the same bytes over one TCP
connection to a reader that answers each with a byte. Each variant runs in a fresh process whose
CPU (all its threads, idle time between requests included) is taken from getrusage. Two request
sizes: an empty request and one the size of the monitor's at trn2 scale (about 850 kB).

Run: .venv/bin/python bench/bench_otlp_transport.py [--requests 15] [--period 1.0]   (needs rotel)
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_otlp import local_collector  # noqa: E402

# A child process: sends `requests` requests of `size` ("empty" or "trn2") through `transport`, one
# every `period` s, and prints the CPU seconds the process used meanwhile; it exits with an error if
# any request was not delivered (`send()` is False), so no retry is timed unnoticed.
CHILD = textwrap.dedent(
    """
    import resource, socket, sys, time
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
    from opentelemetry.sdk.metrics.export import MetricExportResult, MetricsData
    from otel_neuron.heap import keep_period_buffers

    transport, address, size, requests, period = sys.argv[1:6]
    keep_period_buffers()
    request = ExportMetricsServiceRequest()
    scope = request.resource_metrics.add().scope_metrics.add()
    for m in range(25 if size == "trn2" else 0):  # 4,600 points of five attributes
        metric = scope.metrics.add(name=f"neuron.metric.{m}")
        for i in range(184):
            point = metric.gauge.data_points.add(as_double=i * 1.5, time_unix_nano=10**18)
            for k in range(5):
                point.attributes.add(key=f"neuron.attribute.{k}").value.string_value = f"value-{i}-{k}"
    body = request.SerializeToString()
    if transport.startswith("grpc"):
        import otel_neuron.exporters.otlp_grpc as otlp_grpc
        if transport == "grpc-sdk-channel":
            otlp_grpc.CHANNEL_OPTIONS = ()  # the SDK's channel options alone: BDP probing on
        exporter = otlp_grpc.EncodedGrpcMetricExporter(endpoint=address)
        exporter._translate_data = lambda data: body
        send = lambda: exporter.export(MetricsData([])) is MetricExportResult.SUCCESS
    elif transport == "http":
        from otel_neuron.exporters.otlp_http import EncodedHttpMetricExporter
        exporter = EncodedHttpMetricExporter(endpoint=address)
        exporter._encoder.encode = lambda data: body
        send = lambda: exporter.export(MetricsData([])) is MetricExportResult.SUCCESS
    else:
        host, port = address.rsplit(":", 1)
        connection = socket.create_connection((host, int(port)))
        header = len(body).to_bytes(4, "big")
        send = lambda: connection.sendall(header + body) is None and connection.recv(1) == b"k"
    if not send():  # connected and warm
        sys.exit("the first request failed")
    def cpu_s():  # the process's, all threads, at microsecond resolution
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    before = cpu_s()
    failed = 0
    for _ in range(int(requests)):
        failed += not send()
        time.sleep(float(period))
    print(cpu_s() - before)
    if failed:
        sys.exit(f"{failed} of {requests} requests failed")
    """
)

# The anchor's reader: each length-prefixed message read whole, then answered with one byte.
READER = textwrap.dedent(
    """
    import socket, sys
    server = socket.create_server(("127.0.0.1", int(sys.argv[1])))
    buffer = bytearray(1 << 21)
    while True:  # a connection at a time (the first is the bench's check that it listens)
        connection, _ = server.accept()
        while len(header := connection.recv(4, socket.MSG_WAITALL)) == 4:
            view, left = memoryview(buffer), int.from_bytes(header, "big")
            while left:
                left -= connection.recv_into(view, min(left, len(buffer)))
            connection.sendall(b"k")
        connection.close()
    """
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_ms_per_request(transport: str, address: str, size: str, requests: int, period: float) -> float:
    reader = None
    if transport == "socket":
        port = free_port()
        reader = subprocess.Popen([sys.executable, "-c", READER, str(port)])
        address = f"127.0.0.1:{port}"
        _wait_for(port)
    try:
        out = subprocess.run(
            [sys.executable, "-c", CHILD, transport, address, size, str(requests), str(period)],
            capture_output=True,
            text=True,
            timeout=120 + requests * period * 2,
        )
    finally:
        if reader is not None:
            reader.kill()
            reader.wait()
    if out.returncode:
        last_line = (out.stderr.strip().splitlines() or ["no message"])[-1]
        sys.exit(f"bench_otlp_transport: {transport}: {last_line}")
    return float(out.stdout.strip()) / requests * 1000


def _wait_for(port: int) -> None:
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return
        except OSError:
            time.sleep(0.02)
    sys.exit(f"bench_otlp_transport: nothing listened on 127.0.0.1:{port}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=15)
    parser.add_argument(
        "--period", type=float, default=1.0, help="seconds between requests (the monitor: its period)"
    )
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with local_collector() as (grpc_port, http_port):
        addresses = {
            "grpc": f"http://127.0.0.1:{grpc_port}",
            "grpc-sdk-channel": f"http://127.0.0.1:{grpc_port}",
            "http": f"http://127.0.0.1:{http_port}/v1/metrics",
            "socket": "",
        }
        print(f"{args.requests} requests {args.period:g} s apart: process CPU a request, idle time included")
        for size in ("empty", "trn2"):
            for round_number in range(args.rounds):
                # Every other round in reverse, so a drift of the host favours no variant.
                order = list(addresses) if round_number % 2 == 0 else list(reversed(addresses))
                cost = {
                    t: cpu_ms_per_request(t, addresses[t], size, args.requests, args.period) for t in order
                }
                line = "  ".join(f"{t} {cost[t]:.2f} ms ({cost[t] / cost['socket']:.1f}x)" for t in addresses)
                print(f"  {size:5s} round {round_number + 1}: {line}")


if __name__ == "__main__":
    main()
