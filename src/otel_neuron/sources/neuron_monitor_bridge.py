"""Bridge AWS's neuron-monitor: run it (or read its stream) and keep what its reports say.

Two ways in, one per address scheme:

- ``neuron-monitor:[BINARY][?config=PATH&tag_filter=REGEX&index=N]`` runs BINARY (default
  /opt/aws/neuron/bin/neuron-monitor) as ``[BINARY, "-c", CONFIG]`` -- an argument list, never
  a shell -- with CONFIG either the user's own file (``config=``) or one generated from the
  groups otel-neuron was asked for. When the process exits it is restarted with exponential
  backoff (0.5 s doubling to 30 s; back to 0.5 s once a run has lasted 30 s).
- ``stdin:[?tag_filter=REGEX&index=N]`` reads the reports piped to otel-neuron's stdin
  (``neuron-monitor | otel-neuron-monitor --from-stdin``).

Several configured runtimes with the same source share one process or stream. ``tag_filter``
selects 2.x runtime entries by ``neuron_runtime_tag`` (``re.search``), ``index`` selects 1.x
entries by ``neuron_runtime_index``; without either, every runtime entry of the stream feeds
the configured runtime.

A reader thread parses every line (`neuron_monitor_report`) and folds each *fresh* group into
the windows of the otel-neuron groups that subscribed to it. A line that cannot be parsed or
folded, whatever the reason, is skipped (counted and logged) and the reader goes on with the
next. Should a reader thread itself ever fail, the subscribers' groups carry that failure as
their error from then on; a piped stream is still read to its end (so its writer never blocks)
and its end still ends the monitor. neuron-monitor repeats a group that
was not due with its previous body, so a group body equal to the one last seen for the same
runtime is not counted again. Per-period counts (executions, errors, ECC events) are summed
since the subscriber's previous sample: the sums are increases, which the pipeline turns into
cumulative counters, so a runtime that restarts (a new pid) only adds a new source of increases
and the totals never go down. Utilizations are time-weighted over the fresh upstream periods;
amounts (memory) are the latest per runtime, and a runtime that left the stream stops
contributing.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any
from urllib.parse import parse_qs

from otel_neuron.groups.base import HistogramDelta, describe_error
from otel_neuron.histogram import merge_histograms
from otel_neuron.sources.neuron_monitor_report import (
    CoreCounters,
    ExecutionStats,
    HwCounters,
    MemoryUsed,
    MonitorReport,
    NeuroncoreCounters,
    ReportParser,
    RuntimeReport,
    RuntimeVcpu,
    one_line,
)
from otel_neuron.sources.percentile_histogram import histogram_from_percentiles

_logger = logging.getLogger(__name__)

DEFAULT_BINARY = "/opt/aws/neuron/bin/neuron-monitor"
SPAWN_SCHEME = "neuron-monitor:"
STDIN_SCHEME = "stdin:"
INITIAL_BACKOFF = 0.5
MAX_BACKOFF = 30.0
HEALTHY_RUN = 30.0  # a run at least this long resets the backoff

# The groups this bridge can feed (1.x report keys) and the 2.x config types that produce them.
GROUP_KEYS = (
    "neuroncore_counters",
    "inference_stats",
    "memory_used",
    "hw_counters",
    "neuron_runtime_vcpu_usage",
)
_V2_RUNTIME_TYPES = {
    "neuroncore_counters": "neuroncore_counters",
    "inference_stats": "execution_stats",
    "memory_used": "memory_used",
    "neuron_runtime_vcpu_usage": "neuron_runtime_vcpu_usage",
}
SYSTEM_KEY = "system"  # the runtime key under which 2.x system groups are folded
# Executions whose latency neuron-monitor's percentiles describe.
EXECUTED_OUTCOMES = ("completed", "completed_with_err", "completed_with_num_err")


class BridgeError(RuntimeError):
    """The bridge has no usable data right now; the message says why."""


# --------------------------------------------------------------------------- addresses


@dataclass(frozen=True)
class BridgeAddress:
    scheme: str  # SPAWN_SCHEME or STDIN_SCHEME
    binary: str = DEFAULT_BINARY
    config: str | None = None
    tag_filter: str | None = None
    index: int | None = None

    @property
    def source_key(self) -> tuple[str, str, str | None]:
        """Addresses with the same key share one process or stream."""
        return (self.scheme, self.binary if self.scheme == SPAWN_SCHEME else "", self.config)

    def describe_source(self) -> str:
        return "stdin" if self.scheme == STDIN_SCHEME else f"neuron-monitor {self.binary}"


def is_bridge_address(address: str) -> bool:
    return address.startswith((SPAWN_SCHEME, STDIN_SCHEME))


def parse_bridge_address(address: str) -> BridgeAddress:
    """`neuron-monitor:[BINARY][?...]` or `stdin:[?...]`; ValueError naming the problem."""
    if address.startswith(SPAWN_SCHEME):
        scheme, rest = SPAWN_SCHEME, address[len(SPAWN_SCHEME) :]
    elif address.startswith(STDIN_SCHEME):
        scheme, rest = STDIN_SCHEME, address[len(STDIN_SCHEME) :]
    else:
        raise ValueError(f"{address!r} is not a neuron-monitor: or stdin: address")
    path, _, query = rest.partition("?")
    if scheme == STDIN_SCHEME and path:
        raise ValueError(f"{address!r}: stdin: takes no path, only ?tag_filter=... or ?index=...")
    options = {key: values[-1] for key, values in parse_qs(query, keep_blank_values=True).items()}
    unknown = sorted(set(options) - {"config", "tag_filter", "index"})
    if unknown:
        raise ValueError(f"{address!r}: unknown option {unknown[0]!r} (known: config, tag_filter, index)")
    if scheme == STDIN_SCHEME and "config" in options:
        raise ValueError(f"{address!r}: config= applies to neuron-monitor: addresses only")
    tag_filter = options.get("tag_filter")
    if tag_filter is not None:
        try:
            re.compile(tag_filter)
        except re.error as error:
            raise ValueError(
                f"{address!r}: tag_filter {tag_filter!r} is not a regular expression: {error}"
            ) from None
    index = None
    if "index" in options:
        if not options["index"].isdigit():
            raise ValueError(
                f"{address!r}: index must be a runtime index such as 0, not {options['index']!r}"
            )
        index = int(options["index"])
    return BridgeAddress(
        scheme=scheme,
        binary=path or DEFAULT_BINARY,
        config=options.get("config") or None,
        tag_filter=tag_filter,
        index=index,
    )


def generated_config(group_periods: Mapping[str, float]) -> dict[str, Any]:
    """A neuron-monitor 2.x configuration collecting what the subscribed groups need."""
    shortest = min(group_periods.values(), default=1.0)
    metrics = []
    for key, period in sorted(group_periods.items()):
        if key in _V2_RUNTIME_TYPES:
            metrics.append({"type": _V2_RUNTIME_TYPES[key], "period": _duration(period)})
    config: dict[str, Any] = {
        "period": _duration(shortest),
        "neuron_runtimes": [{"tag_filter": ".*", "metrics": metrics}] if metrics else [],
        "system_metrics": [],
    }
    if "hw_counters" in group_periods:
        config["system_metrics"].append(
            {"type": "neuron_hw_counters", "period": _duration(group_periods["hw_counters"])}
        )
    return config


def _duration(seconds: float) -> str:
    milliseconds = max(1, round(seconds * 1000))
    return f"{milliseconds // 1000}s" if milliseconds % 1000 == 0 else f"{milliseconds}ms"


# --------------------------------------------------------------------------- what a sample sees


@dataclass(frozen=True)
class BridgeWindow:
    """What arrived for one subscriber since its previous sample (one group's period)."""

    fresh: int  # fresh upstream group bodies folded in
    runtimes: tuple[str, ...]  # keys of the matching runtimes in the latest report
    # neuroncore_counters: utilization time-weighted over the fresh periods, else the latest
    cores: Mapping[int, CoreCounters] = field(default_factory=dict)
    # inference_stats: sums of the per-period counts; latencies as synthesized histograms
    outcomes: Mapping[str, int] = field(default_factory=dict)
    errors: Mapping[str, int] = field(default_factory=dict)
    total_latency: HistogramDelta | None = None
    device_latency: HistogramDelta | None = None
    # memory_used: the latest body of each matching runtime
    memory: tuple[MemoryUsed, ...] = ()
    # hw_counters: per device, per counter, summed
    ecc: Mapping[int, Mapping[str, int]] = field(default_factory=dict)
    # neuron_runtime_vcpu_usage: time-weighted per runtime, summed over runtimes
    vcpu_user: float | None = None
    vcpu_system: float | None = None


class _Subscription:
    """One otel-neuron group's running window over the stream (touched under the bridge lock)."""

    def __init__(self, key: str, address: BridgeAddress) -> None:
        self.key = key
        self.tag_filter = re.compile(address.tag_filter) if address.tag_filter is not None else None
        self.index = address.index
        self.runtimes: tuple[str, ...] = ()
        self._reset()
        self.latest_cores: dict[str, NeuroncoreCounters] = {}
        self.latest_memory: dict[str, MemoryUsed] = {}
        self.latest_vcpu: dict[str, RuntimeVcpu] = {}

    def _reset(self) -> None:
        self.fresh = 0
        self.utilization: dict[int, list[float]] = {}  # core -> [weighted sum, weight]
        self.outcomes: dict[str, int] = {}
        self.errors: dict[str, int] = {}
        self.total_latency: HistogramDelta | None = None
        self.device_latency: HistogramDelta | None = None
        self.ecc: dict[int, dict[str, int]] = {}
        self.vcpu: dict[str, list[float]] = {}  # runtime -> [user weighted, system weighted, weight]

    def matches(self, runtime: RuntimeReport) -> bool:
        if self.index is not None and runtime.index != self.index:
            return False
        return self.tag_filter is None or self.tag_filter.search(runtime.tag) is not None

    def retain(self, present: Iterable[str]) -> None:
        keys = set(present)
        self.runtimes = tuple(sorted(keys))
        for latest in (self.latest_cores, self.latest_memory, self.latest_vcpu):
            for gone in set(latest) - keys:
                del latest[gone]

    def add(self, runtime_key: str, body: Any, latencies: Latencies = (None, None)) -> None:
        """Fold one fresh body in; `latencies` are an ExecutionStats body's, made by `latencies_of`."""
        self.fresh += 1
        if isinstance(body, NeuroncoreCounters):
            self.latest_cores[runtime_key] = body
            for index, core in body.cores.items():
                if core.utilization is not None:
                    weight = body.period if body.period > 0 else 1.0
                    total = self.utilization.setdefault(index, [0.0, 0.0])
                    total[0] += core.utilization * weight
                    total[1] += weight
        elif isinstance(body, ExecutionStats):
            _add_counts(self.outcomes, body.outcomes)
            _add_counts(self.errors, body.errors)
            self.total_latency = merge_histograms(self.total_latency, latencies[0])
            self.device_latency = merge_histograms(self.device_latency, latencies[1])
        elif isinstance(body, MemoryUsed):
            self.latest_memory[runtime_key] = body
        elif isinstance(body, HwCounters):
            for device in body.devices:
                _add_counts(self.ecc.setdefault(device.neuron_device_index, {}), device.counters)
        elif isinstance(body, RuntimeVcpu):
            self.latest_vcpu[runtime_key] = body
            weight = body.period if body.period > 0 else 1.0
            total = self.vcpu.setdefault(runtime_key, [0.0, 0.0, 0.0])
            total[0] += (body.user or 0.0) * weight
            total[1] += (body.system or 0.0) * weight
            total[2] += weight

    def drain(self) -> BridgeWindow:
        cores: dict[int, CoreCounters] = {}
        for counters in self.latest_cores.values():
            for index, core in counters.cores.items():
                weighted = self.utilization.get(index)
                utilization = weighted[0] / weighted[1] if weighted and weighted[1] > 0 else core.utilization
                cores[index] = CoreCounters(utilization, core.loaded_models, core.flops, core.effective_flops)
        user = system = None
        if self.latest_vcpu:
            user = system = 0.0
            for runtime_key, latest in self.latest_vcpu.items():
                weighted = self.vcpu.get(runtime_key)
                if weighted and weighted[2] > 0:
                    user += weighted[0] / weighted[2]
                    system += weighted[1] / weighted[2]
                else:
                    user += latest.user or 0.0
                    system += latest.system or 0.0
        window = BridgeWindow(
            fresh=self.fresh,
            runtimes=self.runtimes,
            cores=cores,
            outcomes=dict(self.outcomes),
            errors=dict(self.errors),
            total_latency=self.total_latency,
            device_latency=self.device_latency,
            memory=tuple(self.latest_memory[key] for key in sorted(self.latest_memory)),
            ecc={index: dict(counts) for index, counts in self.ecc.items()},
            vcpu_user=user,
            vcpu_system=system,
        )
        self._reset()
        return window


Latencies = tuple[HistogramDelta | None, HistogramDelta | None]  # total, device


def latencies_of(body: Any) -> Latencies:
    """The histograms an ExecutionStats body's percentiles stand for (None, None for other bodies)."""
    if not isinstance(body, ExecutionStats):
        return (None, None)
    # Percentiles without a count still describe at least one execution.
    executed = max(sum(body.outcomes.get(name, 0) for name in EXECUTED_OUTCOMES), 1)
    return (
        histogram_from_percentiles(body.total_latency.values, executed) if body.total_latency else None,
        histogram_from_percentiles(body.device_latency.values, executed) if body.device_latency else None,
    )


@dataclass(frozen=True)
class _Fold:
    """A fresh group body of one report, ready to be folded into one subscriber."""

    subscription: _Subscription
    runtime_key: str
    body: Any
    latencies: Latencies


def _add_counts(into: dict[str, int], counts: Mapping[str, int]) -> None:
    for name, count in counts.items():
        into[name] = into.get(name, 0) + count


_RUNTIME_BODY = {
    "neuroncore_counters": "neuroncore_counters",
    "inference_stats": "execution_stats",
    "memory_used": "memory_used",
    "hw_counters": "hw_counters",
    "neuron_runtime_vcpu_usage": "vcpu_usage",
}


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
        self._subscriptions: list[_Subscription] = []
        self._group_periods: dict[str, float] = {}
        self._last_seen: dict[tuple[str, int], Any] = {}  # (runtime key, group key) -> last body
        self._errors: dict[str, str] = {}  # runtime key -> upstream error
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

    # -- subscribers

    def subscribe(self, group_key: str, address: BridgeAddress, period: float) -> _Subscription:
        if group_key not in GROUP_KEYS:
            raise ValueError(f"neuron-monitor does not provide the group {group_key!r}")
        subscription = _Subscription(group_key, address)
        with self._lock:
            self._subscriptions.append(subscription)
            self._group_periods[group_key] = min(period, self._group_periods.get(group_key, period))
        return subscription

    def unsubscribe(self, subscription: _Subscription) -> None:
        with self._lock:
            if subscription in self._subscriptions:
                self._subscriptions.remove(subscription)
            remaining = len(self._subscriptions)
        if remaining == 0:
            self.close()

    def window(self, subscription: _Subscription, max_age: float | None = None) -> BridgeWindow:
        """Drain the subscriber's window; BridgeError when there is nothing trustworthy to report."""
        self.start()
        with self._lock:
            status, last = self.status, self.last_report_time
            errors = [self._errors[key] for key in subscription.runtimes if self._errors.get(key)]
            ended_with_data = self.finished.is_set() and subscription.fresh > 0
            if self._failure:
                raise BridgeError(self._failure)
            if last is None or (status and not ended_with_data):
                # Keep what arrived: the next successful sample covers it.
                raise BridgeError(status)
            age = time.monotonic() - last
            if max_age is not None and age > max_age and not ended_with_data:
                raise BridgeError(f"no report from {self.address.describe_source()} for {age:.1f} s")
            if errors and not subscription.fresh:
                raise BridgeError("; ".join(sorted(set(errors))))
            return subscription.drain()

    # -- folding reports in

    def apply(self, report: MonitorReport) -> None:
        """Fold one parsed report into every subscriber (the reader thread calls this).

        All of it or, should anything fail, none of it: whatever can fail is done before the
        first change.
        """
        with self._lock:
            folds = self._fresh_folds(report)
            self.last_report_time = time.monotonic()
            self.status = ""
            for runtime in report.runtimes:
                self._errors[runtime.key] = runtime.error
            for fold in folds:
                self._last_seen[(fold.runtime_key, id(fold.subscription))] = fold.body
                if getattr(fold.body, "error", "") and not _has_data(fold.body):
                    self._errors[fold.runtime_key] = fold.body.error
                else:
                    fold.subscription.add(fold.runtime_key, fold.body, fold.latencies)
            for subscription in self._subscriptions:
                subscription.retain(
                    runtime.key for runtime in report.runtimes if subscription.matches(runtime)
                )
            live = {runtime.key for runtime in report.runtimes} | {SYSTEM_KEY}
            for seen in [seen for seen in self._last_seen if seen[0] not in live]:
                del self._last_seen[seen]
            for gone in set(self._errors) - live:
                del self._errors[gone]

    def _fresh_folds(self, report: MonitorReport) -> list[_Fold]:
        """The bodies of `report` each subscriber has not seen yet; changes nothing."""
        folds: list[_Fold] = []
        this_report: dict[tuple[str, int], Any] = {}
        for subscription in self._subscriptions:
            bodies = [
                (runtime.key, getattr(runtime, _RUNTIME_BODY[subscription.key]))
                for runtime in report.runtimes
                if subscription.matches(runtime)
            ]
            if subscription.key == "hw_counters" and report.hw_counters is not None:
                bodies.append((SYSTEM_KEY, report.hw_counters))  # 2.x: a system group
            for runtime_key, body in bodies:
                # A body equal to the last one seen for this runtime is neuron-monitor repeating a
                # group that was not due: it was counted already.
                seen_key = (runtime_key, id(subscription))
                if body is None or this_report.get(seen_key, self._last_seen.get(seen_key)) == body:
                    continue
                this_report[seen_key] = body
                folds.append(_Fold(subscription, runtime_key, body, latencies_of(body)))
        return folds

    # -- running

    def start(self) -> None:
        with self._lock:
            if self._started:
                return
            self._started = True
        if self.address.scheme == STDIN_SCHEME:
            # Not sys.stdin itself: a daemon thread blocked in its buffered reader holds a lock
            # the interpreter wants at exit. Read a duplicate of fd 0 with plain os.read.
            stream = self._stream if self._stream is not None else _FdLines(os.dup(sys.stdin.fileno()))
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
            _drain(stream)
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
            _stop_process(process)
            return None
        self.starts += 1
        with self._lock:
            self._last_seen.clear()  # a new process: its first bodies are all fresh
        _logger.info("started %s (pid %d)", " ".join(command), process.pid)
        assert process.stdout is not None and process.stderr is not None
        stderr_thread = threading.Thread(
            target=_tail_stderr,
            args=(_pipe_lines(process.stderr), stderr_tail),
            name="neuron-monitor-stderr",
            daemon=True,
        )
        stderr_thread.start()
        try:
            self._consume(_pipe_lines(process.stdout))
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
            _stop_process(process)

    def close(self) -> None:
        """Stop the child process and the threads (idempotent)."""
        with self._lock:
            self._stop.set()
            process = self._process
        if process is not None:
            _stop_process(process)
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


def _has_data(body: Any) -> bool:
    if isinstance(body, NeuroncoreCounters):
        return bool(body.cores)
    if isinstance(body, ExecutionStats):
        return bool(body.outcomes or body.errors)
    if isinstance(body, MemoryUsed):
        return bool(body.runtime.host or body.runtime.neuron_device)
    if isinstance(body, HwCounters):
        return bool(body.devices)
    if isinstance(body, RuntimeVcpu):
        return body.user is not None or body.system is not None
    return False


class _FdLines:
    """Lines of a file descriptor, read with os.read (no buffered-reader lock); huge lines are cut."""

    MAX_LINE = 16 * 1024 * 1024

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def __iter__(self) -> Iterator[bytes]:
        pending = b""
        while True:
            try:
                chunk = os.read(self._fd, 1 << 16)
            except OSError:
                break
            if not chunk:
                break
            pending += chunk
            *lines, pending = pending.split(b"\n")
            yield from lines
            if len(pending) > self.MAX_LINE:
                yield pending[:1024]  # counted as a malformed line
                pending = b""
        if pending:
            yield pending


def _pipe_lines(pipe: IO[bytes]) -> Iterator[bytes]:
    """The lines of a child's pipe; a line longer than MAX_LINE comes in pieces (each malformed)."""
    return iter(lambda: pipe.readline(_FdLines.MAX_LINE), b"")


def _tail_stderr(stream: Iterable[bytes], tail: list[str]) -> None:
    for raw in stream:
        line = raw.decode("utf-8", "replace").rstrip()
        if line:
            _logger.debug("neuron-monitor: %s", one_line(line))
            tail.append(one_line(line))
            del tail[:-5]


def _drain(stream: Iterable[bytes]) -> None:
    """Read a stream to its end, unused: its writer must not block on a reader that failed."""
    try:
        for _ in stream:
            pass
    except Exception:  # noqa: BLE001, S110 - the failure that brought us here is already reported
        pass


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

    def close(self) -> None:
        for bridge in self.bridges():
            bridge.close()


DEFAULT_REGISTRY = BridgeRegistry()


def _stop_process(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it has not exited within 0.3 s."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=0.3)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=1.0)
