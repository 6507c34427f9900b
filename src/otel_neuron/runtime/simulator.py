"""A seeded synthetic Neuron runtime: a workload that drives an `InferenceRecorder`.

The simulator owns a recorder exactly like an instrumented application does and feeds it:
inferences arriving as a Poisson process at `rate` per second with lognormal latencies (each
model has its own median), failures of every outcome and error kind at `error_rate`, models
loaded and unloaded now and then, rare ECC events of all four kinds and a CPU cost per inference.
Its memory comes in neuron-monitor 2.x's categories (the runtime's own and each subgraph's, adding
up to the totals) and every model declares its floating-point operations per inference.

It also keeps its own tally of everything it recorded (`ground_truth()`), apart from the
recorder, so tests can check the numbers a monitor derives from the served snapshots.
`pause()` returns once no inference is being generated, which makes a window exact:
pause, read the ground truth, take a snapshot, resume.
"""

from __future__ import annotations

import math
import random
import threading
import time
from array import array
from dataclasses import dataclass
from typing import NamedTuple

from otel_neuron.runtime import runtime_pb2
from otel_neuron.runtime.recorder import InferenceRecorder, Subgraph
from otel_neuron.semconv import (
    CORE_MEMORY_CATEGORIES,
    ECC_KINDS,
    HOST_MEMORY_CATEGORIES,
    OUTCOMES,
)
from otel_neuron.semconv import ERROR_TYPES_V2 as ERROR_TYPES

_TICK_S = 0.02
# Latencies kept for the ground truth between two marks (3.2 MB at most): a test's window, while a
# client that marked once and left cannot make a long-running simulator grow past it.
_MAX_LATENCIES = 200_000

# Failure mix: (outcome, error type, weight) among failed inferences.
_FAILURES = (
    ("completed_with_err", "generic", 4),
    ("completed_with_err", "transient", 2),
    ("completed_with_err", "runtime", 1),
    ("completed_with_err", "model", 1),
    ("completed_with_err", "hardware", 1),
    ("completed_with_num_err", "numerical", 3),
    ("timed_out", "runtime", 2),
    ("incorrect_input", "generic", 2),
    ("failed_to_queue", "runtime", 1),
)
_MODEL_NAMES = ("resnet50", "bert-base", "gpt2", "yolov5", "t5-small", "vit-b16", "whisper", "llama-7b")
# How often each ECC kind (in ECC_KINDS' order) happens: corrected events far more than uncorrected.
_ECC_WEIGHTS = (8, 1, 4, 1)
# Memory the runtime holds apart from its models, and how it splits into categories: host memory
# into HOST_MEMORY_CATEGORIES (the rest application_memory), each core's share of the device memory
# into runtime_memory and model_shared_scratchpad. A subgraph's memory splits by fixed fractions (no
# random draw, so a seed gives the workload it always gave).
_RUNTIME_HOST_BYTES = 64 << 20
_RUNTIME_DEVICE_BYTES = 128 << 20
_RUNTIME_HOST_BREAKDOWN = {"dma_buffers": 8 << 20, "tensors": 4 << 20}
_SUBGRAPH_HOST_SHARES = {"constants": 4, "dma_buffers": 2, "tensors": 1}  # eighths; the rest application
_SUBGRAPH_DEVICE_SHARES = {"constants": 4, "model_code": 1, "tensors": 2}  # eighths; the rest runtime_memory
# Floating-point operations per second of inference latency, for a model's flops per inference.
_FLOPS_PER_SECOND = 2e13


# What one simulated runtime may be: a trn2.48xlarge has 16 devices and 128 NeuronCores. Beyond
# these a typo (cores=100000000) would take gigabytes or a core rather than describe a host.
MAX_CORES = 128
MAX_DEVICES = 32
MAX_MODELS = 128
MAX_RATE = 100_000  # inferences per second
MAX_SEED = 2**64 - 1
MAX_CHURN_S = 86_400
MAX_ECC_PER_HOUR = 1_000_000


