"""The inference recorder: what a Neuron runtime (or an instrumented app) counts, cheaply.

One `InferenceRecorder` per runtime. The hot path (`record`, `time`, `add_core_busy`) writes
only to a shard owned by the calling thread, so threads never wait for each other; `snapshot()`
merges the shards into the cumulative `runtime_pb2.Snapshot` served by the runtime endpoint.
When a thread ends, the next new thread continues its shard: a service running each request on a
thread of its own keeps as many shards as threads that recorded at once.
Registering models, memory and ECC events are rare and take a small lock.

    recorder = InferenceRecorder(cores=2, devices=1)
    model_id = recorder.register_model("resnet", subgraphs=[Subgraph("sg00", core=0, device_bytes=1 << 20)])
    with recorder.time("resnet") as call:
        result = run_inference()        # raise NumericalError, TransientError, ... to classify failures
        call.device_latency_s = 0.004   # optional; defaults to the total latency
    recorder.record("resnet", "completed", total_latency_s=0.005, device_latency_s=0.004)

Outcomes and error types are the guide's `inference_summary` and `error_summary` keys. How an
exception maps to them (see `classify`):

    exception                                   outcome                  error type
    NumericalError, FloatingPointError          completed_with_num_err   numerical
    TransientError                              completed_with_err       transient
    ModelError                                  completed_with_err       model
    HardwareError                               completed_with_err       hardware
    NeuronRuntimeError                          completed_with_err       runtime
    InferenceTimeout, TimeoutError              timed_out                runtime
    IncorrectInputError, ValueError             incorrect_input          generic
    QueueFullError, queue.Full                  failed_to_queue          runtime
    any other exception                         completed_with_err       generic

Latencies (seconds) go into the latency histograms for every inference that ran, i.e. unless the
outcome is incorrect_input or failed_to_queue or the latency passed is None.

The snapshot also carries what neuron-monitor 2.x reports of an application: its tag (the `tag`
argument, else the NEURON_PROCESS_TAG environment variable, else str(pid)), memory by category
(`usage_breakdown`: host memory not given a category counts as application_memory, which is
neuron-monitor's category for everything else; device memory by category only as given) and,
once a model declares its flops per inference, every NeuronCore's floating-point operations.

Consistency: each thread's updates become visible to `snapshot()` one field at a time, so a
snapshot taken while an inference is being recorded may count it in one total and not yet in
another; every total is monotonic and the next snapshot includes it everywhere.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import time
import uuid as uuid_module
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

from otel_neuron.histogram import SCALE, bounds_from_buckets, bucket_index, dense_buckets
from otel_neuron.runtime import runtime_pb2
from otel_neuron.semconv import (
    CORE_MEMORY_CATEGORIES,
    ECC_KINDS,
    HOST_MEMORY_CATEGORIES,
    OUTCOMES,
    PROCESS_TAG_MAX_LENGTH,
    PROCESS_TAG_VARIABLE,
    SUBGRAPH_DEVICE_MEMORY_CATEGORIES,
)
from otel_neuron.semconv import ERROR_TYPES_V2 as ERROR_TYPES

PROTOCOL_VERSION = 1

# Where host memory given no category goes: neuron-monitor's "all allocations not in the other categories".
_HOST_REST = "application_memory"

_OUTCOME_INDEX = {name: i for i, name in enumerate(OUTCOMES)}
_ERROR_INDEX = {name: i for i, name in enumerate(ERROR_TYPES)}
_NOT_RUN = (_OUTCOME_INDEX["incorrect_input"], _OUTCOME_INDEX["failed_to_queue"])
_WINDOWS_KEPT = 256  # latency min/max epochs retained: enough for 256 monitors polling each period
# Epochs whose latencies are kept for the period histograms: 32 monitors polling each period get them
# (a few KB an epoch); a monitor asking about an older epoch subtracts the cumulative histograms.
_PERIODS_KEPT = 32


# Exceptions an application raises (or wraps) to classify a failed inference.
class InferenceError(Exception):
    """Base of the classified inference failures; `outcome` and `error_type` say how it counts."""

    outcome = "completed_with_err"
    error_type = "generic"


class NumericalError(InferenceError):
    outcome, error_type = "completed_with_num_err", "numerical"


class TransientError(InferenceError):
    outcome, error_type = "completed_with_err", "transient"


class ModelError(InferenceError):
    outcome, error_type = "completed_with_err", "model"


class HardwareError(InferenceError):
    outcome, error_type = "completed_with_err", "hardware"


class NeuronRuntimeError(InferenceError):
    outcome, error_type = "completed_with_err", "runtime"


class InferenceTimeout(InferenceError):
    outcome, error_type = "timed_out", "runtime"


class IncorrectInputError(InferenceError):
    outcome, error_type = "incorrect_input", "generic"


class QueueFullError(InferenceError):
    outcome, error_type = "failed_to_queue", "runtime"


def classify(error: BaseException | None) -> tuple[str, str | None]:
    """(outcome, error type) of an inference that ended with `error` (None: it succeeded)."""
    if error is None:
        return "completed", None
    if isinstance(error, InferenceError):
        return error.outcome, error.error_type
    if isinstance(error, FloatingPointError):
        return "completed_with_num_err", "numerical"
    if isinstance(error, TimeoutError):  # also asyncio/concurrent.futures TimeoutError on 3.11+
        return "timed_out", "runtime"
    if isinstance(error, queue.Full):
        return "failed_to_queue", "runtime"
    if isinstance(error, ValueError):
        return "incorrect_input", "generic"
    return "completed_with_err", "generic"


@dataclass(frozen=True)
class Subgraph:
    """A subgraph of a model placed on one NeuronCore, with the memory it holds.

    `host_breakdown` splits host memory by category (HOST_MEMORY_CATEGORIES; what it leaves out of
    `host_bytes` is application_memory), `device_breakdown` device memory
    (SUBGRAPH_DEVICE_MEMORY_CATEGORIES; it must add up to `device_bytes`). A byte count left at 0
    is the sum of its breakdown.
    """

    name: str
    core: int
    device: int | None = None  # None: the device holding `core`
    host_bytes: int = 0
    device_bytes: int = 0
    host_breakdown: Mapping[str, int] | None = None
    device_breakdown: Mapping[str, int] | None = None


@dataclass(frozen=True)
class _Model:
    name: str
    uuid: str
    model_id: int
    running: bool
    host_bytes: int
    device_bytes: int
    subgraphs: tuple[Subgraph, ...]
    flops_per_inference: float = 0.0


class _Shard:
    """One thread's cumulative counts. Only the owning thread writes; snapshot() reads."""

    __slots__ = (
        "outcomes",
        "errors",
        "total_buckets",
        "device_buckets",
        "total_zero",
        "device_zero",
        "latency_count",
        "total_sum",
        "device_sum",
        "busy",
        "flops",
        "window",
        "closed",
    )

    def __init__(self, cores: int) -> None:
        self.outcomes = [0] * len(OUTCOMES)
        self.errors = [0] * len(ERROR_TYPES)
        self.total_buckets: dict[int, int] = {}
        self.device_buckets: dict[int, int] = {}
        self.total_zero = 0
        self.device_zero = 0
        self.latency_count = 0
        self.total_sum = 0.0
        self.device_sum = 0.0
        self.busy = [0.0] * cores
        self.flops = [0.0] * cores
        # (epoch, total_min, total_max, device_min, device_max) of the current epoch, replaced as a
        # whole so a reader never sees a torn window; None until the first latency.
        self.window: tuple[int, float, float, float, float] | None = None
        self.closed: deque[tuple[int, float, float, float, float]] = deque()


