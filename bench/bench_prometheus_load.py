"""/metrics under load: prometheus_client's start_http_server (the baseline) against our exporter's server.

Both serve the same families (the neuron-monitor names of the 2.x fixture report) in this process:
the baseline renders its registry at every scrape, ours is the PrometheusExporter's own server (the
ScrapeServer answering with the bytes rendered at export). Each
round holds IDLE connections that never send anything, then SCRAPERS threads scrape SCRAPES_EACH
times each at once, every scrape with a TIMEOUT_S client timeout (what issue 15 measured with).
Printed per server: failed scrapes, scrapes per second, latency percentiles, the most threads seen
(besides the scrapers') and how many idle connections the server closed; then ours against the
baseline. A fair queue raises our median while cutting the tail: the baseline answers whoever got
past its backlog of 5 at once and leaves the rest to TCP retransmissions (1 s, 3 s, ...).

Run: .venv/bin/python bench/bench_prometheus_load.py [rounds]
"""

from __future__ import annotations

import http.client
import json
import socket
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from opentelemetry.sdk.metrics.export import MetricsData
from prometheus_client import start_http_server

from otel_neuron.exporters.prometheus import PrometheusExporter

SCRAPERS = 50
SCRAPES_EACH = 40
IDLE = 20
TIMEOUT_S = 5.0
REPORT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "reports" / "v2-report.json"

Stop = Callable[[], None]


def fed(listen: tuple[str, int] | None) -> PrometheusExporter:
    """An exporter given the fixture report as its (already built) 2.x report."""
    report = json.loads(REPORT.read_text())
    exporter = PrometheusExporter(listen=listen, names="neuron-monitor", report_builder=lambda _: report)
    exporter.export(MetricsData(resource_metrics=[]))
    return exporter


def baseline() -> tuple[int, Stop]:
    server, thread = start_http_server(0, addr="127.0.0.1", registry=fed(None).registry)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join()

    return int(server.server_address[1]), stop


def ours() -> tuple[int, Stop]:
    exporter = fed(("127.0.0.1", 0))
    assert exporter.address is not None
    return exporter.address[1], exporter.shutdown


def scrape(port: int) -> float:
    started = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT_S)
    try:
        connection.request("GET", "/metrics")
        response = connection.getresponse()
        response.read()
        if response.status != 200:
            raise OSError(f"status {response.status}")
    finally:
        connection.close()
    return time.perf_counter() - started


def storm(port: int) -> tuple[list[float], int, int, float]:
    """(latencies of the scrapes that succeeded, failures, most threads seen, seconds in all)."""
    latencies: list[float] = []
    failures = 0
    most_threads = threading.active_count()
    gate = threading.Barrier(SCRAPERS)
    lock = threading.Lock()

    def scraper() -> None:
        nonlocal failures, most_threads
        gate.wait()
        for _ in range(SCRAPES_EACH):
            try:
                seconds = scrape(port)
            except OSError:
                with lock:
                    failures += 1
                continue
            with lock:
                latencies.append(seconds)
                most_threads = max(most_threads, threading.active_count())

    threads = [threading.Thread(target=scraper) for _ in range(SCRAPERS)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, failures, most_threads - SCRAPERS, time.perf_counter() - started


def idle_closed(idle: list[socket.socket]) -> int:
    """How many idle connections the server has closed within 2 * TIMEOUT_S from now."""
    closed = 0
    deadline = time.monotonic() + 2 * TIMEOUT_S
    for connection in idle:
        connection.settimeout(max(deadline - time.monotonic(), 0.001))
        try:
            closed += connection.recv(1) == b""
        except TimeoutError:
            pass
    return closed


def run(name: str, start: Callable[[], tuple[int, Stop]]) -> dict[str, float]:
    port, stop = start()
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(IDLE)]
    try:
        latencies, failures, threads, seconds = storm(port)
        closed = idle_closed(idle)
    finally:
        for connection in idle:
            connection.close()
        stop()
    cuts = statistics.quantiles(latencies, n=100)
    result = {
        "failed": failures,
        "per_s": SCRAPERS * SCRAPES_EACH / seconds,
        "p50_ms": cuts[49] * 1000,
        "p99_ms": cuts[98] * 1000,
        "max_ms": max(latencies) * 1000,
        "threads": threads,
        "idle_closed": closed,
    }
    print(
        f"{name:9} {failures:4d} of {SCRAPERS * SCRAPES_EACH} failed   {result['per_s']:5.0f} scrapes/s"
        f"   p50 {result['p50_ms']:7.1f} ms   p99 {result['p99_ms']:7.1f} ms   max {result['max_ms']:7.1f} ms"
        f"   threads (not scrapers) <= {threads:3d}   idle closed {closed}/{IDLE}"
    )
    return result


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    print(
        f"{SCRAPERS} scrapers x {SCRAPES_EACH} scrapes, {IDLE} idle connections, {TIMEOUT_S} s client timeout"
    )
    for _ in range(rounds):
        old = run("baseline", baseline)
        new = run("ours", ours)
        print(
            f"ours/baseline: scrapes/s {new['per_s'] / old['per_s']:.2f}"
            f"  p50 {new['p50_ms'] / old['p50_ms']:.2f}  p99 {new['p99_ms'] / old['p99_ms']:.2f}"
            f"  failures {new['failed']:.0f} vs {old['failed']:.0f}"
        )


if __name__ == "__main__":
    main()
