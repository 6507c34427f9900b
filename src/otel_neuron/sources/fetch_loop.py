"""Fetch every runtime of a tick concurrently: local sockets from the collector's own thread, the
rest on an asyncio event loop in a daemon thread (`FetchLoop`).

A transport that can (a runtime's snapshot socket) sends its request on a non-blocking socket and
the collector's thread reads every answer with one poll(): less CPU than the same exchange on an
event loop, and no thread hand-off. Everything else (gRPC, and any fetch whose socket failed) runs
on the transport's fetch loop: grpc.aio fetches all those runtimes concurrently, for less than a
blocking call per runtime costs (docs/architecture.md, Cost). The monitor gives every runtime one loop
(`pipeline.build_groups`), so however many runtimes there are, one thread runs them.
"""

from __future__ import annotations

import concurrent.futures
import math
import os
import select
import socket
import threading
import time
import weakref
from collections.abc import Coroutine, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import asyncio


class RuntimeTransport(Protocol):
    """How the collector fetches one runtime's answer at each tick: on a local snapshot socket read
    in the collector's thread where the runtime serves one, else by a coroutine on `fetch_loop`.
    The collector hands each tick's result over in its own thread."""

    fetch_loop: FetchLoop  # where `fetch_result` runs, and the connections it keeps live

    async def fetch_result(self) -> object:
        """This tick's fetch on the loop: the sample, or the error saying why there is none (never raises)."""
        ...

    def hand_over(self, result: object | None) -> None:
        """Keep `result` as this tick's sample for every group of the source; None: no answer in time."""

    def send_socket_request(self, at: float | None = None) -> socket.socket | None:
        """Send this tick's request on a local non-blocking socket and return it (None: use the loop);
        `at` is the tick's scheduled monotonic time (None: off the schedule). A source whose answer
        for that tick is booked sends nothing and returns the socket it comes on."""

    def book_socket_answer(self) -> None:
        """Once the tick's groups have sampled: book the next tick's answer, where that can be done."""

    def read_socket_answer(self) -> object | None:
        """Read from that socket: the result once whole, None while more is due. OSError when the
        socket failed; the source has then given it up and `fetch_result` is asked instead."""


_Numbered = tuple[int, RuntimeTransport]


