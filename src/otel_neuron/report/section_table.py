"""Which function renders each report section, from the points of which metrics: one table per format.

A section is keyed by the report key of the group that collects it, whatever the source of its
points (a runtime endpoint, a neuron-monitor stream, sysfs, /proc): the renderers read only the
points. Both report modules (`report.v1`, `report.v2`) read these tables, and nothing else says
how a section is drawn.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from otel_neuron.exporters.section_memo import Render
from otel_neuron.report import sections_v1, sections_v2
from otel_neuron.report.sysfs_sections import render_neuron_power, render_neuroncore_status
from otel_neuron.report.system import render_memory_info, render_vcpu_usage
from otel_neuron.semconv import (
    CONTEXT_SWITCHES,
    CORE_EFFECTIVE_FLOPS,
    CORE_FLOPS,
    CORE_PHYSICAL_UTILIZATION,
    CORE_SUBGRAPHS,
    CORE_UTILIZATION,
    CPU_AVERAGE_UTILIZATION,
    CPU_UTILIZATION,
    DEVICE_LATENCY,
    ECC_ERRORS,
    EXECUTION_STATS,
    HW_COUNTERS,
    INFERENCE_COUNT,
    INFERENCE_ERRORS,
    INFERENCE_LATENCY,
    INFERENCE_STATS,
    MEMORY_INFO,
    MEMORY_USED,
    MODEL_MEMORY,
    MODEL_RUNNING,
    NEURON_HARDWARE_INFO,
    NEURON_POWER,
    NEURONCORE_COUNTERS,
    NEURONCORE_STATUS,
    RUNTIME_CPU,
    RUNTIME_MEMORY,
    RUNTIME_VCPU_USAGE,
    SECTION_INSTRUMENTS,
    SUBGRAPH_MEMORY,
    VCPU_USAGE,
    InstrumentSpec,
)


class SectionRenderer(NamedTuple):
    """How a section is rendered: from the points of which metrics, by which function, and whether
    its rendering is kept while its points stand still (see exporters.section_memo): true for the
    sections that are usually the same period after period (loaded models, ECC counts of 0, hardware
    facts), where keeping the points to compare costs less than rendering again."""

    metric_names: frozenset[str]
    render: Render
    repeats: bool = False


def _renderer(render: Render, *instruments: InstrumentSpec, repeats: bool = False) -> SectionRenderer:
    return SectionRenderer(frozenset(spec.name for spec in instruments), render, repeats)


def metrics_read(*tables: Mapping[str, SectionRenderer]) -> frozenset[str]:
    """The names of every metric the renderers of `tables` read."""
    return frozenset(name for table in tables for section in table.values() for name in section.metric_names)


_NEURON_POWER = _renderer(render_neuron_power, *SECTION_INSTRUMENTS[NEURON_POWER])
_NEURONCORE_STATUS = _renderer(render_neuroncore_status, *SECTION_INSTRUMENTS[NEURONCORE_STATUS])
_MEMORY_INFO = _renderer(render_memory_info, *SECTION_INSTRUMENTS[MEMORY_INFO])

# The 1.x report (the guide's): every section, runtime-level and system, by report key.
SECTIONS_V1: Mapping[str, SectionRenderer] = {
    NEURONCORE_COUNTERS: _renderer(sections_v1.render_neuroncore_counters, CORE_UTILIZATION, CORE_SUBGRAPHS),
    INFERENCE_STATS: _renderer(
        sections_v1.render_inference_stats,
        INFERENCE_COUNT,
        INFERENCE_ERRORS,
        INFERENCE_LATENCY,
        DEVICE_LATENCY,
    ),
    MEMORY_USED: _renderer(
        sections_v1.render_memory_used,
        RUNTIME_MEMORY,
        MODEL_MEMORY,
        MODEL_RUNNING,
        SUBGRAPH_MEMORY,
        repeats=True,
    ),
    RUNTIME_VCPU_USAGE: _renderer(sections_v1.render_runtime_vcpu_usage, RUNTIME_CPU),
    HW_COUNTERS: _renderer(sections_v1.render_hw_counters, ECC_ERRORS, repeats=True),
    NEURON_HARDWARE_INFO: _renderer(
        sections_v1.render_hardware_info, *SECTION_INSTRUMENTS[NEURON_HARDWARE_INFO], repeats=True
    ),
    NEURON_POWER: _NEURON_POWER,
    NEURONCORE_STATUS: _NEURONCORE_STATUS,
    # The mean over the vCPUs, whatever the source: a bridged stream's own average is the 2.x report's.
    VCPU_USAGE: _renderer(render_vcpu_usage, CPU_UTILIZATION, CONTEXT_SWITCHES),
    MEMORY_INFO: _MEMORY_INFO,
}

_EXECUTION_STATS = _renderer(sections_v2.render_execution_stats, *SECTION_INSTRUMENTS[INFERENCE_STATS])
# The 2.x report: the sections of an application entry, by the report key of the group that collects
# them (neuron_power and neuroncore_status are otel-neuron's own, in an entry of pid 0).
ENTRY_SECTIONS_V2: Mapping[str, SectionRenderer] = {
    NEURONCORE_COUNTERS: _renderer(
        sections_v2.render_neuroncore_counters,
        CORE_UTILIZATION,
        CORE_FLOPS,
        CORE_EFFECTIVE_FLOPS,
        CORE_PHYSICAL_UTILIZATION,
    ),
    INFERENCE_STATS: _EXECUTION_STATS,
    EXECUTION_STATS: _EXECUTION_STATS,  # a group may go by either name
    MEMORY_USED: _renderer(sections_v2.render_memory_used, *SECTION_INSTRUMENTS[MEMORY_USED], repeats=True),
    RUNTIME_VCPU_USAGE: _renderer(sections_v2.render_runtime_vcpu_usage, RUNTIME_CPU),
    NEURON_POWER: _NEURON_POWER,
    NEURONCORE_STATUS: _NEURONCORE_STATUS,
}
# The 2.x report's system_data sections of the host's own groups.
SYSTEM_SECTIONS_V2: Mapping[str, SectionRenderer] = {
    VCPU_USAGE: _renderer(render_vcpu_usage, CPU_UTILIZATION, CPU_AVERAGE_UTILIZATION, CONTEXT_SWITCHES),
    MEMORY_INFO: _MEMORY_INFO,
}
