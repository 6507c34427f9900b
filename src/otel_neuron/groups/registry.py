"""Which group class renders each report key (the inverse of sampling, used by the JSON report)."""

from __future__ import annotations

from functools import lru_cache

from otel_neuron.groups.base import MetricGroup
from otel_neuron.groups.system import MemoryInfoGroup, VcpuUsageGroup

SYSTEM_GROUPS: dict[str, type[MetricGroup]] = {
    VcpuUsageGroup.report_key: VcpuUsageGroup,
    MemoryInfoGroup.report_key: MemoryInfoGroup,
}


@lru_cache(maxsize=1)
def group_classes() -> dict[str, type[MetricGroup]]:
    """Every report key this build knows, system and runtime-level.

    The runtime protocol's groups define the five runtime keys in full; the sysfs groups add the
    hardware keys (their memory_used and hw_counters feed a subset of the same instruments, and
    the bridge's feed the same ones, so the runtime classes render those keys for every source).
    """
    from otel_neuron.groups import runtime, sysfs  # the runtime groups import grpc: only when needed

    classes: dict[str, type[MetricGroup]] = dict(SYSTEM_GROUPS)
    classes.update({cls.report_key: cls for cls in sysfs.SYSFS_GROUP_TYPES.values()})
    classes.update({cls.report_key: cls for cls in runtime.GROUP_TYPES.values()})
    return classes


@lru_cache(maxsize=1)
def metric_names_by_key() -> dict[str, frozenset[str]]:
    return {key: frozenset(spec.name for spec in cls.instruments) for key, cls in group_classes().items()}