class TickFetch:
    """The fetches of one tick, running while the collector does other work.

    Answers are taken as they come (`hand_over_as_answered`): each source is handed its own as soon as it
    is in, so a runtime that answers keeps its cadence whatever another one does; the rest are told
    at the deadline that no answer came. A result coming later is not this tick's.
    """

    def __init__(self, sources: Sequence[RuntimeTransport], at: float | None = None) -> None:
        """Start fetching every source: `at` is the tick's scheduled monotonic time, None for a
        fetch off the schedule."""
        self._sources = sources
        self._lock = threading.Lock()
        self._results: dict[int, object] = {}
        self._closed = False
        # Written to by the loop's thread whenever it delivers, so the collector's poll() wakes for
        # loop results as for socket answers; made only when some fetch runs on the loop.
        self._wake: tuple[int, int] | None = None
        self._wake_pending = False  # a wake-up is scheduled on a loop and not yet written
        self._awaiting_sockets: dict[socket.socket, _Numbered] = {}
        self._futures: list[concurrent.futures.Future[Any]] = []
        on_loop: list[_Numbered] = []
        for number, source in enumerate(sources):
            sent = source.send_socket_request(at)
            if sent is None:
                on_loop.append((number, source))
            else:
                self._awaiting_sockets[sent] = (number, source)
        if on_loop:
            self._submit(on_loop)

    def _submit(self, sources: Sequence[_Numbered]) -> None:
        if self._wake is None:
            # Blocking ends will do: the collector reads only once poll() saw bytes, and the loop
            # writes at most a byte a turn, far from filling the pipe before the tick closes it.
            self._wake = os.pipe()
        # The sources on one loop share one coroutine: this thread hands over once per loop, not
        # once per source.
        by_loop: dict[int, tuple[FetchLoop, list[_Numbered]]] = {}
        for numbered in sources:
            loop = numbered[1].fetch_loop
            by_loop.setdefault(id(loop), (loop, []))[1].append(numbered)
        for loop, on_loop in by_loop.values():
            self._futures.append(loop.submit(_fetch_together(on_loop, self)))

    def _deliver(self, number: int, result: object) -> None:
        with self._lock:
            if not self._closed:  # a fetch finishing after the deadline is not this tick's anymore
                self._results[number] = result

    def _deliver_on_loop(self, number: int, result: object) -> None:
        """`_deliver` from a loop's thread, waking the collector's poll() once for all that is
        delivered before the wake-up is written (`sim:` runtimes all answer in the same turn): a
        wake-up per answer would hand the interpreter back and forth between the threads for each."""
        with self._lock:
            if self._closed:
                return
            self._results[number] = result
            if self._wake_pending:
                return
            self._wake_pending = True
        _asyncio().get_running_loop().call_soon(self._wake_collector)

    def _wake_collector(self) -> None:
        with self._lock:
            self._wake_pending = False
            if self._wake is not None and not self._closed:
                os.write(self._wake[1], b"\0")

    def results(self, deadline: float) -> list[object | None]:
        """Wait until the monotonic `deadline` at most; each source's result, None if it had none."""
        for _ in self._arrivals(deadline):
            pass
        return [self._results.get(number) for number in range(len(self._sources))]

    def finish(self, deadline: float) -> None:
        """Wait until the monotonic `deadline` at most, handing every source its result."""
        for _ in self.hand_over_as_answered(deadline):
            pass

    def hand_over_as_answered(self, deadline: float) -> Iterator[list[int]]:
        """Hand the sources their results as they come in, yielding the numbers of those just handed
        theirs (the caller samples their groups before more are waited for); at the deadline, those
        without one are handed None, and yielded too."""
        for arrived in self._arrivals(deadline):
            for number in arrived:
                self._sources[number].hand_over(self._results.get(number))
            yield arrived

    def book_next(self) -> None:
        """Book each source's answer for the next tick (after the groups read this one's)."""
        for source in self._sources:
            source.book_socket_answer()

    def _arrivals(self, deadline: float) -> Iterator[list[int]]:
        """The numbers of the sources whose results came in, a list per wake-up, until the deadline;
        then those of the rest."""
        pending = set(range(len(self._sources)))
        # poll(), not a selector: its sockets are registered in this process, not in the kernel, so
        # a tick costs one system call per wait and one per read (epoll adds two per socket).
        poller = select.poll()
        waiting = {sent.fileno(): sent for sent in self._awaiting_sockets}
        for descriptor in waiting:
            poller.register(descriptor, select.POLLIN)
        watched_wake: int | None = None
        timeout_ms = 0  # the first look costs nothing to wait for: most answers are in already
        try:
            while pending:
                if self._wake is not None and watched_wake is None:  # a fetch went to the loop
                    watched_wake = self._wake[0]
                    poller.register(watched_wake, select.POLLIN)
                arrived: list[int] = []
                for descriptor, _ in poller.poll(timeout_ms):
                    if descriptor == watched_wake:
                        os.read(descriptor, 4096)  # every wake-up written so far
                        with self._lock:
                            ready = [number for number in pending if number in self._results]
                        pending.difference_update(ready)
                        arrived.extend(ready)
                        continue
                    sent = waiting[descriptor]
                    answered = self._read_socket(sent)
                    if answered is not None:
                        poller.unregister(descriptor)
                        del waiting[descriptor]
                    if answered:
                        number = self._awaiting_sockets[sent][0]
                        pending.discard(number)
                        arrived.append(number)
                if arrived:
                    yield arrived
                timeout_ms = math.ceil((deadline - time.monotonic()) * 1000)
                if timeout_ms <= 0:
                    break
        finally:
            self._close()
        if pending:
            yield list(pending)

    def _close(self) -> None:
        for future in self._futures:
            future.cancel()  # cancels the fetches still running
        with self._lock:
            self._closed = True
            wake, self._wake = self._wake, None
        if wake is not None:
            os.close(wake[0])
            os.close(wake[1])

    def _read_socket(self, sent: socket.socket) -> bool | None:
        """Read what `sent` holds: True once answered, False when its source gave the socket up (the
        loop asks it now), None while more is due."""
        number, source = self._awaiting_sockets[sent]
        try:
            result = source.read_socket_answer()
        except OSError:  # the source gave its socket up: the loop asks it now, over gRPC
            self._submit([(number, source)])
            return False
        if result is None:
            return None
        self._deliver(number, result)
        return True


