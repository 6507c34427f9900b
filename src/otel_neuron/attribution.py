"""Pod attribution: the Kubernetes container holding a NeuronCore or Neuron device, on every point of it.

One place for every source: the producer hands each block of a group's points to `label()` while it
builds a MetricsData, so the runtime protocol, the neuron-monitor bridge and sysfs are labelled by
the same rule, and every exporter (JSON report, OTLP, Prometheus) sees the same labels.

    attribution = PodAttribution(refresher)        # anything with .allocation, .error and .period
    attribution.begin(sample.points for sample in this_tick)   # once per MetricsData, before label()
    labelled = attribution.label(points)           # the same object when no point of it is held
    attribution.add_own_points(builder.add)        # neuron.k8s.allocation and the kubelet's health

The rule:

- A point is *core-scoped* when it has `neuron.core.index` (subgraph points, which also name their
  device, included), *device-scoped* when it has `neuron.device.index` and no core index. Other
  points are left alone.
- A held point gets `k8s.pod.name`, `k8s.namespace.name` and `k8s.container.name` of its holder; a
  point no container holds gets nothing (and stays the very same object).
- Core c is held by the container allocated it through `aws.amazon.com/neuroncore`, or allocated its
  device whole; device d by the container allocated it whole, or allocated all of its cores
  (kubernetes.allocation.NeuronAllocation). Relating cores to devices takes the cores per device,
  learnt from any source's `neuron.device.core.count` points (sysfs and the bridge give them with
  neuron_hardware_info), the latest seen kept across ticks. Until a source gave them, only direct
  allocations label: NeuronCores for core points, whole devices for device points.
- `neuron.k8s.allocation` (one point per NeuronCore and device) is 1 with the holder's attributes,
  or 0 without them, for every core and device the monitor knows of: those of the devices counted by
  `neuron.device.core.count`, and every index a container held since the monitor started. The 0
  points are what make a pod that left leave no series behind in a "latest value" store such as
  Prometheus: the core's series is replaced, not left standing.
- `neuron.monitor.kubelet.period` and `neuron.monitor.kubelet.error` say how the reads go. When the
  kubelet fails, the allocation given here is what the refresher gives (sources.kubelet: the last
  answer for a few seconds, then nothing).

Cost: the labelled copy of an attribute set is kept per distinct attribute set and allocation (by
identity for the frozen sets and columns groups reuse every period, by content for others), so a
tick costs a lookup per block or point, not a dict per point. Everything kept is dropped when the
allocation or the cores per device change, and is bounded by `max_cached` entries.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple, Protocol

from otel_neuron.groups.base import (
    AttributeColumn,
    Attributes,
    AttributeValue,
    FrozenAttributes,
    Point,
    PointColumns,
    PointsByMetric,
)
from otel_neuron.kubernetes.allocation import MAX_INDEX, NeuronAllocation, PodContainer
from otel_neuron.semconv import (
    CORE_INDEX,
    DEVICE_CORES,
    DEVICE_INDEX,
    ERROR_MESSAGE,
    K8S_ALLOCATION,
    K8S_CONTAINER_NAME,
    K8S_NAMESPACE_NAME,
    K8S_POD_NAME,
    KUBELET_ERROR,
    KUBELET_PERIOD,
    InstrumentSpec,
)

# More NeuronCores per device than any Neuron device has (a Trn2 device has 8): a larger count is
# garbage, and would make the known cores of a device that many.
MAX_CORES_PER_DEVICE = 64
Interval = tuple[int, int]
AddPoints = Callable[[InstrumentSpec, Sequence[Point], Interval], None]


class AllocationView(Protocol):
    """What the attribution reads (sources.kubelet.AllocationRefresher is one): never waits."""

    @property
    def allocation(self) -> NeuronAllocation: ...

    @property
    def error(self) -> str: ...

    @property
    def period(self) -> float: ...


def pod_attributes(holder: PodContainer) -> FrozenAttributes:
    """The attributes a point of a NeuronCore or device held by `holder` gets."""
    return FrozenAttributes(
        {
            K8S_POD_NAME: holder.pod_name,
            K8S_NAMESPACE_NAME: holder.namespace,
            K8S_CONTAINER_NAME: holder.container_name,
        }
    )


class PodAttribution:
    """Adds the holding container to the points of NeuronCores and devices (see the module's rule)."""

    def __init__(self, allocations: AllocationView, max_cached: int = 16_384) -> None:
        if max_cached < 1:
            raise ValueError(f"max_cached must be at least 1, not {max_cached}")
        self._view = allocations
        self._max_cached = max_cached
        self._allocation: NeuronAllocation | None = None
        self._cores_per_device: int | None = None
        self._counted_devices: frozenset[int] = frozenset()  # devices of neuron.device.core.count points
        self._ever_held_cores: set[int] = set()  # every index held since start: at most MAX_INDEX + 1
        self._ever_held_devices: set[int] = set()
        # Keyed by index; typed by what a point's index attribute may be, which is what looks them up.
        self._core_labels: Mapping[AttributeValue, FrozenAttributes] = {}
        self._device_labels: Mapping[AttributeValue, FrozenAttributes] = {}
        self._pod_attributes: dict[PodContainer, FrozenAttributes] = {}  # of the current holders
        # The labelled copies: by id (the original is kept with it, so the id cannot be reused) for
        # frozen attribute sets and columns, by content for plain dicts; each with the indexes it
        # depends on, so an allocation change drops only what it touched.
        self._by_identity: dict[int, _Kept] = {}
        self._by_content: dict[tuple[tuple[str, Any], ...], _Kept] = {}
        self._allocation_points = PointColumns(AttributeColumn(()), ())
        self._error_points: tuple[str, tuple[Point, ...]] = (
            "",
            ((FrozenAttributes({ERROR_MESSAGE: ""}), 0),),
        )

    # ------------------------------------------------------------------ once per MetricsData

    def begin(self, samples: Iterable[PointsByMetric]) -> None:
        """Start a MetricsData: learn the devices and cores per device its samples count, and take
        the latest allocation. Everything derived is rebuilt only when one of them changed."""
        counted = self._counted_devices
        cores_per_device = self._cores_per_device
        for points in samples:
            counts = points.get(DEVICE_CORES.name)
            if counts:
                counted, cores_per_device = _devices_counted(counts, counted, cores_per_device)
        allocation = self._view.allocation
        per_device_changed = cores_per_device != self._cores_per_device
        if allocation is not self._allocation or per_device_changed or counted != self._counted_devices:
            self._cores_per_device, self._counted_devices = cores_per_device, counted
            self._rebuild(allocation, per_device_changed)

    def _rebuild(self, allocation: NeuronAllocation, cores_per_device_changed: bool) -> None:
        self._allocation = allocation
        per_device = self._cores_per_device
        if per_device is not None:
            cores, devices = allocation.core_holders(per_device), allocation.device_holders(per_device)
        else:
            cores, devices = allocation.cores, allocation.devices
        # A holder still there keeps its attribute set: what is labelled with it stays valid.
        kept = self._pod_attributes
        pods = {
            holder: kept.get(holder) or pod_attributes(holder)
            for holder in {*cores.values(), *devices.values()}
        }
        core_labels: dict[AttributeValue, FrozenAttributes] = {c: pods[h] for c, h in cores.items()}
        device_labels: dict[AttributeValue, FrozenAttributes] = {d: pods[h] for d, h in devices.items()}
        changed = _changed(CORE_INDEX, self._core_labels, core_labels) | _changed(
            DEVICE_INDEX, self._device_labels, device_labels
        )
        self._pod_attributes, self._core_labels, self._device_labels = pods, core_labels, device_labels
        if cores_per_device_changed:
            self._by_identity.clear()
            self._by_content.clear()
        elif changed:
            self._forget(changed)
        self._ever_held_cores.update(core for core in cores if core <= MAX_INDEX)
        self._ever_held_devices.update(device for device in devices if device <= MAX_INDEX)
        self._allocation_points = self._allocation_points_now()

    def _forget(self, changed: Scope) -> None:
        """Drop the labelled copies that depend on a NeuronCore or device whose holder changed."""
        for identity in [i for i, kept in self._by_identity.items() if not kept.scope.isdisjoint(changed)]:
            del self._by_identity[identity]
        for content in [c for c, kept in self._by_content.items() if not kept.scope.isdisjoint(changed)]:
            del self._by_content[content]

    def _allocation_points_now(self) -> PointColumns:
        """Columns, built once per allocation: the report reads what it derives from them once."""
        known_devices = self._counted_devices | self._ever_held_devices
        known_cores = set(self._ever_held_cores)
        if self._cores_per_device is not None:
            per_device = self._cores_per_device
            for device in self._counted_devices:
                known_cores.update(range(device * per_device, (device + 1) * per_device))
        points: list[Point] = []
        for key, known, labels in (
            (CORE_INDEX, known_cores, self._core_labels),
            (DEVICE_INDEX, known_devices, self._device_labels),
        ):
            for index in sorted(known):
                held = labels.get(index)
                if held is None:
                    points.append((FrozenAttributes({key: index}), 0))
                else:
                    points.append((FrozenAttributes({key: index, **held}), 1))
        return PointColumns(AttributeColumn(a for a, _ in points), [value for _, value in points])

    def add_own_points(self, add: AddPoints, now_unix_nano: int | None = None) -> None:
        """Add this MetricsData's neuron.k8s.allocation and kubelet health points through `add`."""
        end = time.time_ns() if now_unix_nano is None else now_unix_nano
        period = self._view.period
        interval = (end - int(period * 1e9), end)
        if self._allocation_points:
            add(K8S_ALLOCATION, self._allocation_points, interval)
        add(KUBELET_PERIOD, ((FrozenAttributes(), period),), interval)
        error = self._view.error
        if error != self._error_points[0]:
            self._error_points = (error, ((FrozenAttributes({ERROR_MESSAGE: error}), 1 if error else 0),))
        add(KUBELET_ERROR, self._error_points[1], interval)

    # ------------------------------------------------------------------ per block of points

    def label(self, pairs: Sequence[Point]) -> Sequence[Point]:
        """`pairs` with the holder's attributes on each point a container holds; `pairs` itself when
        none is."""
        if not pairs or not (self._core_labels or self._device_labels):
            return pairs
        if type(pairs) is PointColumns and type(pairs.attributes) is AttributeColumn:
            column = pairs.attributes
            kept = self._by_identity.get(id(column))
            if kept is None or kept.original is not column:
                kept = self._keep(column, *self._label_column(column))
            return pairs if kept.labelled is column else PointColumns(kept.labelled, pairs.values)
        changed: list[Point] | None = None
        for position, (attributes, value) in enumerate(pairs):
            new = self._labelled(attributes)
            if changed is not None:
                changed.append((new, value))
            elif new is not attributes:
                changed = list(pairs[:position])
                changed.append((new, value))
        return pairs if changed is None else changed

    def _label_column(self, column: AttributeColumn) -> tuple[AttributeColumn, Scope]:
        labelled = [self._labelled(attributes) for attributes in column]
        scope = frozenset(where for attributes in column if (where := _index_of(attributes)) is not None)
        if all(new is old for new, old in zip(labelled, column)):
            return column, scope
        return AttributeColumn(labelled), scope

    def _labelled(self, attributes: Attributes) -> Attributes:
        try:
            core = attributes.get(CORE_INDEX)
            if core is not None:
                key, index, labels = CORE_INDEX, core, self._core_labels.get(core)
            else:
                device = attributes.get(DEVICE_INDEX)
                if device is None:
                    return attributes
                key, index, labels = DEVICE_INDEX, device, self._device_labels.get(device)
        except TypeError:  # an index that is not hashable: not one of ours to label
            return attributes
        if labels is None:
            return attributes
        if type(attributes) is FrozenAttributes:
            kept = self._by_identity.get(id(attributes))
            if kept is None or kept.original is not attributes:
                labelled = FrozenAttributes({**attributes, **labels})
                kept = self._keep(attributes, labelled, frozenset(((key, index),)))
            return kept.labelled
        return self._labelled_by_content(attributes, labels, (key, index))

    def _labelled_by_content(
        self, attributes: Attributes, labels: Mapping[str, AttributeValue], where: tuple[str, AttributeValue]
    ) -> Attributes:
        try:
            content = tuple(attributes.items())
            kept = self._by_content.get(content)
        except TypeError:  # a value that is not hashable (a list): labelled, not kept
            return FrozenAttributes({**attributes, **labels})
        if kept is None:
            if len(self._by_content) >= self._max_cached:
                self._by_content.clear()
            kept = _Kept(None, FrozenAttributes({**attributes, **labels}), frozenset((where,)))
            self._by_content[content] = kept
        return kept.labelled

    def _keep(self, original: object, labelled: object, scope: Scope) -> _Kept:
        if len(self._by_identity) >= self._max_cached:
            self._by_identity.clear()
        kept = self._by_identity[id(original)] = _Kept(original, labelled, scope)
        return kept


Scope = frozenset[tuple[str, AttributeValue]]  # the (index key, index) pairs a labelled copy depends on


class _Kept(NamedTuple):
    original: object  # kept alive with its copy, so that its id is not reused meanwhile
    labelled: Any
    scope: Scope


def _index_of(attributes: Attributes) -> tuple[str, AttributeValue] | None:
    """(neuron.core.index, i) of a core-scoped point, (neuron.device.index, i) of a device-scoped one."""
    core = attributes.get(CORE_INDEX)
    if core is not None:
        return (CORE_INDEX, core) if _hashable(core) else None
    device = attributes.get(DEVICE_INDEX)
    return (DEVICE_INDEX, device) if device is not None and _hashable(device) else None


def _hashable(value: object) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _changed(
    key: str,
    before: Mapping[AttributeValue, FrozenAttributes],
    after: Mapping[AttributeValue, FrozenAttributes],
) -> Scope:
    """The indexes whose holder's attributes are not the very same in `after` as in `before`."""
    return frozenset(
        (key, index) for index in before.keys() | after.keys() if before.get(index) is not after.get(index)
    )


def _devices_counted(
    counts: Sequence[Point], counted: frozenset[int], cores_per_device: int | None
) -> tuple[frozenset[int], int | None]:
    """`counted` with the devices of these `neuron.device.core.count` points, and the NeuronCores per
    device: the lowest device's count (a node's devices are alike). Points out of range are ignored."""
    valid = [
        (device, int(value))
        for attributes, value in counts
        if type(device := attributes.get(DEVICE_INDEX)) is int
        and 0 <= device <= MAX_INDEX
        and isinstance(value, (int, float))
        and 1 <= value <= MAX_CORES_PER_DEVICE
    ]
    if not valid:
        return counted, cores_per_device
    devices = counted | {device for device, _ in valid}
    return (counted if devices == counted else devices), min(valid)[1]
