"""AWS's neuron-monitor-prometheus.py, ported: neuron-monitor 2.x reports -> that script's series.

`NeuronMonitorCompat` is a prometheus_client collector fed with 2.x reports (`ingest`). It reads
each report as the script does and exports exactly the script's families and labels, so dashboards
written for it keep working:

- Every series has the base labels `instance_name, instance_id, instance_type, availability_zone,
  region, subnet_id` from the root `instance_info`; an application's series add `runtime_tag`, the
  entry's `neuron_runtime_tag`.
- The handlers of the script, one per group name (`FAMILIES` lists what each exports): runtime
  groups `neuroncore_counters`, `neuron_runtime_vcpu_usage`, `memory_used`, `execution_stats`;
  system groups `neuron_hw_counters`, `vcpu_usage`, `memory_info`. Other groups are ignored, as the
  script ignores them. Ratios are the report's percentages / 100.
- `neuroncore_memory_usage_*` carry `memory_location="None"`: the script sets that label to Python's
  None before exporting these families, and dashboards match the literal string.
- `instance_info` and `neuron_hardware_info` are Info series (value 1).
- With `neuron_k8s_info` in the report (--kubernetes), the series of a NeuronCore (`neuroncore`) or
  a device (`neuron_device_index`) add `pod_name`, `namespace`, `container_name` (the names of the
  list, comma-joined) of its holder, empty when none holds it: the labels of AWS's script with
  `--enable-k8s-info` (Neuron 2.23 and later).

Where the script has no answer, or a crash, this port chooses:

- A group whose `error` is not empty, and every group of an entry whose `error` is not empty, keeps
  its previous values (the script skips them). A freshly taken group replaces all the gauges it
  gave before (a NeuronCore no longer in use, a percentile no longer reported, disappear).
- An application absent from the latest report loses all its series, gauges and counters (Neuron
  2.25's behaviour). System series (ECC totals included) are never cleared.
- Counters add each section once: a section body that is the very object already taken (a standing
  report carries over the sections of groups that were not due) is not added again. Negative or
  non-numeric values, and a missing field, are skipped where the script would raise.
- Instance labels follow the latest `instance_info` (the script freezes the first: ours may still be
  looking up instance metadata then); `neuron_hardware_info` follows the latest error-free one and
  adds `neuron_device_memory_size` when the report has it (as AWS's later script versions do).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, NamedTuple

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

from otel_neuron.semconv import (
    CORE_MEMORY_CATEGORIES,
    ECC_KINDS,
    EXECUTION_STATS,
    MEMORY_INFO,
    MEMORY_LOCATIONS,
    MEMORY_USED,
    NEURON_HW_COUNTERS,
    NEURONCORE_COUNTERS,
    RUNTIME_CPU_MODES,
    RUNTIME_VCPU_USAGE,
    VCPU_USAGE,
)

_logger = logging.getLogger(__name__)

Report = Mapping[str, Any]


class Family(NamedTuple):
    """One exported family: its help text (the script's), whether it is a counter, the labels it adds
    to the base ones, and whether it is an application's (then `runtime_tag` comes first)."""

    help: str
    counter: bool
    labels: tuple[str, ...]
    per_application: bool


def _gauge(help_text: str, *labels: str, per_application: bool = True) -> Family:
    return Family(help_text, False, labels, per_application)


def _counter(help_text: str, *labels: str, per_application: bool = True) -> Family:
    return Family(help_text, True, labels, per_application)


# Counter families are named without `_total`: the exposition adds `_total` and `_created`.
FAMILIES: Mapping[str, Family] = {
    "neuroncore_utilization_ratio": _gauge("NeuronCore utilization ratio", "neuroncore"),
    "neuron_runtime_vcpu_usage_ratio": _gauge("Runtime vCPU utilization ratio", "usage_type"),
    "neuron_runtime_memory_used_bytes": _gauge("Runtime memory used bytes", "memory_location"),
    **{
        f"neuroncore_memory_usage_{category}": _gauge(
            f"NeuronCore memory utilization for {category}", "memory_location", "neuroncore"
        )
        for category in CORE_MEMORY_CATEGORIES
    },
    "execution_errors": _counter("Execution errors total", "error_type"),
    "execution_status": _counter("Execution status total", "status_type"),
    "execution_latency_seconds": _gauge("Execution latency in seconds", "percentile"),
    "hardware_ecc_events": _counter(
        "Hardware ecc events total", "event_type", "neuron_device_index", per_application=False
    ),
    "system_vcpu_count": _gauge("System vCPU count", per_application=False),
    "system_vcpu_usage_ratio": _gauge("System CPU utilization ratio", "usage_type", per_application=False),
    **{
        f"system_{kind}_{stat}": _gauge(f"System {kind} {stat} bytes", per_application=False)
        for kind in ("memory", "swap")
        for stat in ("total_bytes", "used_bytes")
    },
}

# The root instance_info fields the script reads, by the label each becomes.
INSTANCE_LABELS = {
    "instance_name": "instance_name",
    "instance_id": "instance_id",
    "instance_type": "instance_type",
    "availability_zone": "instance_availability_zone",
    "region": "instance_region",
    "subnet_id": "subnet_id",
}
# neuron_hardware_info's fields exported as labels; the memory size only when the report has it.
HARDWARE_LABELS = ("neuron_device_count", "neuroncore_per_device_count")
HARDWARE_OPTIONAL_LABELS = ("neuron_device_memory_size",)

# neuron_k8s_info's pod labels, and the section holding them for each label naming a core or device.
K8S_LABELS = ("pod_name", "namespace", "container_name")
_K8S_SECTIONS = {"neuroncore": "neuroncores_k8s_info", "neuron_device_index": "neurondevices_k8s_info"}
_NOT_HELD = ("", "", "")
K8sHolders = Mapping[str, Mapping[str, tuple[str, str, str]]]  # section -> index -> pod labels

# The script's literal label value: `labels['memory_location'] = None`, formatted by prometheus_client.
NO_MEMORY_LOCATION = "None"
# system_vcpu_usage_ratio's usage types and the average_usage modes each adds up (capped at 100 %).
_VCPU_AGGREGATION = {"user": ("user", "nice"), "system": ("system", "io_wait", "irq", "soft_irq")}


class Series(NamedTuple):
    family: str
    labels: tuple[str, ...]  # the values of the family's own labels, in its order
    value: float


class Reading(NamedTuple):
    """What one group's section gives: gauges as they stand, counter increments of its period."""

    gauges: list[Series]
    increments: list[Series]


# --------------------------------------------------------------------------- the script's handlers


def read_neuroncore_counters(body: Mapping[str, Any]) -> Reading:
    gauges = []
    for core, data in _mapping(body.get("neuroncores_in_use")).items():
        index, value = _index(core), _number(_mapping(data).get("neuroncore_utilization"))
        if index is not None and value is not None:
            gauges.append(Series("neuroncore_utilization_ratio", (index,), value / 100.0))
    return Reading(gauges, [])


def read_runtime_vcpu_usage(body: Mapping[str, Any]) -> Reading:
    usage = _mapping(body.get("vcpu_usage"))
    gauges = [
        Series("neuron_runtime_vcpu_usage_ratio", (mode,), value / 100.0)
        for mode in RUNTIME_CPU_MODES
        if (value := _number(usage.get(mode))) is not None
    ]
    return Reading(gauges, [])


def read_memory_used(body: Mapping[str, Any]) -> Reading:
    used = _mapping(body.get("neuron_runtime_used_bytes"))
    gauges = [
        Series("neuron_runtime_memory_used_bytes", (location,), value)
        for location in MEMORY_LOCATIONS
        if (value := _number(used.get(location))) is not None
    ]
    cores = _mapping(_mapping(used.get("usage_breakdown")).get("neuroncore_memory_usage"))
    for category in CORE_MEMORY_CATEGORIES:
        for core, categories in cores.items():
            index, value = _index(core), _number(_mapping(categories).get(category))
            if index is not None and value is not None:
                family = f"neuroncore_memory_usage_{category}"
                gauges.append(Series(family, (NO_MEMORY_LOCATION, index), value))
    return Reading(gauges, [])


def read_execution_stats(body: Mapping[str, Any]) -> Reading:
    increments = [
        Series("execution_errors", (str(error_type),), count)
        for error_type, value in _mapping(body.get("error_summary")).items()
        if (count := _count(value)) is not None
    ]
    increments += [
        Series("execution_status", (str(outcome),), count)
        for outcome, value in _mapping(body.get("execution_summary")).items()
        if (count := _count(value)) is not None
    ]
    total = _mapping(_mapping(body.get("latency_stats")).get("total_latency"))  # null: no execution
    gauges = [
        Series("execution_latency_seconds", (str(percentile),), seconds)
        for percentile, value in total.items()
        if (seconds := _number(value)) is not None
    ]
    return Reading(gauges, increments)


def read_neuron_hw_counters(body: Mapping[str, Any]) -> Reading:
    increments = []
    devices = body.get("neuron_devices")
    for device in devices if isinstance(devices, list) else []:
        device = _mapping(device)
        index = _index(device.get("neuron_device_index"))
        if index is None:
            continue
        for kind in ECC_KINDS:
            count = _count(device.get(kind))
            if count is not None:
                increments.append(Series("hardware_ecc_events", (kind, index), count))
    return Reading([], increments)


def read_vcpu_usage(body: Mapping[str, Any]) -> Reading:
    gauges = []
    usage_data = body.get("usage_data")
    if isinstance(usage_data, (Mapping, list)):
        gauges.append(Series("system_vcpu_count", (), float(len(usage_data))))
    average = _mapping(body.get("average_usage"))
    if average:
        for usage_type, modes in _VCPU_AGGREGATION.items():
            value = min(sum(_number(average.get(mode)) or 0.0 for mode in modes), 100.0)
            gauges.append(Series("system_vcpu_usage_ratio", (usage_type,), value / 100.0))
    return Reading(gauges, [])


def read_memory_info(body: Mapping[str, Any]) -> Reading:
    gauges = [
        Series(f"system_{kind}_{stat}", (), value)
        for kind in ("memory", "swap")
        for stat in ("total_bytes", "used_bytes")
        if (value := _number(body.get(f"{kind}_{stat}"))) is not None
    ]
    return Reading(gauges, [])


Handler = Callable[[Mapping[str, Any]], Reading]
# By level: the script looks handlers up by name alone, but no report has a runtime group among the
# system ones or the reverse, and a family keeps one label set.
RUNTIME_HANDLERS: Mapping[str, Handler] = {
    NEURONCORE_COUNTERS: read_neuroncore_counters,
    RUNTIME_VCPU_USAGE: read_runtime_vcpu_usage,
    MEMORY_USED: read_memory_used,
    EXECUTION_STATS: read_execution_stats,
}
SYSTEM_HANDLERS: Mapping[str, Handler] = {
    NEURON_HW_COUNTERS: read_neuron_hw_counters,
    VCPU_USAGE: read_vcpu_usage,
    MEMORY_INFO: read_memory_info,
}


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _number(value: object) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def _count(value: object) -> float | None:
    """A counter increment: a number >= 0 (prometheus_client's Counter.inc refuses others)."""
    number = _number(value)
    return number if number is not None and number >= 0 else None


def _index(value: object) -> str | None:
    """A NeuronCore or device index as the script labels it (`int(key)`), or None if it is not one."""
    if isinstance(value, bool):
        return None
    try:
        return str(int(value))  # type: ignore[call-overload]
    except (TypeError, ValueError, OverflowError):
        return None


# --------------------------------------------------------------------------- the script's state

Application = tuple[str, str]  # (pid, neuron_runtime_tag) of a report entry
SectionKey = tuple["Application | None", str]  # (application, or None for system_data; group name)
CounterKey = tuple[str, tuple[str, ...]]  # (family, its own label values)


class NeuronMonitorCompat(Collector):
    """The series neuron-monitor-prometheus.py would export after the 2.x reports given to `ingest`
    (see the module docstring for where it differs)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._base: dict[str, str] | None = None  # instance labels; None until a report came
        self._hardware: dict[str, str] | None = None
        self._k8s: K8sHolders | None = None  # the latest neuron_k8s_info; None: no --kubernetes
        self._taken: dict[SectionKey, object] = {}  # the body last taken of each section
        self._gauges: dict[SectionKey, list[Series]] = {}
        # Counter totals and their creation times, by runtime tag (None: the system's).
        self._totals: dict[str | None, dict[CounterKey, float]] = {}
        self._created: dict[str | None, dict[CounterKey, float]] = {}

    def ingest(self, report: Report) -> None:
        """Take one 2.x report, as the script takes a line of neuron-monitor's output."""
        with self._lock:
            self._take_instance(report.get("instance_info"))
            live: set[Application] = set()
            entries = report.get("neuron_runtime_data")
            for entry in entries if isinstance(entries, list) else []:
                if not isinstance(entry, Mapping):
                    continue
                application = (str(entry.get("pid", "")), str(entry.get("neuron_runtime_tag", "")))
                live.add(application)
                error = entry.get("error", "")
                if error != "":
                    _logger.debug("runtime %s error: %s", application[1], error)
                    continue
                self._take_sections(application, entry.get("report"), RUNTIME_HANDLERS)
            self._take_sections(None, report.get("system_data"), SYSTEM_HANDLERS)
            self._forget_departed(live)
            self._take_hardware(report.get("neuron_hardware_info"))
            self._k8s = _k8s_holders(report.get("neuron_k8s_info"))

    def _take_instance(self, instance_info: object) -> None:
        if isinstance(instance_info, Mapping) or self._base is None:
            facts = _mapping(instance_info)
            self._base = {label: str(facts.get(key, "")) for label, key in INSTANCE_LABELS.items()}

    def _take_sections(
        self, application: Application | None, sections: object, handlers: Mapping[str, Handler]
    ) -> None:
        tag = application[1] if application is not None else None
        for group, body in _mapping(sections).items():
            handler = handlers.get(group)
            if handler is None or not isinstance(body, Mapping):
                continue
            if body.get("error", "") != "":
                _logger.debug("group %s of runtime %s error: %s", group, tag, body["error"])
                continue
            key = (application, group)
            if self._taken.get(key) is body:  # carried over from a report already taken
                continue
            self._taken[key] = body
            reading = handler(body)
            self._gauges[key] = reading.gauges
            if reading.increments:
                self._add(tag, reading.increments)

    def _add(self, tag: str | None, increments: list[Series]) -> None:
        totals = self._totals.setdefault(tag, {})
        created = self._created.setdefault(tag, {})
        now = self._clock()
        for family, labels, value in increments:
            key = (family, labels)
            totals[key] = totals.get(key, 0.0) + value
            created.setdefault(key, now)

    def _forget_departed(self, live: set[Application]) -> None:
        """Drop every series of an application the report no longer lists."""
        for key in [key for key in self._gauges if key[0] is not None and key[0] not in live]:
            del self._gauges[key]
            del self._taken[key]
        tags = {tag for _, tag in live}
        for tag in [tag for tag in self._totals if tag is not None and tag not in tags]:
            del self._totals[tag]
            del self._created[tag]

    def _take_hardware(self, hardware: object) -> None:
        if not isinstance(hardware, Mapping) or hardware.get("error", "") != "":
            return
        if any(hardware.get(key) is None for key in HARDWARE_LABELS):
            return
        present = [key for key in (*HARDWARE_LABELS, *HARDWARE_OPTIONAL_LABELS) if key in hardware]
        self._hardware = {key: str(hardware[key]) for key in present}

    def collect(self) -> Iterator[Any]:
        with self._lock:
            if self._base is None:
                return iter(())
            base = dict(self._base)
            gauges = list(self._gauges.items())
            totals = {tag: dict(series) for tag, series in self._totals.items()}
            created = {tag: dict(series) for tag, series in self._created.items()}
            hardware = dict(self._hardware) if self._hardware is not None else None
            k8s = self._k8s  # replaced whole by each report, never changed
        families = _Families(base, k8s)
        for (application, _), series in gauges:
            tag = application[1] if application is not None else None
            for family, labels, value in series:
                families.add(family, tag, labels, value)
        for tag, by_key in totals.items():
            for (family, labels), value in by_key.items():
                families.add(family, tag, labels, value, created[tag][(family, labels)])
        return iter(families.render(hardware))


class _Families:
    """The families of one scrape. A gauge two applications of one tag both give is served once, the
    later value winning, as a prometheus_client child set twice (their counters already add up)."""

    def __init__(self, base: Mapping[str, str], k8s: K8sHolders | None = None) -> None:
        self._base = base
        self._k8s = k8s
        self._values: dict[str, dict[tuple[str, ...], tuple[float, float | None]]] = {}

    def add(
        self,
        family: str,
        tag: str | None,
        labels: tuple[str, ...],
        value: float,
        created: float | None = None,
    ) -> None:
        owner = (tag,) if tag is not None else ()
        self._values.setdefault(family, {})[owner + labels] = (value, created)

    def render(self, hardware: Mapping[str, str] | None) -> list[Any]:
        base_names, base_values = list(self._base), list(self._base.values())
        rendered: list[Any] = []
        for name, spec in FAMILIES.items():
            series = self._values.get(name)
            if not series:
                continue
            names = [*base_names, *(("runtime_tag",) if spec.per_application else ()), *spec.labels]
            pods = self._pods_of(spec)
            if pods is not None:
                names += K8S_LABELS
            if spec.counter:
                counter = CounterMetricFamily(name, spec.help, labels=names)
                for labels, (value, created) in series.items():
                    counter.add_metric([*base_values, *labels, *pods(labels)], value, created=created)
                rendered.append(counter)
            else:
                gauge = GaugeMetricFamily(name, spec.help, labels=names)
                for labels, (value, _) in series.items():
                    gauge.add_metric([*base_values, *labels, *pods(labels)], value)
                rendered.append(gauge)
        instance = InfoMetricFamily("instance", "EC2 instance information")
        instance.add_metric([], dict(self._base))
        rendered.append(instance)
        if hardware is not None:
            info = InfoMetricFamily("neuron_hardware", "Neuron Hardware Information")
            info.add_metric([], {**hardware, **self._base})
            rendered.append(info)
        return rendered

    def _pods_of(self, spec: Family) -> Callable[[tuple[str, ...]], tuple[str, ...]]:
        """The pod label values of a series of `spec` from its own labels: none without
        neuron_k8s_info or for a family of neither a NeuronCore nor a device."""
        label = next((label for label in spec.labels if label in _K8S_SECTIONS), None)
        if self._k8s is None or label is None:
            return _no_pod
        holders = self._k8s.get(_K8S_SECTIONS[label], {})
        position = (1 if spec.per_application else 0) + spec.labels.index(label)
        return lambda labels: holders.get(labels[position], _NOT_HELD)


def _no_pod(labels: tuple[str, ...]) -> tuple[str, ...]:
    return ()


def _k8s_holders(info: object) -> K8sHolders | None:
    """neuron_k8s_info's holders as label values by section and index (None when absent)."""
    if not isinstance(info, Mapping):
        return None
    holders: dict[str, dict[str, tuple[str, str, str]]] = {}
    for section in _K8S_SECTIONS.values():
        held = holders[section] = {}
        for index, holder in _mapping(info.get(section)).items():
            holder = _mapping(holder)
            containers = holder.get("container_name")
            names = containers if isinstance(containers, list) else [containers or ""]
            held[str(index)] = (
                str(holder.get("pod_name", "")),
                str(holder.get("namespace", "")),
                ",".join(str(name) for name in names),
            )
    return holders


__all__ = ["FAMILIES", "NeuronMonitorCompat", "Reading", "Series"]
