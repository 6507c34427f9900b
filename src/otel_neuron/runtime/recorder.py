"""The inference recorder: what a Neuron runtime (or an instrumented app) counts, cheaply.

One `InferenceRecorder` per runtime. The hot path (`record`, `time`, `add_core_busy`) writes
only to a shard owned by the calling thread (`thread_shards`), so threads never wait for each
other; `snapshot()` merges the shards into the cumulative `runtime_pb2.Snapshot` served by the
runtime endpoint, and closes a latency epoch (`latency_epochs`). Registering models, memory and
ECC events are rare and take a small lock (`loaded_models`).

    recorder = InferenceRecorder(cores=2, devices=1)
    model_id = recorder.register_model("resnet", subgraphs=[Subgraph("sg00", core=0, device_bytes=1 << 20)])
    with recorder.time("resnet") as call:
        result = run_inference()        # raise NumericalError, TransientError, ... to classify failures
        call.device_latency_s = 0.004   # optional; defaults to the total latency
    recorder.record("resnet", "completed", total_latency_s=0.005, device_latency_s=0.004)

Outcomes and error types are the guide's `inference_summary` and `error_summary` keys; how an
exception maps to them is `inference_errors`' table (`classify`). Latencies (seconds) go into the
latency histograms for every inference that ran, i.e. unless the outcome is incorrect_input or
failed_to_queue or the latency passed is None.

The snapshot also carries what neuron-monitor 2.x reports of an application: its tag (the `tag`
argument, else the NEURON_PROCESS_TAG environment variable, else str(pid)), memory by category
(`usage_breakdown`, see `loaded_models`) and, once a model declares its flops per inference, every
NeuronCore's floating-point operations.

Consistency: each thread's updates become visible to `snapshot()` one field at a time, so a
snapshot taken while an inference is being recorded may count it in one total and not yet in
another; every total is monotonic and the next snapshot includes it everywhere.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
import time
import uuid as uuid_module
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from otel_neuron.histogram import bucket_index
from otel_neuron.runtime import runtime_pb2
from otel_neuron.runtime.inference_errors import (
    HardwareError,
    IncorrectInputError,
    InferenceError,
    InferenceTimeout,
    ModelError,
    NeuronRuntimeError,
    NumericalError,
    QueueFullError,
    TransientError,
    classify,
)
from otel_neuron.runtime.latency_epochs import LatencyEpochs, fill_latencies
from otel_neuron.runtime.loaded_models import ModelRegistry, Placement, Subgraph, device_of
from otel_neuron.runtime.protocol import PROTOCOL_VERSION
from otel_neuron.runtime.thread_shards import Shard, ShardLease, ShardTotals, sum_shards
from otel_neuron.semconv import ECC_KINDS, OUTCOMES, PROCESS_TAG_MAX_LENGTH, PROCESS_TAG_VARIABLE
from otel_neuron.semconv import ERROR_TYPES_V2 as ERROR_TYPES

__all__ = [
    "PROTOCOL_VERSION",
    "HardwareError",
    "IncorrectInputError",
    "InferenceCall",
    "InferenceError",
    "InferenceRecorder",
    "InferenceTimeout",
    "ModelError",
    "NeuronRuntimeError",
    "NumericalError",
    "QueueFullError",
    "Subgraph",
    "TransientError",
    "classify",
]

_OUTCOME_INDEX = {name: i for i, name in enumerate(OUTCOMES)}
_ERROR_INDEX = {name: i for i, name in enumerate(ERROR_TYPES)}
_NOT_RUN = (_OUTCOME_INDEX["incorrect_input"], _OUTCOME_INDEX["failed_to_queue"])


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
        self._shards: list[Shard] = []
        self._free_shards: deque[Shard] = deque()  # of ended threads, for the next new thread
        self._shards_lock = threading.Lock()
        self._epoch = 1  # the epoch latencies are currently recorded in
        self._epochs = LatencyEpochs()
        self._snapshot_lock = threading.Lock()
        # Where each model's inferences run, read by the hot path: swapped whole as models change.
        self._model_cores: dict[str, tuple[int, ...]] = {}
        self._model_flops: dict[str, tuple[tuple[int, float], ...]] = {}
        self._counts_flops = False  # set once flops are recorded: the snapshot then reports them per core
        self._models = ModelRegistry(cores, devices, self._use_placement)
        self._ecc_lock = threading.Lock()
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
            @functools.wraps(function)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                with self.time(model):
                    return function(*args, **kwargs)

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
        return self._models.register(
            name, subgraphs, uuid, model_id, running, host_bytes, device_bytes, flops_per_inference
        )

    def unregister_model(self, model_id: int) -> None:
        """Unload a model (unknown ids are ignored)."""
        self._models.unregister(model_id)

    def set_model_running(self, model_id: int, running: bool) -> None:
        self._models.set_running(model_id, running)

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
        self._models.set_runtime_memory(host_bytes, device_bytes, host_breakdown, core_breakdown)

    def record_ecc(self, device: int, kind: str, count: int = 1) -> None:
        """Count ECC events on a device; `kind` is one of ECC_KINDS."""
        column = ECC_KINDS.index(kind)
        with self._ecc_lock:
            self._ecc[device][column] += count

    def device_of(self, core: int) -> int:
        """The Neuron device holding `core` (cores are spread evenly over the devices)."""
        return device_of(core, self.cores, self.devices)

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
            totals = sum_shards(shards, self.cores, closing)
            closed = self._epochs.close(closing, totals.windows, totals.latencies, since_epoch)
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
            oldest_epoch=closed.oldest_epoch,
            latency_windows=closed.windows,
        )
        self._fill_cores(snapshot, totals)
        self._models.fill(snapshot)
        user, system = self._cpu_times()
        snapshot.cpu.user_seconds = max(user - self._cpu_start[0], 0.0)
        snapshot.cpu.system_seconds = max(system - self._cpu_start[1], 0.0)
        for name, value in zip(OUTCOMES, totals.outcomes, strict=True):
            setattr(snapshot.inferences, name, value)
        for name, value in zip(ERROR_TYPES, totals.errors, strict=True):
            setattr(snapshot.errors, name, value)
        fill_latencies(snapshot, totals.latencies, closed, since_epoch)
        with self._ecc_lock:
            ecc = [list(row) for row in self._ecc]
        for device, counts in enumerate(ecc):
            snapshot.devices.add(device_index=device, **dict(zip(ECC_KINDS, counts)))
        return snapshot

    # -- internals --------------------------------------------------------------------------

    def _fill_cores(self, snapshot: runtime_pb2.Snapshot, totals: ShardTotals) -> None:
        if self._counts_flops:
            snapshot.cores.extend(
                runtime_pb2.NeuronCore(
                    index=core, device_index=self.device_of(core), busy_seconds=seconds, flops=done
                )
                for core, (seconds, done) in enumerate(zip(totals.busy, totals.flops))
            )
        else:
            snapshot.cores.extend(
                runtime_pb2.NeuronCore(index=core, device_index=self.device_of(core), busy_seconds=seconds)
                for core, seconds in enumerate(totals.busy)
            )

    def _new_shard(self) -> Shard:
        """The calling thread's first record: it takes over an ended thread's shard, else a new one."""
        with self._shards_lock:
            try:
                shard = self._free_shards.popleft()
            except IndexError:
                shard = Shard(self.cores)
                self._shards.append(shard)
        self._local.lease = ShardLease(shard, self._free_shards)
        self._local.shard = shard
        return shard

    def _use_placement(self, placement: Placement) -> None:
        """Models were loaded or unloaded: where the hot path puts their busy time and flops."""
        if placement.declares_flops:
            self._counts_flops = True
        self._model_cores = placement.cores
        self._model_flops = placement.flops


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
