"""One asyncio event loop, in one daemon thread, on which every runtime endpoint is fetched.

A blocking gRPC call costs about 300 us of CPU in Python, and a worker thread per runtime adds
its own wake-ups; grpc.aio on a single loop fetches all runtimes of a tick concurrently for
about half of that (bench/bench_runtime.py).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
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
        """Refresh every source concurrently; any still running after `timeout_s` is marked unanswered."""
        if not sources:
            return
        pending = {self.submit(source.refresh()): source for source in sources}
        done, not_done = concurrent.futures.wait(pending, timeout=timeout_s)
        for future in not_done:
            future.cancel()
            pending[future].mark_unanswered()
        for future in done:
            if not future.cancelled() and future.exception() is not None:
                pending[future].mark_unanswered()

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


# Shared by every endpoint of the process: one thread, however many runtimes.
FETCH_LOOP = FetchLoop()
