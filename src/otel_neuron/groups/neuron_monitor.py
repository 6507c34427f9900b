"""The runtime groups and neuron_hardware_info, fed by AWS's neuron-monitor instead of a runtime endpoint.

    groups = create_bridge_groups(0, "neuron-monitor:/opt/aws/neuron/bin/neuron-monitor",
                                  ["neuroncore_counters", "inference_stats"], deadline_s=0.8,
                                  registry=BridgeRegistry())

Each group has the report key and the OpenTelemetry instruments of its counterpart in
`otel_neuron.groups.runtime` (neuron_hardware_info: in `otel_neuron.groups.sysfs`), plus what only
neuron-monitor 2.x reports, so OTLP, Prometheus and the reports see the same metrics whichever way
the numbers came in. Every application (a Neuron process: an entry of neuron-monitor's
`neuron_runtime_data`) of the configured runtime has its own points, which carry `process.pid`
and `neuron.runtime.tag` besides `neuron.runtime.index` (a 1.x entry: its `neuron_runtime_index`
as tag). The numbers are what arrived since the group's previous sample
(`sources.neuron_monitor_windows`, `sources.neuron_monitor_application`):

- neuroncore_counters: utilization; FLOPS under the key upstream used (`flops`: neuron.core.flops,
  `effective_flops`: neuron.core.effective_flops); Trn2's `v3d` per physical NeuronCore
  (neuron.core.physical.utilization); 1.x loaded models;
- inference_stats (2.x execution_stats): every outcome and error type upstream gave (`model`
  included); the latency percentiles as upstream gave them (neuron.inference.latency.percentile,
  neuron.inference.device.latency.percentile) and as a synthesized histogram
  (`sources.percentile_histogram`);
- memory_used: the runtime's memory, its usage_breakdown (host categories, each NeuronCore's
  categories), each loaded model and each subgraph with its own usage_breakdown; a model without a
  valid model_id, or a subgraph without valid NeuronCore and device indexes, cannot be named and
  is left out;
- neuron_runtime_vcpu_usage: the application's user and system CPU;
- hw_counters: ECC events per device and kind (all four 2.x kinds; 2.x's system group
  neuron_hw_counters carries no application);
- neuron_hardware_info: the root object of the stream, as the sysfs group's instruments;
- vcpu_usage, memory_info (`BridgeSystemGroup`): the stream's own system groups, passed through as
  the /proc groups' instruments when the monitor is not configured to compute them itself.

For each application, each group also gives its upstream errors (neuron.monitor.application.error):
the entry's `error` and the group's own. An application gone from the stream's latest report gives,
once, the counts it reported since the previous sample (executions, errors, the latency
histograms, ECC events: what happened while it ran), and nothing after.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from otel_neuron.groups.base import MetricGroup, Point
from otel_neuron.groups.bridge_group import Attrs, BridgeGroup, fraction
from otel_neuron.groups.neuron_monitor_system import (
    STREAM_SYSTEM_GROUP_TYPES,
    BridgeHardwareInfo,
)
from otel_neuron.semconv import (
    APPLICATION_ERROR,
    CORE_EFFECTIVE_FLOPS,
    CORE_FLOPS,
    CORE_INDEX,
    CORE_MEMORY_BY_CATEGORY,
    CORE_PHYSICAL_UTILIZATION,
    CORE_SUBGRAPHS,
    CORE_UTILIZATION,
    CPU_MODE,
    DEVICE_INDEX,
    DEVICE_LATENCY,
    DEVICE_LATENCY_PERCENTILE,
    ECC_ERRORS,
    ERROR_TYPE,
    HOST_MEMORY_BY_CATEGORY,
    HW_COUNTERS,
    HW_ERROR_TYPE,
    INFERENCE_COUNT,
    INFERENCE_ERRORS,
    INFERENCE_LATENCY,
    INFERENCE_LATENCY_PERCENTILE,
    INFERENCE_STATS,
    LATENCY_PERCENTILE,
    MEMORY_CATEGORY,
    MEMORY_LOCATION,
    MEMORY_USED,
    MODEL_ID,
    MODEL_MEMORY,
    MODEL_NAME,
    MODEL_RUNNING,
    MODEL_UUID,
    NEURON_HARDWARE_INFO,
    NEURONCORE_COUNTERS,
    OUTCOME,
    PHYSICAL_CORE,
    RUNTIME_CPU,
    RUNTIME_MEMORY,
    RUNTIME_VCPU_USAGE,
    SECTION_INSTRUMENTS,
    SUBGRAPH_MEMORY,
    SUBGRAPH_MEMORY_BY_CATEGORY,
    SUBGRAPH_NAME,
)
from otel_neuron.sources.neuron_monitor_address import parse_bridge_address
from otel_neuron.sources.neuron_monitor_application import AppWindow
from otel_neuron.sources.neuron_monitor_bridge import BridgeRegistry
from otel_neuron.sources.neuron_monitor_types import LoadedModel, MemoryUsed


class BridgeNeuronCoreCounters(BridgeGroup):
    report_key = NEURONCORE_COUNTERS
    instruments = (*SECTION_INSTRUMENTS[NEURONCORE_COUNTERS], APPLICATION_ERROR)

    def _add_points(self, points: dict[str, list[Point]], app: AppWindow, attributes: Attrs) -> None:
        for index in sorted(app.cores):
            core = app.cores[index]
            at_core = {**attributes, CORE_INDEX: index}
            if core.utilization is not None:
                points[CORE_UTILIZATION.name].append((at_core, fraction(core.utilization)))
            if core.flops is not None:
                points[CORE_FLOPS.name].append((at_core, core.flops))
            if core.effective_flops is not None:
                points[CORE_EFFECTIVE_FLOPS.name].append((at_core, core.effective_flops))
            for name, utilization in core.physical.items():
                points[CORE_PHYSICAL_UTILIZATION.name].append(
                    ({**at_core, PHYSICAL_CORE: name}, fraction(utilization))
                )
            subgraphs: dict[tuple[str, str], int] = {}
            for loaded in core.loaded_models:
                model, _, subgraph = loaded.partition(":")
                subgraphs[(model, subgraph)] = subgraphs.get((model, subgraph), 0) + 1
            for (model, subgraph), count in sorted(subgraphs.items()):
                points[CORE_SUBGRAPHS.name].append(
                    ({**at_core, MODEL_NAME: model, SUBGRAPH_NAME: subgraph}, count)
                )


class BridgeInferenceStats(BridgeGroup):
    report_key = INFERENCE_STATS
    instruments = (*SECTION_INSTRUMENTS[INFERENCE_STATS], APPLICATION_ERROR)

    def _add_points(self, points: dict[str, list[Point]], app: AppWindow, attributes: Attrs) -> None:
        for name, count in app.outcomes.items():
            points[INFERENCE_COUNT.name].append(({**attributes, OUTCOME: name}, count))
        for name, count in app.errors.items():
            points[INFERENCE_ERRORS.name].append(({**attributes, ERROR_TYPE: name}, count))
        if app.total_latency is not None:
            points[INFERENCE_LATENCY.name].append((attributes, app.total_latency))
        if app.device_latency is not None:
            points[DEVICE_LATENCY.name].append((attributes, app.device_latency))
        for name, seconds in app.total_percentiles.items():
            points[INFERENCE_LATENCY_PERCENTILE.name].append(
                ({**attributes, LATENCY_PERCENTILE: name}, seconds)
            )
        for name, seconds in app.device_percentiles.items():
            points[DEVICE_LATENCY_PERCENTILE.name].append(({**attributes, LATENCY_PERCENTILE: name}, seconds))

    def _add_last_counts(self, points: dict[str, list[Point]], app: AppWindow, attributes: Attrs) -> None:
        self._add_points(points, replace(app, total_percentiles={}, device_percentiles={}), attributes)


class BridgeMemoryUsed(BridgeGroup):
    report_key = MEMORY_USED
    instruments = (*SECTION_INSTRUMENTS[MEMORY_USED], APPLICATION_ERROR)

    def _add_points(self, points: dict[str, list[Point]], app: AppWindow, attributes: Attrs) -> None:
        memory: MemoryUsed = app.body
        points[RUNTIME_MEMORY.name] += [
            ({**attributes, MEMORY_LOCATION: "host"}, memory.runtime.host),
            ({**attributes, MEMORY_LOCATION: "neuron_device"}, memory.runtime.neuron_device),
        ]
        for category, amount in memory.host_breakdown.items():
            points[HOST_MEMORY_BY_CATEGORY.name].append(({**attributes, MEMORY_CATEGORY: category}, amount))
        for core in sorted(memory.core_breakdown):
            for category, amount in memory.core_breakdown[core].items():
                points[CORE_MEMORY_BY_CATEGORY.name].append(
                    ({**attributes, CORE_INDEX: core, MEMORY_CATEGORY: category}, amount)
                )
        for model in memory.loaded_models:
            if model.model_id is not None:
                self._add_model(points, model, model.model_id, attributes)

    @staticmethod
    def _add_model(
        points: dict[str, list[Point]], model: LoadedModel, model_id: int, attributes: Attrs
    ) -> None:
        identity = {**attributes, MODEL_NAME: model.name, MODEL_UUID: model.uuid, MODEL_ID: model_id}
        points[MODEL_RUNNING.name].append((identity, 1 if model.is_running else 0))
        if model.memory is not None:
            points[MODEL_MEMORY.name] += [
                ({**identity, MEMORY_LOCATION: "host"}, model.memory.host),
                ({**identity, MEMORY_LOCATION: "neuron_device"}, model.memory.neuron_device),
            ]
        for subgraph in model.subgraphs:
            if subgraph.neuroncore_index is None or subgraph.neuron_device_index is None:
                continue
            placed = {
                **attributes,
                MODEL_ID: model_id,
                MODEL_NAME: model.name,
                SUBGRAPH_NAME: subgraph.name,
                CORE_INDEX: subgraph.neuroncore_index,
                DEVICE_INDEX: subgraph.neuron_device_index,
            }
            host, device = {**placed, MEMORY_LOCATION: "host"}, {**placed, MEMORY_LOCATION: "neuron_device"}
            points[SUBGRAPH_MEMORY.name] += [
                (host, subgraph.memory.host),
                (device, subgraph.memory.neuron_device),
            ]
            by_category = points[SUBGRAPH_MEMORY_BY_CATEGORY.name]
            for category, amount in subgraph.host_breakdown.items():
                by_category.append(({**host, MEMORY_CATEGORY: category}, amount))
            for category, amount in subgraph.device_breakdown.items():
                by_category.append(({**device, MEMORY_CATEGORY: category}, amount))


class BridgeRuntimeVcpuUsage(BridgeGroup):
    report_key = RUNTIME_VCPU_USAGE
    instruments = (*SECTION_INSTRUMENTS[RUNTIME_VCPU_USAGE], APPLICATION_ERROR)

    def _add_points(self, points: dict[str, list[Point]], app: AppWindow, attributes: Attrs) -> None:
        for mode, percentage in (("user", app.vcpu_user), ("system", app.vcpu_system)):
            if percentage is not None:
                points[RUNTIME_CPU.name].append(({**attributes, CPU_MODE: mode}, fraction(percentage)))


class BridgeHwCounters(BridgeGroup):
    report_key = HW_COUNTERS
    instruments = (*SECTION_INSTRUMENTS[HW_COUNTERS], APPLICATION_ERROR)

    def _add_points(self, points: dict[str, list[Point]], app: AppWindow, attributes: Attrs) -> None:
        for device in sorted(app.ecc):
            for kind, count in app.ecc[device].items():
                points[ECC_ERRORS.name].append(
                    ({**attributes, DEVICE_INDEX: device, HW_ERROR_TYPE: kind}, count)
                )

    _add_last_counts = _add_points


BRIDGE_GROUP_TYPES: dict[str, type[BridgeGroup]] = {
    cls.report_key: cls
    for cls in (
        BridgeNeuronCoreCounters,
        BridgeInferenceStats,
        BridgeMemoryUsed,
        BridgeRuntimeVcpuUsage,
        BridgeHwCounters,
        BridgeHardwareInfo,
    )
}


def create_bridge_groups(
    runtime_index: int,
    address: str,
    group_types: Sequence[str],
    deadline_s: float,
    *,
    registry: BridgeRegistry,
    periods: dict[str, float] | None = None,
    hardware_info: bool = False,
    system_groups: Sequence[str] = (),
) -> list[MetricGroup]:
    """The requested groups of one configured runtime whose address is `neuron-monitor:` or `stdin:`.

    `registry` holds the running sources (the pipeline's, shared by every configured runtime);
    `periods` (group type -> seconds) sets the periods written into a generated neuron-monitor
    config (default: deadline_s / 0.8).
    `hardware_info` adds a neuron_hardware_info group unless the source already has one (the
    stream's root object, once per source). `system_groups` (vcpu_usage, memory_info: those the
    monitor does not compute from /proc) adds, once per source, a group passing the stream's own
    through (`BridgeSystemGroup`). Raises ValueError for a bad address or an unknown group type.
    Groups sharing a source share one neuron-monitor process (or stdin); `close()` on the last
    group stops it.
    """
    unknown = [name for name in group_types if name not in BRIDGE_GROUP_TYPES]
    if unknown:
        raise ValueError(
            f"neuron-monitor does not provide the group {unknown[0]!r}"
            f" (known: {', '.join(BRIDGE_GROUP_TYPES)})"
        )
    parsed = parse_bridge_address(address)  # fail before subscribing anything
    names = list(dict.fromkeys(group_types))
    if hardware_info and NEURON_HARDWARE_INFO not in names:
        if not registry.bridge_for(parsed).has_subscriber(NEURON_HARDWARE_INFO):
            names.append(NEURON_HARDWARE_INFO)
    fallback = deadline_s / 0.8 if deadline_s > 0 else 1.0
    groups: list[MetricGroup] = []
    for name in names:
        period = (periods or {}).get(name, fallback)
        groups.append(BRIDGE_GROUP_TYPES[name](runtime_index, address, period, registry))
    bridge = registry.bridge_for(parsed)
    for name in dict.fromkeys(system_groups):
        if name not in STREAM_SYSTEM_GROUP_TYPES:
            raise ValueError(f"a neuron-monitor stream has no system group {name!r}")
        if not bridge.has_subscriber(name):
            groups.append(STREAM_SYSTEM_GROUP_TYPES[name](address, fallback, registry))
    return groups
