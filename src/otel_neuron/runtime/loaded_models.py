"""The models a runtime has loaded and the memory it holds: changed rarely, under one lock, and
written into every snapshot.

Memory by category follows neuron-monitor 2.x's `usage_breakdown`: host memory given no category
counts as application_memory (neuron-monitor's category for everything else); device memory is
given by category only as the caller gives it (then it must add up).
"""

from __future__ import annotations

import threading
import uuid as uuid_module
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

from otel_neuron.runtime import runtime_pb2
from otel_neuron.semconv import (
    CORE_MEMORY_CATEGORIES,
    HOST_MEMORY_CATEGORIES,
    SUBGRAPH_DEVICE_MEMORY_CATEGORIES,
)

# Where host memory given no category goes: neuron-monitor's "all allocations not in the other categories".
_HOST_REST = "application_memory"
_FIRST_MODEL_ID = 10000


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


class Placement(NamedTuple):
    """Where an inference of each model name runs, for the recorder's hot path."""

    cores: dict[str, tuple[int, ...]]  # model name -> the cores its subgraphs are on
    flops: dict[str, tuple[tuple[int, float], ...]]  # model name -> (core, flops) an inference adds
    declares_flops: bool  # a model declared its flops: snapshots report them per core


def device_of(core: int, cores: int, devices: int) -> int:
    """The Neuron device holding `core` when `cores` are spread evenly over `devices`."""
    per_device = max(1, -(-cores // devices))
    return min(core // per_device, devices - 1)


class ModelRegistry:
    """A runtime's loaded models and memory; `publish` is handed the new `Placement` (under the
    registry's lock, so placements arrive in order) whenever a model is loaded or unloaded."""

    def __init__(self, cores: int, devices: int, publish: Callable[[Placement], None]) -> None:
        self.cores = cores
        self.devices = devices
        self._publish = publish
        self._lock = threading.Lock()
        self._models: dict[int, _Model] = {}
        self._next_model_id = _FIRST_MODEL_ID
        self._models_revision = 1  # changed with every change of _models (Snapshot.models_revision)
        self._memory_revision = 1  # changed with every change of the memory (Snapshot.memory_revision)
        self._declares_flops = False
        self._runtime_host_bytes = 0
        self._runtime_device_bytes = 0
        self._runtime_host_breakdown: dict[str, int] = {}
        self._runtime_core_breakdown: dict[int, dict[str, int]] = {}
        self._device_categorized = False  # some device memory was given by category: report core_memory

    def register(
        self,
        name: str,
        subgraphs: Sequence[Subgraph],
        uuid: str | None,
        model_id: int | None,
        running: bool,
        host_bytes: int,
        device_bytes: int,
        flops_per_inference: float,
    ) -> int:
        """Load a model (see `InferenceRecorder.register_model`); its model_id."""
        for subgraph in subgraphs:
            if not 0 <= subgraph.core < self.cores:
                raise ValueError(
                    f"subgraph {subgraph.name!r} is on core {subgraph.core}, not 0..{self.cores - 1}"
                )
        if not 0 <= flops_per_inference < float("inf"):
            raise ValueError(f"flops_per_inference must be a finite number >= 0, not {flops_per_inference!r}")
        placed = tuple(
            _placed(subgraph, device_of(subgraph.core, self.cores, self.devices)) for subgraph in subgraphs
        )
        with self._lock:
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
                self._declares_flops = True
            if any(subgraph.device_breakdown is not None for subgraph in placed):
                self._device_categorized = True
            self._models_changed()
        return model_id

    def unregister(self, model_id: int) -> None:
        """Unload a model (unknown ids are ignored)."""
        with self._lock:
            self._models.pop(model_id, None)
            self._models_changed()

    def set_running(self, model_id: int, running: bool) -> None:
        with self._lock:
            model = self._models.get(model_id)
            if model is not None:
                self._models[model_id] = replace(model, running=running)
                self._models_revision += 1

    def set_runtime_memory(
        self,
        host_bytes: int,
        device_bytes: int,
        host_breakdown: Mapping[str, int] | None,
        core_breakdown: Mapping[int, Mapping[str, int]] | None,
    ) -> None:
        """Memory the runtime holds apart from its models (see `InferenceRecorder.set_runtime_memory`)."""
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
        with self._lock:
            self._runtime_host_bytes = host_bytes
            self._runtime_device_bytes = device_bytes
            self._runtime_host_breakdown = host_categories
            self._runtime_core_breakdown = cores
            if core_breakdown is not None:
                self._device_categorized = True
            self._memory_revision += 1

    def _models_changed(self) -> None:
        """After a model was loaded or unloaded (under the lock): new revisions, a new placement."""
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
        self._publish(
            Placement({name: tuple(placed) for name, placed in cores.items()}, flops, self._declares_flops)
        )

    def fill(self, snapshot: runtime_pb2.Snapshot) -> None:
        """The snapshot's models, their revisions and the runtime's memory (by category)."""
        with self._lock:
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
