"""A seeded synthetic Neuron runtime: a workload that drives an `InferenceRecorder`.

The simulator owns a recorder exactly like an instrumented application does and feeds it:
inferences arriving as a Poisson process at `rate` per second with lognormal latencies (each
model has its own median), failures of every outcome and error kind at `error_rate`, models
loaded and unloaded now and then, rare ECC events and a CPU cost per inference.

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

from otel_neuron.runtime import runtime_pb2
from otel_neuron.runtime.recorder import ECC_KINDS, ERROR_TYPES, OUTCOMES, InferenceRecorder, Subgraph

_TICK_S = 0.02
# Latencies kept for the ground truth between two marks (3.2 MB at most): a test's window, while a
# client that marked once and left cannot make a long-running simulator grow past it.
_MAX_LATENCIES = 200_000

# Failure mix: (outcome, error type, weight) among failed inferences.
_FAILURES = (
    ("completed_with_err", "generic", 4),
    ("completed_with_err", "transient", 2),
    ("completed_with_err", "runtime", 1),
    ("completed_with_err", "hardware", 1),
    ("completed_with_num_err", "numerical", 3),
    ("timed_out", "runtime", 2),
    ("incorrect_input", "generic", 2),
    ("failed_to_queue", "runtime", 1),
)
_MODEL_NAMES = ("resnet50", "bert-base", "gpt2", "yolov5", "t5-small", "vit-b16", "whisper", "llama-7b")


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
        self._loaded: list[tuple[int, str, float]] = []  # (model_id, name, median latency)
        self._model_serial = 0
        # Ground truth, kept apart from the recorder.
        self._outcomes = dict.fromkeys(OUTCOMES, 0)
        self._errors = dict.fromkeys(ERROR_TYPES, 0)
        self._ecc = [dict.fromkeys(ECC_KINDS, 0) for _ in range(self.options.devices)]
        self._latency_count = 0
        # Only once a client has marked: nothing else reads them, and a simulator nobody marks runs
        # for months (polled by a monitor, or as `sim:` inside one).
        self._marked = False
        self._total_latencies = array("d")
        self._device_latencies = array("d")
        self.recorder.set_runtime_memory(host_bytes=64 << 20, device_bytes=128 << 20)
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
                model_id, _, _ = self._loaded.pop(rng.randrange(len(self._loaded)))
                self.recorder.unregister_model(model_id)
            self._load_model()
        per_device = options.ecc_per_hour / 3600.0 * elapsed
        for device in range(options.devices):
            if rng.random() < per_device:
                kind = rng.choices(ECC_KINDS, weights=(8, 1, 1))[0]
                self.recorder.record_ecc(device, kind)
                self._ecc[device][kind] += 1
        running = [model for model in self._loaded]
        if not running:
            return
        count = _poisson(rng, options.rate * elapsed)
        for _ in range(count):
            _, name, median = running[rng.randrange(len(running))]
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
            subgraphs.append(
                Subgraph(
                    f"sg{number:02d}",
                    core,
                    host_bytes=rng.randint(1, 64) << 20,
                    device_bytes=rng.randint(64, 2048) << 20,
                )
            )
        uuid = f"{rng.getrandbits(128):032x}"
        model_id = self.recorder.register_model(
            name, subgraphs, uuid=uuid, host_bytes=rng.randint(1, 16) << 20
        )
        median = rng.uniform(0.001, 0.012)
        self._loaded.append((model_id, name, median))


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