# Submissions a fetch loop may have waiting before it is handed no more (see FetchLoop.submit): a
# tick hands each loop one, so this is several ticks behind.
MAX_BEHIND = 8


class FetchLoop:
    """An asyncio event loop in a daemon thread of its own, started at the first `submit` and
    stopped by `close()`, or once nothing refers to the FetchLoop any more. asyncio itself (with
    the ssl module it loads) is imported then: a monitor whose runtimes all answer on snapshot
    sockets never loads it."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop_when_dropped: weakref.finalize[Any, Any] | None = None
        self._closed = False
        self._lock = threading.Lock()
        self._behind = 0  # submissions the loop has not reached yet

    def submit(self, coroutine: Coroutine[Any, Any, Any]) -> concurrent.futures.Future[Any]:
        """Run `coroutine` on the loop; RuntimeError once the loop is closed.

        A loop that falls behind (a host too slow for the period, a fetch that blocks its thread)
        is not handed more: once MAX_BEHIND submissions wait for the loop to reach them, the
        coroutine is dropped and the future returned is cancelled (its sources have no answer this
        tick), so the loop's queue, and the memory it holds, stays bounded however long the loop is
        held up."""
        loop = self._running_loop()
        with self._lock:
            if self._behind >= MAX_BEHIND:
                coroutine.close()
                dropped: concurrent.futures.Future[Any] = concurrent.futures.Future()
                dropped.cancel()
                return dropped
            self._behind += 1
        future = _asyncio().run_coroutine_threadsafe(coroutine, loop)
        loop.call_soon_threadsafe(self._reached)  # runs once the loop has taken the coroutine up
        return future

    def _reached(self) -> None:
        with self._lock:
            self._behind -= 1

    def close(self) -> None:
        """Stop the loop and its thread (the coroutines still running are dropped)."""
        with self._lock:
            self._closed = True
            thread, self._thread, self._loop = self._thread, None, None
            stop, self._stop_when_dropped = self._stop_when_dropped, None
        if stop is not None and thread is not None:
            stop()
            thread.join(timeout=1.0)

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._closed:
                raise RuntimeError("the fetch loop is closed")
            if self._loop is None:
                loop = _asyncio().new_event_loop()
                thread = threading.Thread(target=_run, args=(loop,), name="otel-neuron-fetch", daemon=True)
                thread.start()
                self._loop, self._thread = loop, thread
                self._stop_when_dropped = weakref.finalize(self, loop.call_soon_threadsafe, loop.stop)
            return self._loop


def _run(loop: asyncio.AbstractEventLoop) -> None:
    try:
        loop.run_forever()
    finally:
        loop.close()


async def _fetch_together(sources: Sequence[_Numbered], tick: TickFetch) -> None:
    async def fetch(number: int, source: RuntimeTransport) -> None:
        tick._deliver_on_loop(number, await source.fetch_result())

    asyncio = _asyncio()
    tasks = [asyncio.ensure_future(fetch(number, source)) for number, source in sources]
    try:
        await asyncio.wait(tasks)
    finally:
        for task in tasks:
            task.cancel()  # only those still running: the caller's deadline passed


def _asyncio() -> Any:
    """The asyncio module, imported on first use (see FetchLoop)."""
    import asyncio

    return asyncio
