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
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

from otel_neuron.exporters.neuron_monitor_families import (
    FAMILIES,
    HARDWARE_LABELS,
    HARDWARE_OPTIONAL_LABELS,
    INSTANCE_LABELS,
    RUNTIME_HANDLERS,
    SYSTEM_HANDLERS,
    Family,
    Handler,
    Report,
    Series,
    as_mapping,
)

_logger = logging.getLogger(__name__)

# neuron_k8s_info's pod labels, and the section holding them for each label naming a core or device.
K8S_LABELS = ("pod_name", "namespace", "container_name")
_K8S_SECTIONS = {"neuroncore": "neuroncores_k8s_info", "neuron_device_index": "neurondevices_k8s_info"}
_NOT_HELD = ("", "", "")
K8sHolders = Mapping[str, Mapping[str, tuple[str, str, str]]]  # section -> index -> pod labels


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
            facts = as_mapping(instance_info)
            self._base = {label: str(facts.get(key, "")) for label, key in INSTANCE_LABELS.items()}

    def _take_sections(
        self, application: Application | None, sections: object, handlers: Mapping[str, Handler]
    ) -> None:
        tag = application[1] if application is not None else None
        for group, body in as_mapping(sections).items():
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
        for index, holder in as_mapping(info.get(section)).items():
            holder = as_mapping(holder)
            containers = holder.get("container_name")
            names = containers if isinstance(containers, list) else [containers or ""]
            held[str(index)] = (
                str(holder.get("pod_name", "")),
                str(holder.get("namespace", "")),
                ",".join(str(name) for name in names),
            )
    return holders


__all__ = ["NeuronMonitorCompat"]
