"""The five runtime groups, fed by AWS's neuron-monitor instead of a runtime endpoint.

    groups = create_bridge_groups(0, "neuron-monitor:/opt/aws/neuron/bin/neuron-monitor",
                                  ["neuroncore_counters", "inference_stats"], deadline_s=0.8)

Each group has the report key, the OpenTelemetry instruments and the JSON rendering of its
counterpart in `otel_neuron.groups.runtime`, so OTLP, Prometheus and the JSON report see the
same metrics whichever way the numbers came in. The points are built from what arrived from
neuron-monitor since the group's previous sample (`neuron_monitor_bridge.BridgeWindow`):

- neuroncore_counters: utilization time-weighted over the fresh upstream periods (the latest
  value when none arrived); loaded models from the latest report; 2.x `flops` and
  `effective_flops` as two extra gauges;
- inference_stats: the sums of neuron-monitor's per-period counts (2.x `model` errors included
  as error.type "model"); the latency percentiles as a synthesized histogram (see
  `sources.percentile_histogram`) merged over the fresh upstream periods;
- memory_used: the latest body per matching runtime, summed; 2.x usage_breakdown categories as
  two extra gauges; a loaded model without a valid model_id, or a subgraph without valid
  NeuronCore and device indexes, cannot be named in the report and is left out;
- neuron_runtime_vcpu_usage: user/system time-weighted per runtime, summed over runtimes;
- hw_counters: ECC events summed per device and kind (2.x `sram_ecc_corrected` included).

When several neuron-monitor runtimes feed one configured runtime (a 2.x tag_filter matching
several processes) their numbers are combined into one runtime, as the 1.x report has one entry
per configured runtime.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from otel_neuron.groups import runtime as runtime_groups
from otel_neuron.groups.base import MetricGroup, Point, PointsByMetric
from otel_neuron.semconv import (
    CORE_EFFECTIVE_FLOPS,
    CORE_FLOPS,
    CORE_INDEX,
    CORE_MEMORY_BY_CATEGORY,
    CORE_SUBGRAPHS,
    CORE_UTILIZATION,
    CPU_MODE,
    DEVICE_INDEX,
    DEVICE_LATENCY,
    ECC_ERRORS,
    ECC_KINDS_V1,
    ERROR_TYPE,
    ERROR_TYPES,
    HOST_MEMORY_BY_CATEGORY,
    HW_COUNTERS,
    HW_ERROR_TYPE,
    INFERENCE_COUNT,
    INFERENCE_ERRORS,
    INFERENCE_LATENCY,
    INFERENCE_STATS,
    MEMORY_CATEGORY,
    MEMORY_LOCATION,
    MEMORY_USED,
    MODEL_ID,
    MODEL_MEMORY,
    MODEL_NAME,
    MODEL_RUNNING,
    MODEL_UUID,
    NEURONCORE_COUNTERS,
    OUTCOME,
    OUTCOMES,
    RUNTIME_CPU,
    RUNTIME_MEMORY,
    RUNTIME_VCPU_USAGE,
    SUBGRAPH_MEMORY,
    SUBGRAPH_NAME,
)
from otel_neuron.sources.neuron_monitor_bridge import (
    DEFAULT_REGISTRY,
    BridgeRegistry,
    BridgeWindow,
    parse_bridge_address,
)


class BridgeGroup(MetricGroup):
    """A runtime group whose numbers come from a neuron-monitor stream."""

    def __init__(
        self, runtime_index: int, address: str, period: float, registry: BridgeRegistry = DEFAULT_REGISTRY
    ) -> None:
        super().__init__(runtime_index)
        self.address = parse_bridge_address(address)
        self.bridge = registry.bridge_for(self.address)
        self._subscription = self.bridge.subscribe(self.report_key, self.address, period)
        self._period = period
        self._base = self.base_attributes()

    def runtime_error(self) -> str:
        status = self.bridge.status
        return status if status and self.bridge.last_report_time is not None else ""

    source_can_finish = True

    def source_finished(self) -> bool:
        return self.bridge.finished.is_set()

    def _take_baseline(self) -> None:
        self.bridge.start()

    def _sample_points(self, period: float) -> PointsByMetric:
        # Allow a slow neuron-monitor (its own period may be longer than ours) three periods.
        window = self.bridge.window(self._subscription, max_age=max(3 * self._period, 10.0))
        return self._points(window)

    def _points(self, window: BridgeWindow) -> PointsByMetric:
        raise NotImplementedError

    def _attrs(self, **attributes: Any) -> dict[str, Any]:
        return {**self._base, **attributes}

    def close(self) -> None:
        self.bridge.unsubscribe(self._subscription)


class BridgeNeuronCoreCounters(BridgeGroup):
    report_key = NEURONCORE_COUNTERS
    instruments = (CORE_UTILIZATION, CORE_SUBGRAPHS, CORE_FLOPS, CORE_EFFECTIVE_FLOPS)
    render = staticmethod(runtime_groups.NeuronCoreCountersGroup.render)

    def _points(self, window: BridgeWindow) -> PointsByMetric:
        utilization: list[Point] = []
        subgraphs: dict[tuple[int, str, str], int] = {}
        flops: list[Point] = []
        effective: list[Point] = []
        for index in sorted(window.cores):
            core = window.cores[index]
            attributes = self._attrs(**{CORE_INDEX: index})
            if core.utilization is not None:
                utilization.append((attributes, min(max(core.utilization / 100.0, 0.0), 1.0)))
            for loaded in core.loaded_models:
                model, _, subgraph = loaded.partition(":")
                subgraphs[(index, model, subgraph)] = subgraphs.get((index, model, subgraph), 0) + 1
            if core.flops is not None:
                flops.append((attributes, core.flops))
            if core.effective_flops is not None:
                effective.append((attributes, core.effective_flops))
        return {
            CORE_UTILIZATION.name: utilization,
            CORE_SUBGRAPHS.name: [
                (self._attrs(**{CORE_INDEX: core, MODEL_NAME: model, SUBGRAPH_NAME: subgraph}), count)
                for (core, model, subgraph), count in sorted(subgraphs.items())
            ],
            CORE_FLOPS.name: flops,
            CORE_EFFECTIVE_FLOPS.name: effective,
        }


class BridgeInferenceStats(BridgeGroup):
    report_key = INFERENCE_STATS
    instruments = (INFERENCE_COUNT, INFERENCE_ERRORS, INFERENCE_LATENCY, DEVICE_LATENCY)
    render = staticmethod(runtime_groups.InferenceStatsGroup.render)

    def _points(self, window: BridgeWindow) -> PointsByMetric:
        outcomes = {name: 0 for name in OUTCOMES}
        outcomes.update(window.outcomes)
        errors = {name: 0 for name in ERROR_TYPES}
        errors.update(window.errors)
        base = self._attrs()
        return {
            INFERENCE_COUNT.name: [
                (self._attrs(**{OUTCOME: name}), count) for name, count in outcomes.items()
            ],
            INFERENCE_ERRORS.name: [
                (self._attrs(**{ERROR_TYPE: name}), count) for name, count in errors.items()
            ],
            INFERENCE_LATENCY.name: [(base, window.total_latency)]
            if window.total_latency is not None
            else [],
            DEVICE_LATENCY.name: [(base, window.device_latency)] if window.device_latency is not None else [],
        }


class BridgeMemoryUsed(BridgeGroup):
    report_key = MEMORY_USED
    instruments = (
        RUNTIME_MEMORY,
        MODEL_MEMORY,
        MODEL_RUNNING,
        SUBGRAPH_MEMORY,
        HOST_MEMORY_BY_CATEGORY,
        CORE_MEMORY_BY_CATEGORY,
    )
    render = staticmethod(runtime_groups.MemoryUsedGroup.render)

    def _points(self, window: BridgeWindow) -> PointsByMetric:
        host = device = 0
        models: list[Point] = []
        running: list[Point] = []
        subgraphs: list[Point] = []
        host_categories: dict[str, int] = {}
        core_categories: dict[tuple[int, str], int] = {}
        for memory in window.memory:
            host += memory.runtime.host
            device += memory.runtime.neuron_device
            for category, amount in memory.host_breakdown.items():
                host_categories[category] = host_categories.get(category, 0) + amount
            for core, categories in memory.core_breakdown.items():
                for category, amount in categories.items():
                    core_categories[(core, category)] = core_categories.get((core, category), 0) + amount
            for model in memory.loaded_models:
                if model.model_id is None:
                    continue
                identity = {MODEL_NAME: model.name, MODEL_UUID: model.uuid, MODEL_ID: model.model_id}
                running.append((self._attrs(**identity), 1 if model.is_running else 0))
                models.append((self._attrs(**identity, **{MEMORY_LOCATION: "host"}), model.memory.host))
                models.append(
                    (
                        self._attrs(**identity, **{MEMORY_LOCATION: "neuron_device"}),
                        model.memory.neuron_device,
                    )
                )
                for subgraph in model.subgraphs:
                    if subgraph.neuroncore_index is None or subgraph.neuron_device_index is None:
                        continue
                    placed = {
                        MODEL_ID: model.model_id,
                        MODEL_NAME: model.name,
                        SUBGRAPH_NAME: subgraph.name,
                        CORE_INDEX: subgraph.neuroncore_index,
                        DEVICE_INDEX: subgraph.neuron_device_index,
                    }
                    subgraphs.append(
                        (self._attrs(**placed, **{MEMORY_LOCATION: "host"}), subgraph.memory.host)
                    )
                    subgraphs.append(
                        (
                            self._attrs(**placed, **{MEMORY_LOCATION: "neuron_device"}),
                            subgraph.memory.neuron_device,
                        )
                    )
        return {
            RUNTIME_MEMORY.name: [
                (self._attrs(**{MEMORY_LOCATION: "host"}), host),
                (self._attrs(**{MEMORY_LOCATION: "neuron_device"}), device),
            ],
            MODEL_MEMORY.name: models,
            MODEL_RUNNING.name: running,
            SUBGRAPH_MEMORY.name: subgraphs,
            HOST_MEMORY_BY_CATEGORY.name: [
                (self._attrs(**{MEMORY_CATEGORY: category}), amount)
                for category, amount in sorted(host_categories.items())
            ],
            CORE_MEMORY_BY_CATEGORY.name: [
                (self._attrs(**{CORE_INDEX: core, MEMORY_CATEGORY: category}), amount)
                for (core, category), amount in sorted(core_categories.items())
            ],
        }


class BridgeRuntimeVcpuUsage(BridgeGroup):
    report_key = RUNTIME_VCPU_USAGE
    instruments = (RUNTIME_CPU,)
    render = staticmethod(runtime_groups.RuntimeVcpuUsageGroup.render)

    def _points(self, window: BridgeWindow) -> PointsByMetric:
        if window.vcpu_user is None or window.vcpu_system is None:
            return {RUNTIME_CPU.name: []}
        return {
            RUNTIME_CPU.name: [
                (self._attrs(**{CPU_MODE: "user"}), min(max(window.vcpu_user / 100.0, 0.0), 1.0)),
                (self._attrs(**{CPU_MODE: "system"}), min(max(window.vcpu_system / 100.0, 0.0), 1.0)),
            ]
        }


class BridgeHwCounters(BridgeGroup):
    report_key = HW_COUNTERS
    instruments = (ECC_ERRORS,)
    render = staticmethod(runtime_groups.HwCountersGroup.render)

    def _points(self, window: BridgeWindow) -> PointsByMetric:
        points: list[Point] = []
        for device in sorted(window.ecc):
            counts = {kind: 0 for kind in ECC_KINDS_V1}
            counts.update(window.ecc[device])
            for kind, count in counts.items():
                points.append((self._attrs(**{DEVICE_INDEX: device, HW_ERROR_TYPE: kind}), count))
        return {ECC_ERRORS.name: points}


BRIDGE_GROUP_TYPES: dict[str, type[BridgeGroup]] = {
    cls.report_key: cls
    for cls in (
        BridgeNeuronCoreCounters,
        BridgeInferenceStats,
        BridgeMemoryUsed,
        BridgeRuntimeVcpuUsage,
        BridgeHwCounters,
    )
}


def create_bridge_groups(
    runtime_index: int,
    address: str,
    group_types: Sequence[str],
    deadline_s: float,
    periods: dict[str, float] | None = None,
    registry: BridgeRegistry = DEFAULT_REGISTRY,
) -> list[MetricGroup]:
    """The requested groups of one configured runtime whose address is `neuron-monitor:` or `stdin:`.

    Same call as `groups.runtime.create_runtime_groups`; `periods` (group type -> seconds) sets
    the periods written into a generated neuron-monitor config (default: deadline_s / 0.8).
    Raises ValueError for a bad address or an unknown group type. Groups sharing a source share
    one neuron-monitor process (or stdin); `close()` on the last group stops it.
    """
    unknown = [name for name in group_types if name not in BRIDGE_GROUP_TYPES]
    if unknown:
        raise ValueError(
            f"neuron-monitor does not provide the group {unknown[0]!r}"
            f" (known: {', '.join(BRIDGE_GROUP_TYPES)})"
        )
    parse_bridge_address(address)  # fail before subscribing anything
    fallback = deadline_s / 0.8 if deadline_s > 0 else 1.0
    groups: list[MetricGroup] = []
    for name in dict.fromkeys(group_types):
        period = (periods or {}).get(name, fallback)
        groups.append(BRIDGE_GROUP_TYPES[name](runtime_index, address, period, registry))
    return groups
