"""One asyncio event loop, in one daemon thread, on which every runtime endpoint is fetched.

A blocking gRPC call costs about 300 us of CPU in Python, and a worker thread per runtime adds
its own wake-ups; grpc.aio on a single loop fetches all runtimes of a tick concurrently for
about half of that (bench/bench_runtime.py).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Coroutine, Sequence
from typing import Any, Protocol


class Refreshable(Protocol):
    """A source fetched on the loop; the collector hands each tick's result over in its own thread."""

    async def fetch_result(self) -> object:
        """This tick's fetch: the sample or the error describing why there is none (never raises)."""
        ...

    def hand_over(self, result: object | None) -> None:
        """Keep `result` as this tick's sample for every group of the source; None: no answer in time."""


class TickFetch:
    """The fetches of one tick, running on the loop while the collector does other work."""

    def __init__(self, sources: Sequence[Refreshable], future: concurrent.futures.Future[Any] | None) -> None:
        self._sources = sources
        self._future = future
        self._lock = threading.Lock()
        self._results: dict[int, object] = {}
        self._closed = False

    def _deliver(self, number: int, result: object) -> None:
        with self._lock:
            if not self._closed:  # a fetch finishing after the deadline is not this tick's anymore
                self._results[number] = result

    def finish(self, deadline: float) -> None:
        """Wait until the monotonic `deadline` at most, then hand every source its result, all at once."""
        if self._future is not None:
            try:
                self._future.result(timeout=max(deadline - time.monotonic(), 0.0))
            except concurrent.futures.TimeoutError:
                self._future.cancel()  # cancels the fetches still running
        with self._lock:
            self._closed = True
            results = dict(self._results)
        for number, source in enumerate(self._sources):
            source.hand_over(results.get(number))


class FetchLoop:
    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    def start(self, sources: Sequence[Refreshable]) -> TickFetch:
        """Fetch every source concurrently; the whole tick is one coroutine on the loop, so this thread
        hands over once (a future per source cost about 30 us of CPU each in thread hand-offs)."""
        if not sources:
            return TickFetch(sources, None)
        tick = TickFetch(sources, None)
        tick._future = self.submit(_fetch_together(sources, tick))
        return tick

    def refresh_all(self, sources: Sequence[Refreshable], timeout_s: float) -> None:
        """Fetch and hand over, waiting `timeout_s` at most."""
        self.start(sources).finish(time.monotonic() + timeout_s)

    def submit(self, coroutine: Coroutine[Any, Any, Any]) -> concurrent.futures.Future[Any]:
        return asyncio.run_coroutine_threadsafe(coroutine, self._running_loop())

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="otel-neuron-fetch", daemon=True)
                thread.start()
                self._loop = loop
            return self._loop


async def _fetch_together(sources: Sequence[Refreshable], tick: TickFetch) -> None:
    async def fetch(number: int, source: Refreshable) -> None:
        tick._deliver(number, await source.fetch_result())

    tasks = [asyncio.ensure_future(fetch(number, source)) for number, source in enumerate(sources)]
    try:
        await asyncio.wait(tasks)
    finally:
        for task in tasks:
            task.cancel()  # only those still running: the caller's deadline passed


# Shared by every endpoint of the process: one thread, however many runtimes.
FETCH_LOOP = FetchLoop()