@dataclass(frozen=True)
class SimulatorOptions:
    """A simulated runtime's shape and workload; ValueError naming the first option out of bounds."""

    cores: int = 4
    devices: int = 1
    models: int = 2
    rate: float = 200.0  # inferences per second
    error_rate: float = 0.02  # fraction of inferences that fail
    seed: int = 0
    churn_s: float = 30.0  # mean seconds between a model unload + load; 0 disables it
    ecc_per_hour: float = 60.0  # mean ECC events per hour per device

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the first bad option."""
        _check_between("cores", self.cores, 1, MAX_CORES)
        _check_between("devices", self.devices, 1, min(self.cores, MAX_DEVICES))
        _check_between("models", self.models, 0, MAX_MODELS)
        _check_between("rate", self.rate, 0, MAX_RATE)
        _check_between("error rate", self.error_rate, 0, 1)
        _check_between("seed", self.seed, 0, MAX_SEED)
        _check_between("churn", self.churn_s, 0, MAX_CHURN_S)
        _check_between("ECC events per hour", self.ecc_per_hour, 0, MAX_ECC_PER_HOUR)


def _check_between(name: str, value: float, lowest: float, highest: float) -> None:
    # `not (a <= x <= b)` rather than `x < a or x > b`: NaN fails every comparison and must fail here too.
    if not lowest <= value <= highest:
        raise ValueError(f"{name} must be between {lowest} and {highest}, not {value!r}")


class Simulator:
    """A running synthetic runtime; `recorder` holds its state, `start()`/`stop()` its workload."""

    def __init__(
        self, options: SimulatorOptions | None = None, recorder: InferenceRecorder | None = None
    ) -> None:
        self.options = options or SimulatorOptions()
        self.options.validate()
        self._random = random.Random(self.options.seed)
        self._cpu = [0.0, 0.0]
        self.recorder = recorder or InferenceRecorder(
            self.options.cores, self.options.devices, cpu_times=lambda: (self._cpu[0], self._cpu[1])
        )
        self._gate = threading.Lock()  # held while generating; pause() takes it to stop the workload
        self._paused = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last = time.monotonic()
        self._loaded: list[tuple[int, str, float, float]] = []  # (model_id, name, median latency, flops)
        self._model_serial = 0
        # Ground truth, kept apart from the recorder.
        self._outcomes = dict.fromkeys(OUTCOMES, 0)
        self._errors = dict.fromkeys(ERROR_TYPES, 0)
        self._ecc = [dict.fromkeys(ECC_KINDS, 0) for _ in range(self.options.devices)]
        self._latency_count = 0
        self._flops = 0.0
        self._model_memory: dict[int, _Memory] = {}  # of each loaded model
        # Only once a client has marked: nothing else reads them, and a simulator nobody marks runs
        # for months (polled by a monitor, or as `sim:` inside one).
        self._marked = False
        self._total_latencies = array("d")
        self._device_latencies = array("d")
        self._runtime_memory = _runtime_memory(self.options.cores)
        self.recorder.set_runtime_memory(
            _RUNTIME_HOST_BYTES,
            _RUNTIME_DEVICE_BYTES,
            host_breakdown=_RUNTIME_HOST_BREAKDOWN,
            core_breakdown=self._runtime_memory.cores,
        )
        for _ in range(self.options.models):
            self._load_model()

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Simulator:
        if self._thread is None:
            self._last = time.monotonic()
            self._thread = threading.Thread(target=self._run, name="neuron-simulator", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None

    def pause(self) -> None:
        """Stop generating; when this returns no inference is being recorded."""
        with self._gate:
            self._paused = True

    def resume(self) -> None:
        with self._gate:
            self._paused = False
            self._last = time.monotonic()  # no burst for the paused time

    def snapshot(self, since_epoch: int = 0) -> runtime_pb2.Snapshot:
        return self.recorder.snapshot(since_epoch)

    # -- ground truth ------------------------------------------------------------------------

    def ground_truth(self, mark: bool = False) -> runtime_pb2.GroundTruth:
        """Everything recorded since start; with `mark`, also the latencies since the previous mark
        (none at the first mark: latencies are kept only from then on)."""
        with self._gate:
            truth = runtime_pb2.GroundTruth(latency_count=self._latency_count)
            for name, value in self._outcomes.items():
                setattr(truth.inferences, name, value)
            for name, value in self._errors.items():
                setattr(truth.errors, name, value)
            for device, counts in enumerate(self._ecc):
                truth.devices.add(device_index=device, **counts)
            truth.flops = self._flops
            _fill_memory(truth.memory, [self._runtime_memory, *self._model_memory.values()])
            if mark:
                truth.total_latencies.extend(self._total_latencies)
                truth.device_latencies.extend(self._device_latencies)
                self._total_latencies = array("d")
                self._device_latencies = array("d")
                self._marked = True
        return truth

    # -- workload ----------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.wait(_TICK_S):
            with self._gate:
                if self._paused:
                    continue
                now = time.monotonic()
                elapsed, self._last = now - self._last, now
                self.step(elapsed)

    def step(self, elapsed: float) -> None:
        """Generate `elapsed` seconds of workload now (the background thread calls this per tick)."""
        options = self.options
        rng = self._random
        if options.churn_s > 0 and rng.random() < elapsed / options.churn_s:
            if self._loaded:
                model_id, _, _, _ = self._loaded.pop(rng.randrange(len(self._loaded)))
                self.recorder.unregister_model(model_id)
                del self._model_memory[model_id]
            self._load_model()
        per_device = options.ecc_per_hour / 3600.0 * elapsed
        for device in range(options.devices):
            if rng.random() < per_device:
                kind = rng.choices(ECC_KINDS, weights=_ECC_WEIGHTS)[0]
                self.recorder.record_ecc(device, kind)
                self._ecc[device][kind] += 1
        running = [model for model in self._loaded]
        if not running:
            return
        count = _poisson(rng, options.rate * elapsed)
        for _ in range(count):
            _, name, median, flops = running[rng.randrange(len(running))]
            total = median * math.exp(rng.gauss(0.0, 0.25))
            if rng.random() < 0.01:
                total *= rng.uniform(2.0, 5.0)  # a slow tail
            device_latency = total * rng.uniform(0.6, 0.95)
            outcome, error_type = "completed", None
            if rng.random() < options.error_rate:
                outcome, error_type, _ = rng.choices(_FAILURES, weights=[f[2] for f in _FAILURES])[0]
            if outcome in ("incorrect_input", "failed_to_queue"):
                self.recorder.record(name, outcome, None, None, error_type)
            else:
                self.recorder.record(name, outcome, total, device_latency, error_type)
                self._latency_count += 1
                if self._marked and len(self._total_latencies) < _MAX_LATENCIES:
                    self._total_latencies.append(total)
                    self._device_latencies.append(device_latency)
                self._cpu[0] += total * 0.02
                self._cpu[1] += total * 0.005
                self._flops += flops  # the recorder counts an inference's flops once it ran
            self._outcomes[outcome] += 1
            if error_type is not None:
                self._errors[error_type] += 1

    def _load_model(self) -> None:
        rng = self._random
        options = self.options
        self._model_serial += 1
        base = _MODEL_NAMES[(self._model_serial - 1) % len(_MODEL_NAMES)]
        name = base if self._model_serial <= len(_MODEL_NAMES) else f"{base}-{self._model_serial}"
        subgraphs = []
        first_core = rng.randrange(options.cores)
        for number in range(rng.randint(1, min(3, options.cores))):
            core = (first_core + number) % options.cores
            host_bytes = rng.randint(1, 64) << 20
            device_bytes = rng.randint(64, 2048) << 20
            subgraphs.append(
                Subgraph(
                    f"sg{number:02d}",
                    core,
                    host_bytes=host_bytes,
                    device_bytes=device_bytes,
                    host_breakdown=_eighths(host_bytes, _SUBGRAPH_HOST_SHARES),
                    device_breakdown=_eighths(device_bytes, _SUBGRAPH_DEVICE_SHARES, rest="runtime_memory"),
                )
            )
        uuid = f"{rng.getrandbits(128):032x}"
        own_host_bytes = rng.randint(1, 16) << 20
        median = rng.uniform(0.001, 0.012)
        flops = median * _FLOPS_PER_SECOND
        model_id = self.recorder.register_model(
            name, subgraphs, uuid=uuid, host_bytes=own_host_bytes, flops_per_inference=flops
        )
        self._loaded.append((model_id, name, median, flops))
        self._model_memory[model_id] = _model_memory(subgraphs, own_host_bytes)


class _Memory(NamedTuple):
    """Memory the simulator registered, as it gave it (the ground truth's tally)."""

    host_bytes: int
    device_bytes: int
    host: dict[str, int]  # by HOST_MEMORY_CATEGORIES
    cores: dict[int, dict[str, int]]  # core -> by CORE_MEMORY_CATEGORIES


def _eighths(total: int, shares: dict[str, int], rest: str = "application_memory") -> dict[str, int]:
    """`total` split into categories by `shares` (in eighths), what they leave in `rest`."""
    split = {category: total * share // 8 for category, share in shares.items()}
    split[rest] = total - sum(split.values())
    return split


def _runtime_memory(cores: int) -> _Memory:
    """The runtime's own memory: its device memory spread over the cores, the last one taking the rest."""
    per_core = _RUNTIME_DEVICE_BYTES // cores
    by_core: dict[int, dict[str, int]] = {}
    for core in range(cores):
        amount = per_core if core < cores - 1 else _RUNTIME_DEVICE_BYTES - per_core * (cores - 1)
        by_core[core] = _eighths(amount, {"model_shared_scratchpad": 2}, rest="runtime_memory")
    host = dict(_RUNTIME_HOST_BREAKDOWN)
    host["application_memory"] = _RUNTIME_HOST_BYTES - sum(host.values())
    return _Memory(_RUNTIME_HOST_BYTES, _RUNTIME_DEVICE_BYTES, host, by_core)


def _model_memory(subgraphs: list[Subgraph], own_host_bytes: int) -> _Memory:
    """A model's memory: its subgraphs' by category, its own host memory as application_memory."""
    host = {"application_memory": own_host_bytes}
    cores: dict[int, dict[str, int]] = {}
    for subgraph in subgraphs:
        for category, amount in (subgraph.host_breakdown or {}).items():
            host[category] = host.get(category, 0) + amount
        on_core = cores.setdefault(subgraph.core, {})
        for category, amount in (subgraph.device_breakdown or {}).items():
            on_core[category] = on_core.get(category, 0) + amount
    host_bytes = own_host_bytes + sum(subgraph.host_bytes for subgraph in subgraphs)
    return _Memory(host_bytes, sum(subgraph.device_bytes for subgraph in subgraphs), host, cores)


def _fill_memory(message: runtime_pb2.MemoryUsage, parts: list[_Memory]) -> None:
    """The total of `parts` into `message`: bytes and runtime-wide categories (device memory in
    CORE_MEMORY_CATEGORIES, summed over the cores)."""
    host = dict.fromkeys(HOST_MEMORY_CATEGORIES, 0)
    device = dict.fromkeys(CORE_MEMORY_CATEGORIES, 0)
    for part in parts:
        for category, amount in part.host.items():
            host[category] += amount
        for categories in part.cores.values():
            for category, amount in categories.items():
                device[category] += amount
    message.host_bytes = sum(part.host_bytes for part in parts)
    message.device_bytes = sum(part.device_bytes for part in parts)
    message.host_categories.extend(runtime_pb2.MemoryCategory(category=c, bytes=b) for c, b in host.items())
    message.device_categories.extend(
        runtime_pb2.MemoryCategory(category=c, bytes=b) for c, b in device.items()
    )


def _poisson(rng: random.Random, mean: float) -> int:
    """A Poisson-distributed count (Knuth for small means, a normal approximation above 50)."""
    if mean <= 0:
        return 0
    if mean > 50:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit = math.exp(-mean)
    count, product = 0, rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count
