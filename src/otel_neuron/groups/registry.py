"""Which group class renders each report key (the inverse of sampling, used by the JSON report)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from functools import lru_cache

import otel_neuron.groups

from otel_neuron.groups.base import MetricGroup
from otel_neuron.groups.system import MemoryInfoGroup, VcpuUsageGroup

SYSTEM_GROUPS: dict[str, type[MetricGroup]] = {
    VcpuUsageGroup.report_key: VcpuUsageGroup,
    MemoryInfoGroup.report_key: MemoryInfoGroup,
}


_PRIMARY_MODULE = "otel_neuron.groups.runtime"


@lru_cache(maxsize=1)
def group_classes() -> dict[str, type[MetricGroup]]:
    """Every report key this build knows: each module of otel_neuron.groups contributes its groups."""
    classes = dict(SYSTEM_GROUPS)
    names = sorted(info.name for info in pkgutil.iter_modules(otel_neuron.groups.__path__, "otel_neuron.groups."))
    # The runtime protocol's groups define the five runtime keys in full; other sources of those
    # keys (bridge, sysfs) feed the same instruments, or a subset of them.
    names.sort(key=lambda name: name != _PRIMARY_MODULE)
    for name in names:
        module = importlib.import_module(name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, MetricGroup) and cls.report_key and not inspect.isabstract(cls):
                classes.setdefault(cls.report_key, cls)
    return classes


@lru_cache(maxsize=1)
def metric_names_by_key() -> dict[str, frozenset[str]]:
    return {key: frozenset(spec.name for spec in cls.instruments) for key, cls in group_classes().items()}
