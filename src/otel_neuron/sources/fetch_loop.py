"""One asyncio event loop, in one daemon thread, on which every runtime endpoint is fetched.

A blocking gRPC call costs about 300 us of CPU in Python, and a worker thread per runtime adds
its own wake-ups; grpc.aio on a single loop fetches all runtimes of a tick concurrently for
about half of that (bench/bench_runtime.py).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import threading
from collections.abc import Coroutine, Sequence
from typing import Any, Protocol


class Refreshable(Protocol):
    """A source that can bring its cached sample up to date on the fetch loop."""

    async def refresh(self) -> None: ...

    def mark_unanswered(self) -> None:
        """The refresh did not finish in time: cache the timeout as this tick's result."""


class FetchLoop:
    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    def refresh_all(self, sources: Sequence[Refreshable], timeout_s: float) -> None:
        """Refresh every source concurrently; any not refreshed within `timeout_s` is marked unanswered.

        The whole tick is one coroutine on the loop, so this thread hands over and waits once
        (a future per source cost about 30 us of CPU each in thread hand-offs).
        """
        if not sources:
            return
        refreshed: set[int] = set()
        future = self.submit(_refresh_together(sources, refreshed))
        try:
            future.result(timeout=timeout_s)
        except concurrent.futures.TimeoutError:
            future.cancel()  # cancels the refreshes still running
        for number, source in enumerate(sources):
            if number not in refreshed:
                source.mark_unanswered()

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


async def _refresh_together(sources: Sequence[Refreshable], refreshed: set[int]) -> None:
    """Run every source's refresh at once; `refreshed` gets the number of each that finished cleanly."""

    def finished(number: int, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is None:
            refreshed.add(number)

    tasks = [asyncio.ensure_future(source.refresh()) for source in sources]
    for number, task in enumerate(tasks):
        task.add_done_callback(functools.partial(finished, number))
    try:
        await asyncio.wait(tasks)
    finally:
        for task in tasks:
            task.cancel()  # only those still running: the caller's deadline passed


# Shared by every endpoint of the process: one thread, however many runtimes.
FETCH_LOOP = FetchLoop()