class _ShardLease:
    """A thread's hold on its shard, kept in the thread's local storage.

    When the thread ends Python frees its local storage, and with it the lease, which hands the
    shard back to the recorder: the next new thread continues it. Its counts are cumulative, so
    they stay counted; and a service that runs each request on a thread of its own keeps as many
    shards as threads ever recorded at once, not one per request.
    """

    __slots__ = ("shard", "free")

    def __init__(self, shard: _Shard, free: deque[_Shard]) -> None:
        self.shard = shard
        self.free = free

    def __del__(self) -> None:
        self.free.append(self.shard)  # deque.append is atomic: no lock taken while a thread ends


class InferenceRecorder:
    """Cumulative inference, latency, core, memory, CPU and ECC state of one runtime.

    `cores` NeuronCores spread evenly over `devices` Neuron devices. `cpu_times` returns the
    runtime's (user, system) CPU seconds; it defaults to this process's `os.times()`, and the
    snapshot reports the increase since the recorder was created. `tag` is the application's tag
    (neuron-monitor's neuron_runtime_tag); None takes NEURON_PROCESS_TAG, and without it the tag
    is the process id.
    """

    def __init__(
        self,
        cores: int = 1,
        devices: int = 1,
        cpu_times: Callable[[], tuple[float, float]] | None = None,
        runtime_id: str | None = None,
        tag: str | None = None,
    ) -> None:
        if cores < 1 or devices < 1:
            raise ValueError(f"a runtime needs at least one core and one device, not {cores} and {devices}")
        self._tag = _checked_tag(tag)
        self.cores = cores
        self.devices = devices
        self.runtime_id = runtime_id or uuid_module.uuid4().hex
        self._cpu_times = cpu_times or _process_cpu_times
        self._cpu_start = self._cpu_times()
        self._start_wall = time.time_ns()
        self._start_monotonic = time.monotonic_ns()
        self._local = threading.local()
        self._shards: list[_Shard] = []
        self._free_shards: deque[_Shard] = deque()  # of ended threads, for the next new thread
        self._shards_lock = threading.Lock()
        self._epoch = 1  # the epoch latencies are currently recorded in
        self._windows: dict[int, list[float]] = {}  # epoch -> [total min, max, device min, max]
        self._lifetime: list[float] | None = None  # the same since start
        self._latency_totals = _NO_LATENCIES  # cumulative latencies at the last snapshot
        self._epoch_latencies: dict[int, _Latencies] = {}  # epoch -> the latencies recorded in it
        self._snapshot_lock = threading.Lock()
        self._registry_lock = threading.Lock()
        self._models: dict[int, _Model] = {}
        self._models_revision = 1  # changed with every change of _models (Snapshot.models_revision)
        self._memory_revision = 1  # changed with every change of the memory (Snapshot.memory_revision)
        self._model_cores: dict[str, tuple[int, ...]] = {}
        # model name -> (core, flops) an inference of it adds to each core; swapped whole, like _model_cores
        self._model_flops: dict[str, tuple[tuple[int, float], ...]] = {}
        self._counts_flops = False  # set once flops are recorded: the snapshot then reports them per core
        self._next_model_id = 10000
        self._runtime_host_bytes = 0
        self._runtime_device_bytes = 0
        self._runtime_host_breakdown: dict[str, int] = {}
        self._runtime_core_breakdown: dict[int, dict[str, int]] = {}
        self._device_categorized = False  # some device memory was given by category: report core_memory
        self._ecc = [[0] * len(ECC_KINDS) for _ in range(devices)]

    @property
    def tag(self) -> str:
        """The application's tag as snapshots report it."""
        return self._tag or str(os.getpid())

    # -- hot path ---------------------------------------------------------------------------

    def record(
        self,
        model: str,
        outcome: str,
        total_latency_s: float | None,
        device_latency_s: float | None = None,
        error_type: str | None = None,
    ) -> None:
        """Count one inference of `model`.

        `outcome` is one of OUTCOMES, `error_type` one of ERROR_TYPES or None. The device latency
        (default: the total latency) is also added to the busy time of the NeuronCores holding the
        model's subgraphs, split evenly between them (a model's subgraphs run one after the other),
        and so are the model's flops per inference (if it declared them) for an inference that ran.
        Unknown outcome or error type names raise KeyError.
        """
        try:
            shard = self._local.shard
        except AttributeError:
            shard = self._new_shard()
        position = _OUTCOME_INDEX[outcome]
        shard.outcomes[position] += 1
        if error_type is not None:
            shard.errors[_ERROR_INDEX[error_type]] += 1
        if position in _NOT_RUN:
            return
        flops = self._model_flops.get(model)
        if flops is not None:
            done = shard.flops
            for core, share in flops:
                done[core] += share
        if total_latency_s is None:
            return
        if device_latency_s is None:
            device_latency_s = total_latency_s
        shard.latency_count += 1
        shard.total_sum += total_latency_s
        shard.device_sum += device_latency_s
        if total_latency_s > 0.0:
            buckets = shard.total_buckets
            index = bucket_index(total_latency_s)
            buckets[index] = buckets.get(index, 0) + 1
        else:
            shard.total_zero += 1
        if device_latency_s > 0.0:
            buckets = shard.device_buckets
            index = bucket_index(device_latency_s)
            buckets[index] = buckets.get(index, 0) + 1
            cores = self._model_cores.get(model)
            if cores:
                busy = shard.busy
                share = device_latency_s / len(cores)
                for core in cores:
                    busy[core] += share
        else:
            shard.device_zero += 1
        epoch = self._epoch
        window = shard.window
        if window is None or window[0] != epoch:
            if window is not None:
                shard.closed.append(window)
            shard.window = (epoch, total_latency_s, total_latency_s, device_latency_s, device_latency_s)
        elif (
            total_latency_s < window[1]
            or total_latency_s > window[2]
            or device_latency_s < window[3]
            or device_latency_s > window[4]
        ):
            shard.window = (
                epoch,
                min(window[1], total_latency_s),
                max(window[2], total_latency_s),
                min(window[3], device_latency_s),
                max(window[4], device_latency_s),
            )

    @contextlib.contextmanager
    def time(self, model: str) -> Iterator[InferenceCall]:
        """Time the enclosed inference of `model` and record it, classifying any exception.

        The exception is re-raised after it is counted. Set `device_latency_s` on the yielded call
        to report the device's share; otherwise the total latency is used.
        """
        call = InferenceCall()
        start = time.perf_counter()
        try:
            yield call
        except BaseException as error:
            if isinstance(error, (KeyboardInterrupt, SystemExit, GeneratorExit)):
                raise
            outcome, error_type = classify(error)
            self.record(model, outcome, time.perf_counter() - start, call.device_latency_s, error_type)
            raise
        self.record(model, call.outcome or "completed", time.perf_counter() - start, call.device_latency_s)

    def timed(self, model: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator form of `time`: every call of the function is one inference of `model`."""

        def decorate(function: Callable[..., Any]) -> Callable[..., Any]:
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                with self.time(model):
                    return function(*args, **kwargs)

            wrapper.__wrapped__ = function  # type: ignore[attr-defined]
            wrapper.__name__ = getattr(function, "__name__", "wrapper")
            wrapper.__doc__ = function.__doc__
            return wrapper

        return decorate

    def add_core_busy(self, core: int, seconds: float) -> None:
        """Add busy time to a NeuronCore directly (when `record` cannot attribute it)."""
        try:
            shard = self._local.shard
        except AttributeError:
            shard = self._new_shard()
        shard.busy[core] += seconds

    def add_core_flops(self, core: int, flops: float) -> None:
        """Add floating-point operations to a NeuronCore directly (when `record` cannot attribute them)."""
        try:
            shard = self._local.shard
        except AttributeError:
            shard = self._new_shard()
        self._counts_flops = True
        shard.flops[core] += flops

    # -- rare updates -----------------------------------------------------------------------

    def register_model(
        self,
        name: str,
        subgraphs: Sequence[Subgraph] = (),
        uuid: str | None = None,
        model_id: int | None = None,
        running: bool = True,
        host_bytes: int = 0,
        device_bytes: int = 0,
        flops_per_inference: float = 0.0,
    ) -> int:
        """Load a model; returns its model_id. `host_bytes`/`device_bytes` are memory the model holds
        beyond its subgraphs' (host memory counted as application_memory, device memory in no
        category). Inferences recorded for `name` keep its subgraphs' cores busy and, with
        `flops_per_inference`, add that many floating-point operations split evenly over them."""
        for subgraph in subgraphs:
            if not 0 <= subgraph.core < self.cores:
                raise ValueError(
                    f"subgraph {subgraph.name!r} is on core {subgraph.core}, not 0..{self.cores - 1}"
                )
        if not 0 <= flops_per_inference < float("inf"):
            raise ValueError(f"flops_per_inference must be a finite number >= 0, not {flops_per_inference!r}")
        placed = tuple(_placed(subgraph, self.device_of(subgraph.core)) for subgraph in subgraphs)
        with self._registry_lock:
            if model_id is None:
                model_id = self._next_model_id
                self._next_model_id += 1
            elif model_id in self._models:
                raise ValueError(f"model_id {model_id} is already loaded")
            self._models[model_id] = _Model(
                name,
                uuid or uuid_module.uuid4().hex,
                model_id,
                running,
                host_bytes,
                device_bytes,
                placed,
                flops_per_inference,
            )
            if flops_per_inference:
                self._counts_flops = True
            if any(subgraph.device_breakdown is not None for subgraph in placed):
                self._device_categorized = True
            self._refresh_model_cores()
        return model_id

    def unregister_model(self, model_id: int) -> None:
        """Unload a model (unknown ids are ignored)."""
        with self._registry_lock:
            self._models.pop(model_id, None)
            self._refresh_model_cores()

    def set_model_running(self, model_id: int, running: bool) -> None:
        with self._registry_lock:
            model = self._models.get(model_id)
            if model is not None:
                self._models[model_id] = replace(model, running=running)
                self._models_revision += 1

    def set_runtime_memory(
        self,
        host_bytes: int,
        device_bytes: int,
        host_breakdown: Mapping[str, int] | None = None,
        core_breakdown: Mapping[int, Mapping[str, int]] | None = None,
    ) -> None:
        """Memory the runtime holds apart from its models (the snapshot adds the models').

        `host_breakdown` splits the host memory by category (HOST_MEMORY_CATEGORIES; the rest of
        `host_bytes` is application_memory); `core_breakdown` the device memory by NeuronCore and
        category (CORE_MEMORY_CATEGORIES), adding up to `device_bytes`. A byte count left at 0 is
        the sum of its breakdown. ValueError names a category, core or sum that does not fit.
        """
        host_categories = _categories("runtime host memory", host_breakdown, HOST_MEMORY_CATEGORIES)
        host_bytes = _total("runtime host memory", host_bytes, host_categories, rest_allowed=True)
        cores: dict[int, dict[str, int]] = {}
        for core, breakdown in (core_breakdown or {}).items():
            if not 0 <= core < self.cores:
                raise ValueError(f"runtime device memory of core {core}: not 0..{self.cores - 1}")
            where = f"runtime device memory of core {core}"
            cores[core] = _categories(where, breakdown, CORE_MEMORY_CATEGORIES)
        if core_breakdown is not None:
            summed = sum(sum(categories.values()) for categories in cores.values())
            if device_bytes not in (0, summed):
                raise ValueError(
                    f"runtime device memory: the cores' categories add up to {summed} bytes, "
                    f"not {device_bytes}"
                )
            device_bytes = summed
        with self._registry_lock:
            self._runtime_host_bytes = host_bytes
            self._runtime_device_bytes = device_bytes
            self._runtime_host_breakdown = host_categories
            self._runtime_core_breakdown = cores
            if core_breakdown is not None:
                self._device_categorized = True
            self._memory_revision += 1

    def record_ecc(self, device: int, kind: str, count: int = 1) -> None:
        """Count ECC events on a device; `kind` is one of ECC_KINDS."""
        column = ECC_KINDS.index(kind)
        with self._registry_lock:
            self._ecc[device][column] += count

    def device_of(self, core: int) -> int:
        """The Neuron device holding `core` (cores are spread evenly over the devices)."""
        per_device = max(1, -(-self.cores // self.devices))
        return min(core // per_device, self.devices - 1)

    # -- snapshot ---------------------------------------------------------------------------

    def snapshot(self, since_epoch: int = 0) -> runtime_pb2.Snapshot:
        """The cumulative state since start, as served by GetSnapshot; closes one latency epoch.

        With `since_epoch` (the epoch of the caller's previous snapshot), the latency windows are
        only those after it, and the latencies recorded since then are also given as period
        histograms while the epochs after it are still held.
        """
        with self._snapshot_lock:
            closing = self._epoch
            self._epoch = closing + 1
            with self._shards_lock:
                shards = list(self._shards)
            outcomes = [0] * len(OUTCOMES)
            errors = [0] * len(ERROR_TYPES)
            total_buckets: dict[int, int] = {}
            device_buckets: dict[int, int] = {}
            total_zero = device_zero = count = 0
            total_sum = device_sum = 0.0
            busy = [0.0] * self.cores
            flops = [0.0] * self.cores
            windows = self._windows
            for shard in shards:
                for i, value in enumerate(shard.outcomes):
                    outcomes[i] += value
                for i, value in enumerate(shard.errors):
                    errors[i] += value
                _add_into(total_buckets, shard.total_buckets.copy())
                _add_into(device_buckets, shard.device_buckets.copy())
                total_zero += shard.total_zero
                device_zero += shard.device_zero
                count += shard.latency_count
                total_sum += shard.total_sum
                device_sum += shard.device_sum
                for core, seconds in enumerate(shard.busy):
                    busy[core] += seconds
                for core, done in enumerate(shard.flops):
                    flops[core] += done
                while shard.closed:
                    _merge_window(windows, shard.closed.popleft())
                current = shard.window
                if current is not None and current[0] <= closing:
                    _merge_window(windows, current)
            oldest = max(1, closing - _WINDOWS_KEPT + 1)
            for epoch in [epoch for epoch in windows if epoch < oldest]:
                del windows[epoch]
            window_messages = [
                runtime_pb2.LatencyWindow(
                    epoch=epoch, total_min=w[0], total_max=w[1], device_min=w[2], device_max=w[3]
                )
                for epoch, w in sorted(windows.items())
                if since_epoch < epoch <= closing  # a caller needs none it has seen already
            ]
            lifetime = self._lifetime
            for window in windows.values():
                if lifetime is None:
                    lifetime = self._lifetime = list(window)
                else:
                    lifetime[0] = min(lifetime[0], window[0])
                    lifetime[1] = max(lifetime[1], window[1])
                    lifetime[2] = min(lifetime[2], window[2])
                    lifetime[3] = max(lifetime[3], window[3])
            totals = _Latencies(
                total_buckets, device_buckets, total_zero, device_zero, count, total_sum, device_sum
            )
            period = self._period_latencies(closing, totals, since_epoch)
            # Read under the lock: another caller's snapshot merges windows into these lists.
            period_bounds = _period_bounds(windows, since_epoch, closing) if period is not None else None
        pid = os.getpid()
        snapshot = runtime_pb2.Snapshot(
            protocol_version=PROTOCOL_VERSION,
            runtime_id=self.runtime_id,
            pid=pid,
            tag=self._tag or str(pid),
            start_time_unix_nano=self._start_wall,
            time_unix_nano=time.time_ns(),
            uptime_nano=time.monotonic_ns() - self._start_monotonic,
            vcpu_count=os.cpu_count() or 1,
            epoch=closing,
            oldest_epoch=oldest,
            latency_windows=window_messages,
        )
        if self._counts_flops:
            snapshot.cores.extend(
                runtime_pb2.NeuronCore(
                    index=core, device_index=self.device_of(core), busy_seconds=seconds, flops=done
                )
                for core, (seconds, done) in enumerate(zip(busy, flops))
            )
        else:
            snapshot.cores.extend(
                runtime_pb2.NeuronCore(index=core, device_index=self.device_of(core), busy_seconds=seconds)
                for core, seconds in enumerate(busy)
            )
        self._fill_models(snapshot)
        user, system = self._cpu_times()
        snapshot.cpu.user_seconds = max(user - self._cpu_start[0], 0.0)
        snapshot.cpu.system_seconds = max(system - self._cpu_start[1], 0.0)
        for name, value in zip(OUTCOMES, outcomes, strict=True):
            setattr(snapshot.inferences, name, value)
        for name, value in zip(ERROR_TYPES, errors, strict=True):
            setattr(snapshot.errors, name, value)
        _fill_histogram(snapshot.total_latency, total_buckets, total_zero, count, total_sum, lifetime, 0)
        _fill_histogram(snapshot.device_latency, device_buckets, device_zero, count, device_sum, lifetime, 2)
        if period is not None:
            snapshot.period_since_epoch = since_epoch
            _fill_period_histograms(snapshot, period, period_bounds)
        with self._registry_lock:
            ecc = [list(row) for row in self._ecc]
        for device, counts in enumerate(ecc):
            snapshot.devices.add(device_index=device, **dict(zip(ECC_KINDS, counts)))
        return snapshot

    # -- internals --------------------------------------------------------------------------

    def _period_latencies(self, closing: int, totals: _Latencies, since_epoch: int) -> _Latencies | None:
        """Keep what epoch `closing` recorded; the latencies of epochs (since_epoch, closing], or None
        when one of them is no longer held (or was never asked for)."""
        held = self._epoch_latencies
        held[closing] = _difference(totals, self._latency_totals)
        self._latency_totals = totals
        held.pop(closing - _PERIODS_KEPT, None)  # one epoch closes per snapshot: one leaves
        if not 0 < since_epoch < closing or since_epoch + 1 not in held:
            return None
        return _sum_of([held[epoch] for epoch in range(since_epoch + 1, closing + 1)])

    def _new_shard(self) -> _Shard:
        """The calling thread's first record: it takes over an ended thread's shard, else a new one."""
        with self._shards_lock:
            try:
                shard = self._free_shards.popleft()
            except IndexError:
                shard = _Shard(self.cores)
                self._shards.append(shard)
        self._local.lease = _ShardLease(shard, self._free_shards)
        self._local.shard = shard
        return shard

    def _refresh_model_cores(self) -> None:
        """After a model was loaded or unloaded (under the registry lock)."""
        self._models_revision += 1
        self._memory_revision += 1
        cores: dict[str, list[int]] = {}
        flops: dict[str, tuple[tuple[int, float], ...]] = {}
        for model in self._models.values():
            placed = cores.setdefault(model.name, [])
            placed.extend(s.core for s in model.subgraphs if s.core not in placed)
            own = list(dict.fromkeys(s.core for s in model.subgraphs))
            if model.flops_per_inference and own:  # the latest loaded model of a name decides
                share = model.flops_per_inference / len(own)
                flops[model.name] = tuple((core, share) for core in own)
        self._model_cores = {name: tuple(placed) for name, placed in cores.items()}  # swapped atomically
        self._model_flops = flops

    def _fill_models(self, snapshot: runtime_pb2.Snapshot) -> None:
        with self._registry_lock:
            models = sorted(self._models.values(), key=lambda model: model.model_id)
            snapshot.models_revision = self._models_revision
            snapshot.memory_revision = self._memory_revision
            runtime_host, runtime_device = self._runtime_host_bytes, self._runtime_device_bytes
            host_categories = dict.fromkeys(HOST_MEMORY_CATEGORIES, 0)
            host_categories.update(self._runtime_host_breakdown)
            core_categories = {core: dict(c) for core, c in self._runtime_core_breakdown.items()}
            device_categorized = self._device_categorized
        for model in models:
            message = snapshot.models.add(
                name=model.name, uuid=model.uuid, model_id=model.model_id, is_running=model.running
            )
            host, device = model.host_bytes, model.device_bytes
            for subgraph in model.subgraphs:
                memory = runtime_pb2.MemoryUsage(
                    host_bytes=subgraph.host_bytes, device_bytes=subgraph.device_bytes
                )
                _add_memory_categories(memory.host_categories, subgraph.host_breakdown or {})
                _add_categories(host_categories, subgraph.host_breakdown or {})
                if subgraph.device_breakdown is not None:
                    _add_memory_categories(memory.device_categories, subgraph.device_breakdown)
                    _add_categories(core_categories.setdefault(subgraph.core, {}), subgraph.device_breakdown)
                message.subgraphs.add(
                    name=subgraph.name,
                    neuroncore_index=subgraph.core,
                    neuron_device_index=subgraph.device or 0,
                    memory=memory,
                )
                host += subgraph.host_bytes
                device += subgraph.device_bytes
            message.memory.host_bytes = host
            message.memory.device_bytes = device
            runtime_host += host
            runtime_device += device
        snapshot.runtime_memory.host_bytes = runtime_host
        snapshot.runtime_memory.device_bytes = runtime_device
        # What no category holds is application_memory, neuron-monitor's category for the rest.
        host_categories[_HOST_REST] += runtime_host - sum(host_categories.values())
        _add_memory_categories(snapshot.runtime_memory.host_categories, host_categories)
        if device_categorized:
            for core in range(self.cores):
                categories = dict.fromkeys(CORE_MEMORY_CATEGORIES, 0)
                _add_categories(categories, core_categories.get(core, {}))
                _add_memory_categories(snapshot.core_memory.add(core_index=core).categories, categories)


class InferenceCall:
    """What the body of `InferenceRecorder.time` may set about its inference."""

    __slots__ = ("device_latency_s", "outcome")

    def __init__(self) -> None:
        self.device_latency_s: float | None = None
        self.outcome: str | None = None  # e.g. "completed_with_num_err" without raising


def _process_cpu_times() -> tuple[float, float]:
    times = os.times()
    return times.user, times.system


def _checked_tag(tag: str | None) -> str:
    """The tag given, else NEURON_PROCESS_TAG's, else "" (the process id); ValueError when too long."""
    where = "tag"
    if tag is None:
        tag, where = os.environ.get(PROCESS_TAG_VARIABLE, ""), PROCESS_TAG_VARIABLE
    if len(tag) > PROCESS_TAG_MAX_LENGTH:
        raise ValueError(f"{where} is {len(tag)} characters long; a tag has at most {PROCESS_TAG_MAX_LENGTH}")
    return tag


def _placed(subgraph: Subgraph, device: int) -> Subgraph:
    """`subgraph` on `device` (unless it names one), its breakdowns checked, its byte counts filled and
    its host memory in every category."""
    where = f"subgraph {subgraph.name!r}"
    host = _categories(f"{where} host memory", subgraph.host_breakdown, HOST_MEMORY_CATEGORIES)
    on_device = _categories(
        f"{where} device memory", subgraph.device_breakdown, SUBGRAPH_DEVICE_MEMORY_CATEGORIES
    )
    host_bytes = _total(f"{where} host memory", subgraph.host_bytes, host, rest_allowed=True)
    device_bytes = subgraph.device_bytes
    if subgraph.device_breakdown is not None:
        device_bytes = _total(f"{where} device memory", device_bytes, on_device, rest_allowed=False)
    return replace(
        subgraph,
        device=subgraph.device if subgraph.device is not None else device,
        host_bytes=host_bytes,
        device_bytes=device_bytes,
        host_breakdown=_with_rest(host, host_bytes),  # every category, as snapshots give them
        device_breakdown=on_device if subgraph.device_breakdown is not None else None,
    )


def _categories(where: str, breakdown: Mapping[str, int] | None, known: tuple[str, ...]) -> dict[str, int]:
    """`breakdown` as a dict of known categories and byte counts >= 0; ValueError naming a bad one."""
    checked: dict[str, int] = {}
    for category, amount in (breakdown or {}).items():
        if category not in known:
            raise ValueError(f"{where}: {category!r} is not one of {', '.join(known)}")
        if type(amount) is not int or amount < 0:
            raise ValueError(f"{where}: {category} must be a number of bytes >= 0, not {amount!r}")
        checked[category] = amount
    return checked


def _total(where: str, given: int, categories: Mapping[str, int], rest_allowed: bool) -> int:
    """The byte count of memory split into `categories`: `given`, or their sum when `given` is 0.
    Host memory may hold more than its categories (the rest is application_memory); device memory not."""
    summed = sum(categories.values())
    if given == 0 or given == summed or (rest_allowed and given > summed):
        return given or summed
    raise ValueError(f"{where}: the categories add up to {summed} bytes, not {given}")


def _with_rest(breakdown: Mapping[str, int] | None, total: int) -> dict[str, int]:
    """Host memory by every category: `breakdown`, and what it leaves of `total` as application_memory."""
    categories = dict.fromkeys(HOST_MEMORY_CATEGORIES, 0)
    categories.update(breakdown or {})
    categories[_HOST_REST] += total - sum(categories.values())
    return categories


def _add_categories(target: dict[str, int], source: Mapping[str, int]) -> None:
    for category, amount in source.items():
        target[category] = target.get(category, 0) + amount


def _add_memory_categories(target: Any, categories: Mapping[str, int]) -> None:
    """Append `categories` to a repeated MemoryCategory field."""
    for category, amount in categories.items():
        target.add(category=category, bytes=amount)


def _add_into(target: dict[int, int], source: dict[int, int]) -> None:
    for index, count in source.items():
        target[index] = target.get(index, 0) + count


def _merge_window(windows: dict[int, list[float]], window: tuple[int, float, float, float, float]) -> None:
    epoch = window[0]
    known = windows.get(epoch)
    if known is None:
        windows[epoch] = [window[1], window[2], window[3], window[4]]
    else:
        known[0] = min(known[0], window[1])
        known[1] = max(known[1], window[2])
        known[2] = min(known[2], window[3])
        known[3] = max(known[3], window[4])


class _Latencies(NamedTuple):
    """Both latency histograms' counts (cumulative, or of some epochs), as the shards keep them."""

    total_buckets: dict[int, int]
    device_buckets: dict[int, int]
    total_zero: int
    device_zero: int
    latency_count: int
    total_sum: float
    device_sum: float


_NO_LATENCIES = _Latencies({}, {}, 0, 0, 0, 0.0, 0.0)


def _difference(now: _Latencies, before: _Latencies) -> _Latencies:
    """What was recorded between two cumulative states (a bucket only where it grew)."""
    return _Latencies(
        _bucket_difference(now.total_buckets, before.total_buckets),
        _bucket_difference(now.device_buckets, before.device_buckets),
        now.total_zero - before.total_zero,
        now.device_zero - before.device_zero,
        now.latency_count - before.latency_count,
        now.total_sum - before.total_sum,
        now.device_sum - before.device_sum,
    )


def _bucket_difference(now: dict[int, int], before: dict[int, int]) -> dict[int, int]:
    return {index: grown for index, count in now.items() if (grown := count - before.get(index, 0))}


def _sum_of(periods: list[_Latencies]) -> _Latencies:
    if len(periods) == 1:
        return periods[0]
    total: dict[int, int] = {}
    device: dict[int, int] = {}
    for period in periods:
        _add_into(total, period.total_buckets)
        _add_into(device, period.device_buckets)
    return _Latencies(
        total,
        device,
        sum(period.total_zero for period in periods),
        sum(period.device_zero for period in periods),
        sum(period.latency_count for period in periods),
        sum(period.total_sum for period in periods),
        sum(period.device_sum for period in periods),
    )


def _period_bounds(windows: dict[int, list[float]], since_epoch: int, closing: int) -> list[float] | None:
    """[total min, max, device min, max] over the windows of epochs (since_epoch, closing]."""
    bounds: list[float] | None = None
    for epoch in range(since_epoch + 1, closing + 1):
        window = windows.get(epoch)
        if window is None:
            continue
        if bounds is None:
            bounds = list(window)
        else:
            bounds = [
                min(bounds[0], window[0]),
                max(bounds[1], window[1]),
                min(bounds[2], window[2]),
                max(bounds[3], window[3]),
            ]
    return bounds


def _fill_period_histograms(
    snapshot: runtime_pb2.Snapshot, period: _Latencies, bounds: list[float] | None
) -> None:
    for message, buckets, zero_count, total, column in (
        (snapshot.period_total_latency, period.total_buckets, period.total_zero, period.total_sum, 0),
        (snapshot.period_device_latency, period.device_buckets, period.device_zero, period.device_sum, 2),
    ):
        offset, dense = dense_buckets(buckets)
        message.scale = SCALE
        message.zero_count = zero_count
        message.offset = offset
        message.bucket_counts.extend(dense)
        message.count = period.latency_count
        message.sum = total
        if period.latency_count <= 0:
            continue
        if bounds is not None:
            message.min, message.max = bounds[column], bounds[column + 1]
        else:  # a latency recorded as its epoch closed: its window went to the epoch before
            lifetime = (snapshot.total_latency, snapshot.device_latency)[column // 2]
            message.min, message.max = bounds_from_buckets(
                offset, dense, SCALE, zero_count, lifetime.min, lifetime.max
            )


def _fill_histogram(
    message: runtime_pb2.LatencyHistogram,
    buckets: dict[int, int],
    zero_count: int,
    count: int,
    total: float,
    lifetime: list[float] | None,
    column: int,
) -> None:
    offset, dense = dense_buckets(buckets)
    message.scale = SCALE
    message.zero_count = zero_count
    message.offset = offset
    message.bucket_counts.extend(dense)
    message.count = count
    message.sum = total
    if lifetime is not None:
        message.min = lifetime[column]
        message.max = lifetime[column + 1]
