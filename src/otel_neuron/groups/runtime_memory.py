"""memory_used from runtime snapshots: the runtime's and each loaded model's memory at the snapshot."""

from __future__ import annotations

from dataclasses import dataclass

from otel_neuron.groups.base import AttributeColumn, Point, PointColumns, PointsByMetric
from otel_neuron.groups.snapshot_group import NO_POINTS, RuntimeGroup, as_columns, same_memory
from otel_neuron.runtime import runtime_pb2
from otel_neuron.semconv import (
    CORE_INDEX,
    CORE_MEMORY_BY_CATEGORY,
    DEVICE_INDEX,
    HOST_MEMORY_BY_CATEGORY,
    MEMORY_CATEGORY,
    MEMORY_LOCATION,
    MEMORY_LOCATIONS,
    MEMORY_USED,
    MODEL_ID,
    MODEL_MEMORY,
    MODEL_NAME,
    MODEL_RUNNING,
    MODEL_UUID,
    RUNTIME_MEMORY,
    SUBGRAPH_MEMORY,
    SUBGRAPH_MEMORY_BY_CATEGORY,
    SUBGRAPH_NAME,
    measured_instruments,
)


class MemoryUsedGroup(RuntimeGroup):
    """memory_used: the runtime's and each loaded model's (and subgraph's) memory at the snapshot."""

    report_key = MEMORY_USED
    instruments = measured_instruments(MEMORY_USED)
    needs_baseline = False

    def _attributes_changed(self) -> None:
        self._models_generation = -1  # of the models the model points were built from (none yet)
        self._model_points = _ModelPoints(NO_POINTS, NO_POINTS, NO_POINTS, NO_POINTS)
        self._locations = AttributeColumn(
            self._attrs(**{MEMORY_LOCATION: location}) for location in MEMORY_LOCATIONS
        )
        # The runtime's memory points and the snapshot they were built from (kept while it stays the same).
        self._memory_of: runtime_pb2.Snapshot | None = None
        self._memory_points = _MemoryPoints(NO_POINTS, NO_POINTS, NO_POINTS)

    def _points(self, current: runtime_pb2.Snapshot, previous: runtime_pb2.Snapshot | None) -> PointsByMetric:
        memory = self._memory_points_of(current)
        generation = self._checks.models_generation(current)
        if generation != self._models_generation:
            self._models_generation = generation
            self._model_points = self._model_points_of(current)
        models = self._model_points
        return {
            RUNTIME_MEMORY.name: memory.runtime,
            MODEL_MEMORY.name: models.memory,
            MODEL_RUNNING.name: models.running,
            SUBGRAPH_MEMORY.name: models.subgraphs,
            HOST_MEMORY_BY_CATEGORY.name: memory.host_categories,
            CORE_MEMORY_BY_CATEGORY.name: memory.core_categories,
            SUBGRAPH_MEMORY_BY_CATEGORY.name: models.subgraph_categories,
        }

    def _memory_points_of(self, current: runtime_pb2.Snapshot) -> _MemoryPoints:
        """The runtime's memory by location, its host memory by category and each core's device
        memory by category (none when the runtime gives no categories); the last ones again while
        the memory stays the same."""
        kept = self._memory_of
        if kept is None or not same_memory(kept, current):
            memory = current.runtime_memory
            runtime = PointColumns(self._locations, [memory.host_bytes, memory.device_bytes])
            host = [
                (self._attrs(**{MEMORY_CATEGORY: part.category}), part.bytes)
                for part in current.runtime_memory.host_categories
            ]
            cores = [
                (self._attrs(**{CORE_INDEX: core.core_index, MEMORY_CATEGORY: part.category}), part.bytes)
                for core in current.core_memory
                for part in core.categories
            ]
            self._memory_points = _MemoryPoints(runtime, as_columns(host), as_columns(cores))
        self._memory_of = current
        return self._memory_points

    def _model_points_of(self, current: runtime_pb2.Snapshot) -> _ModelPoints:
        models: list[Point] = []
        running: list[Point] = []
        subgraphs: list[Point] = []
        categories: list[Point] = []
        for model in current.models:
            identity = {MODEL_NAME: model.name, MODEL_UUID: model.uuid, MODEL_ID: model.model_id}
            running.append((self._attrs(**identity), 1 if model.is_running else 0))
            models.append((self._attrs(**identity, **{MEMORY_LOCATION: "host"}), model.memory.host_bytes))
            models.append(
                (self._attrs(**identity, **{MEMORY_LOCATION: "neuron_device"}), model.memory.device_bytes)
            )
            for subgraph in model.subgraphs:
                placed = {
                    MODEL_ID: model.model_id,
                    MODEL_NAME: model.name,
                    SUBGRAPH_NAME: subgraph.name,
                    CORE_INDEX: subgraph.neuroncore_index,
                    DEVICE_INDEX: subgraph.neuron_device_index,
                }
                subgraphs.append(
                    (self._attrs(**placed, **{MEMORY_LOCATION: "host"}), subgraph.memory.host_bytes)
                )
                subgraphs.append(
                    (
                        self._attrs(**placed, **{MEMORY_LOCATION: "neuron_device"}),
                        subgraph.memory.device_bytes,
                    )
                )
                for location, parts in (
                    ("host", subgraph.memory.host_categories),
                    ("neuron_device", subgraph.memory.device_categories),
                ):
                    for part in parts:
                        where = {MEMORY_LOCATION: location, MEMORY_CATEGORY: part.category}
                        categories.append((self._attrs(**placed, **where), part.bytes))
        return _ModelPoints(
            as_columns(models), as_columns(running), as_columns(subgraphs), as_columns(categories)
        )


@dataclass(slots=True)
class _MemoryPoints:
    """memory_used's points of the runtime's own memory, kept while it stays the same."""

    runtime: PointColumns  # by location
    host_categories: PointColumns
    core_categories: PointColumns  # each NeuronCore's device memory by category


@dataclass(slots=True)
class _ModelPoints:
    """memory_used's points of the loaded models, kept while they stay loaded."""

    memory: PointColumns  # each model's, by location
    running: PointColumns
    subgraphs: PointColumns  # each subgraph's memory, by location
    subgraph_categories: PointColumns
