"""Which container holds which NeuronCore and Neuron device: the Neuron part of one kubelet answer.

Pure data, no gRPC: the kubelet client (otel_neuron.sources.kubelet) builds these, the attribution
(otel_neuron.attribution) reads them.

    allocation = NeuronAllocation(cores={5: PodContainer("bert-0", "ml", "srv")}, devices={1: ...})
    allocation.core_holders(cores_per_device=2)    # cores held directly or through their whole device
    allocation.device_holders(cores_per_device=2)  # devices held whole, or all of whose cores one holds
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import NamedTuple

# Far above any instance's device or core count (a Trn2 has 128 NeuronCores); a larger "index" is
# garbage, and would make core_holders() build a map that large.
MAX_INDEX = 4095


class PodContainer(NamedTuple):
    """The container a NeuronCore or Neuron device is allocated to (a tuple: a List answer makes one
    per container, and a frozen dataclass costs several times as much to build and to hash)."""

    pod_name: str
    namespace: str
    container_name: str


def _empty() -> Mapping[int, PodContainer]:
    return MappingProxyType({})


@dataclass(frozen=True)
class NeuronAllocation:
    """One List answer: NeuronCore and Neuron device indexes to the container holding each.

    Two allocations are equal when they hold the same indexes for the same containers (the counts
    of skipped and duplicate IDs included)."""

    cores: Mapping[int, PodContainer] = field(default_factory=_empty)  # from aws.amazon.com/neuroncore
    devices: Mapping[int, PodContainer] = field(default_factory=_empty)  # from aws.amazon.com/neuron(device)
    skipped_ids: int = 0  # device IDs of a Neuron resource that were not indexes
    duplicate_ids: int = 0  # indexes claimed again by another container (the first holder is kept)

    def __post_init__(self) -> None:
        # Read-only views of private copies: an allocation handed to other threads never changes.
        for name in ("cores", "devices"):
            value = getattr(self, name)
            if not isinstance(value, MappingProxyType):
                object.__setattr__(self, name, MappingProxyType(dict(value)))

    def __bool__(self) -> bool:
        """True when a container holds anything."""
        return bool(self.cores or self.devices)

    def core_holders(self, cores_per_device: int) -> Mapping[int, PodContainer]:
        """Every NeuronCore a container holds: its own cores, and device d's cores
        d * cores_per_device + i (0 <= i < cores_per_device) for each whole device. A core held both
        ways keeps its direct holder."""
        check_cores_per_device(cores_per_device)
        holders: dict[int, PodContainer] = {}
        for device, holder in self.devices.items():
            first = device * cores_per_device
            for core in range(first, first + cores_per_device):
                holders[core] = holder
        holders.update(self.cores)
        return MappingProxyType(holders)

    def device_holders(self, cores_per_device: int) -> Mapping[int, PodContainer]:
        """Every Neuron device one container holds: allocated whole, or all of its cores allocated
        to that same container. A device whose cores are split, or partly free, has no holder."""
        cores = self.core_holders(cores_per_device)
        holders = dict(self.devices)
        for device in {core // cores_per_device for core in self.cores}:
            if device in holders:
                continue
            first = device * cores_per_device
            owners = {cores.get(core) for core in range(first, first + cores_per_device)}
            owner = owners.pop() if len(owners) == 1 else None
            if owner is not None:
                holders[device] = owner
        return MappingProxyType(holders)


def check_cores_per_device(cores_per_device: int) -> None:
    if cores_per_device < 1:
        raise ValueError(f"cores per device must be at least 1, not {cores_per_device}")
