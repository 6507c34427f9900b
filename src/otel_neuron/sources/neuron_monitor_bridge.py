"""Bridge AWS's neuron-monitor: run it (or read its stream) and keep what its reports say.

Two ways in (`neuron_monitor_address`): ``neuron-monitor:[BINARY][?...]`` runs BINARY with a
config -- an argument list, never a shell -- and restarts it with exponential backoff when it
exits (0.5 s doubling to 30 s; back to 0.5 s once a run has lasted 30 s); ``stdin:[?...]`` reads
the reports piped to otel-neuron's stdin. Several configured runtimes with the same source share
one process or stream.

A reader thread parses every line (`neuron_monitor_report`) and folds it into the windows of the
otel-neuron groups that subscribed (`neuron_monitor_windows`: one window per application). A line
that cannot be parsed or folded, whatever the reason, is skipped (counted and logged) and the
reader goes on with the next; a report is folded whole or not at all. Should a reader thread
itself ever fail, the subscribers' groups carry that failure as their error from then on; a
piped stream is still read to its end (so its writer never blocks) and its end still ends the
monitor. The stream's root `instance_info` is kept (`BridgeRegistry.instance_info`), for the
report to use when the monitor's own instance lookup is off or failed.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import IO, Any

from otel_neuron.groups.base import describe_error
from otel_neuron.sources.line_streams import FdLines, drain, pipe_lines, stop_process, tail_stderr
from otel_neuron.sources.neuron_monitor_address import STDIN_SCHEME, BridgeAddress, generated_config
from otel_neuron.sources.neuron_monitor_report import ReportParser
from otel_neuron.sources.neuron_monitor_types import MonitorReport
from otel_neuron.sources.neuron_monitor_values import one_line
from otel_neuron.sources.neuron_monitor_windows import BridgeWindow, Subscription

_logger = logging.getLogger(__name__)

INITIAL_BACKOFF = 0.5
MAX_BACKOFF = 30.0
HEALTHY_RUN = 30.0  # a run at least this long resets the backoff


class BridgeError(RuntimeError):
    """The bridge has no usable data right now; the message says why."""


# --------------------------------------------------------------------------- the bridge


class NeuronMonitorBridge:
    """One neuron-monitor source (a child process or a stream) and its subscribers."""

    def __init__(
        self,
        address: BridgeAddress,
        stream: IO[bytes] | None = None,
        initial_backoff: float = INITIAL_BACKOFF,
        max_backoff: float = MAX_BACKOFF,
    ) -> None:
        self.address = address
        self.parser = ReportParser(address.describe_source())
        self._stream = stream
        self._initial_backoff = initial_backoff
        self._max_backoff = max_backoff
        self._lock = threading.Lock()
        self._subscriptions: list[Subscription] = []
        self._group_periods: dict[str, float] = {}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._process: subprocess.Popen[bytes] | None = None
        self._config_file: str | None = None
        self._started = False
        self.status = f"waiting for the first report from {address.describe_source()}"
        self.last_report_time: float | None = None  # monotonic
        self.starts = 0  # processes started (spawn mode)
        # No more reports will come: the stream ended (stdin mode) or a reader thread failed.
        self.finished = threading.Event()
        self._failure = ""  # why a reader thread failed, for good
        self._instance_info: Mapping[str, str] = {}  # the latest report's instance_info

    # -- subscribers

    def subscribe(self, group_key: str, address: BridgeAddress, period: float) -> Subscription:
        """A window over the stream for one group of one configured runtime (ValueError: unknown group)."""
        subscription = Subscription(group_key, address)
        with self._lock:
            self._subscriptions.append(subscription)
            self._group_periods[group_key] = min(period, self._group_periods.get(group_key, period))
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        with self._lock:
            if subscription in self._subscriptions:
                self._subscriptions.remove(subscription)
            remaining = len(self._subscriptions)
        if remaining == 0:
            self.close()

    def has_subscriber(self, group_key: str) -> bool:
        with self._lock:
            return any(subscription.key == group_key for subscription in self._subscriptions)

    def window(self, subscription: Subscription, max_age: float | None = None) -> BridgeWindow:
        """Drain the subscriber's window; BridgeError when there is nothing trustworthy to report."""
        self.start()
        with self._lock:
            status, last = self.status, self.last_report_time
            ended_with_data = self.finished.is_set() and subscription.fresh > 0
            if self._failure:
                raise BridgeError(self._failure)
            if last is None or (status and not ended_with_data):
                # Keep what arrived: the next successful sample covers it.
                raise BridgeError(status)
            age = time.monotonic() - last
            if max_age is not None and age > max_age and not ended_with_data:
                raise BridgeError(f"no report from {self.address.describe_source()} for {age:.1f} s")
            return subscription.drain()

    def instance_info(self) -> Mapping[str, str]:
        """The instance_info (2.x) or instance_data (1.x) of the latest report: the fields it gave."""
        with self._lock:
            return self._instance_info

    # -- folding reports in

    def apply(self, report: MonitorReport) -> None:
        """Fold one parsed report into every subscriber (the reader thread calls this).

        All of it or, should anything fail, none of it: whatever can fail is done before the
        first change.
        """
        with self._lock:
            plans = [(subscription, subscription.plan(report)) for subscription in self._subscriptions]
            self.last_report_time = time.monotonic()
            self.status = ""
            if report.instance:
                self._instance_info = report.instance
            for subscription, plan in plans:
                subscription.commit(plan)

    # -- running

    def start(self) -> None:
        with self._lock:
            if self._started:
                return
            self._started = True
        if self.address.scheme == STDIN_SCHEME:
            # Not sys.stdin itself: a daemon thread blocked in its buffered reader holds a lock
            # the interpreter wants at exit. Read a duplicate of fd 0 with plain os.read.
            stream = self._stream if self._stream is not None else FdLines(os.dup(sys.stdin.fileno()))
            self._spawn_thread(self._read_stream_forever, stream)
        else:
            self._spawn_thread(self._supervise)

    def _spawn_thread(self, target: Any, *args: Any) -> None:
        thread = threading.Thread(
            target=self._run_guarded,
            args=(target, *args),
            name=f"neuron-monitor-bridge-{target.__name__}",
            daemon=True,
        )
        thread.start()
        self._threads.append(thread)

    def _run_guarded(self, target: Any, *args: Any) -> None:
        """A reader thread's body: should it ever fail, the groups say so and the source is done."""
        try:
            target(*args)
        except Exception as error:  # noqa: BLE001 - a thread that dies silently hides every later line
            self._reader_failed(error)
            self._stop_child()
            self.finished.set()

    def _reader_failed(self, error: BaseException) -> None:
        _logger.error("%s: the reader failed", self.address.describe_source(), exc_info=error)
        with self._lock:
            self._failure = (
                f"reading {self.address.describe_source()} failed: {one_line(describe_error(error))}"
            )
            self.status = self._failure

    def _read_stream_forever(self, stream: IO[bytes]) -> None:
        try:
            self._consume(stream)
        except Exception as error:  # noqa: BLE001 - said in the groups' error, and read on to the end
            self._reader_failed(error)
            drain(stream)
        else:
            with self._lock:
                self.status = "stdin closed: no more neuron-monitor reports"
            _logger.warning("stdin closed after %d reports", self.parser.reports)
        self.finished.set()

    def _consume(self, stream: Iterable[bytes]) -> None:
        try:
            for line in stream:
                if self._stop.is_set():
                    return
                self.take(line)
        except (OSError, ValueError) as error:
            if not self._stop.is_set():
                _logger.warning("%s: read failed: %s", self.address.describe_source(), error)

    def take(self, line: str | bytes) -> MonitorReport | None:
        """Parse one line and fold it into the subscribers: the reader threads call this per line.

        Returns the report, or None when the line was skipped (counted and logged by `parser`);
        never raises, whatever the line holds.
        """
        report = self.parser.feed(line)
        if report is None:
            return None
        try:
            self.apply(report)
        except Exception as error:  # noqa: BLE001 - one line never stops the reader
            _logger.debug("%s: folding a report failed", self.address.describe_source(), exc_info=True)
            self.parser.unusable(f"could not be used: {type(error).__name__}: {error}")
            return None
        return report

    def config_path(self) -> str:
        """The config file the child runs with: the user's, or one generated from the subscribers."""
        if self.address.config:
            return self.address.config
        if self._config_file is None:
            with self._lock:
                document = generated_config(self._group_periods)
            handle, path = tempfile.mkstemp(prefix="otel-neuron-neuron-monitor-", suffix=".json")
            with os.fdopen(handle, "w", encoding="utf-8") as file:
                json.dump(document, file, indent=2)
            self._config_file = path
        return self._config_file

    def command(self) -> list[str]:
        return [self.address.binary, "-c", self.config_path()]

    def _supervise(self) -> None:
        backoff = self._initial_backoff
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                message = self._run_once()
            except Exception as error:  # noqa: BLE001 - a run that fails is restarted like one that exits
                _logger.error("%s: the run failed", self.address.describe_source(), exc_info=error)
                self._stop_child()
                message = f"reading {self.address.binary} failed: {one_line(describe_error(error))}"
            if message is None:
                return
            if time.monotonic() - started >= HEALTHY_RUN:
                backoff = self._initial_backoff
            with self._lock:
                self.status = f"{message}; restarting in {backoff:g} s"
            _logger.warning("%s; restarting in %g s", message, backoff)
            if self._stop.wait(backoff):
                return
            backoff = min(backoff * 2, self._max_backoff)

    def _run_once(self) -> str | None:
        """Run neuron-monitor until it exits; why it ended, or None when the bridge is closing."""
        try:
            command = self.command()
        except OSError as error:  # the generated config could not be written
            return f"cannot write a neuron-monitor config: {error.strerror or error}"
        stderr_tail: list[str] = []
        try:
            process = subprocess.Popen(  # noqa: S603 - an argument list, no shell
                command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
        except OSError as error:
            return f"cannot start {self.address.binary}: {error.strerror or error}"
        with self._lock:
            self._process = process
            stopping = self._stop.is_set()
        if stopping:  # close() ran while we were starting it: it must not outlive us
            stop_process(process)
            return None
        self.starts += 1
        with self._lock:
            for subscription in self._subscriptions:
                subscription.forget_bodies()  # a new process: its first bodies are all fresh
        _logger.info("started %s (pid %d)", " ".join(command), process.pid)
        assert process.stdout is not None and process.stderr is not None
        stderr_thread = threading.Thread(
            target=tail_stderr,
            args=(pipe_lines(process.stderr), stderr_tail),
            name="neuron-monitor-stderr",
            daemon=True,
        )
        stderr_thread.start()
        try:
            self._consume(pipe_lines(process.stdout))
            returncode = process.wait()
            stderr_thread.join(timeout=1.0)
        finally:
            process.stdout.close()
        if self._stop.is_set():
            return None
        message = f"{self.address.binary} exited with status {returncode}"
        return f"{message}: {stderr_tail[-1]}" if stderr_tail else message

    def _stop_child(self) -> None:
        with self._lock:
            process = self._process
        if process is not None:
            stop_process(process)

    def close(self) -> None:
        """Stop the child process and the threads (idempotent)."""
        with self._lock:
            self._stop.set()
            process = self._process
        if process is not None:
            stop_process(process)
        # The monitor's shutdown has a 1 s budget: the threads are daemons and end with the child.
        for thread in self._threads:
            if thread is not threading.current_thread() and self.address.scheme != STDIN_SCHEME:
                thread.join(timeout=0.3)
        if self._config_file is not None:
            try:
                os.unlink(self._config_file)
            except OSError:
                pass
            self._config_file = None


# --------------------------------------------------------------------------- sharing


class BridgeRegistry:
    """The running bridges, one per source, shared by every group that names that source."""

    def __init__(self, stdin: IO[bytes] | None = None) -> None:
        self._stdin = stdin
        self._bridges: dict[tuple[str, str, str | None], NeuronMonitorBridge] = {}
        self._lock = threading.Lock()

    def bridge_for(self, address: BridgeAddress) -> NeuronMonitorBridge:
        with self._lock:
            bridge = self._bridges.get(address.source_key)
            if bridge is None or bridge._stop.is_set():
                bridge = NeuronMonitorBridge(
                    address, stream=self._stdin if address.scheme == STDIN_SCHEME else None
                )
                self._bridges[address.source_key] = bridge
            return bridge

    def bridges(self) -> Sequence[NeuronMonitorBridge]:
        with self._lock:
            return list(self._bridges.values())

    def instance_info(self) -> Mapping[str, str]:
        """The instance facts neuron-monitor wrote in the latest report of a bridged stream ({} while
        none did): the fields it gave, as it gave them. They describe this host, as the monitor's own
        instance lookup does; use them when that lookup is off or failed."""
        for bridge in self.bridges():
            facts = bridge.instance_info()
            if facts:
                return facts
        return {}

    def close(self) -> None:
        for bridge in self.bridges():
            bridge.close()
