"""The report in neuron-monitor 2.x's format (`--output-format 2`), rendered from MetricsData.

    report = report_v2_from_metrics(metrics_data)   # what one MetricsData holds
    standing = StandingReportV2()                     # an exporter's: one complete report per update
    document = standing.update(metrics_data)

- `neuron_runtime_data`: one entry per application, in order of runtime index, pid, tag. An
  application is the (`process.pid`, `neuron.runtime.tag`) its points carry; the points of a runtime
  index that carry neither (sysfs, a runtime that cannot be reached) make one entry of pid 0 and tag
  str(index). Its `error` is upstream's error for the application, else the runtime's connection error.
- Groups take their 2.x names (inference_stats -> execution_stats); a group's `error` is its
  collection's error, else upstream's error for that application's group.
- `system_data`: the system groups, and `neuron_hw_counters` from the ECC points of every runtime
  (a device seen by several runtimes is taken from the lowest index); always there, maybe empty.
- `instance_info` (always) from the Resource; `neuron_hardware_info` (always) from the
  neuron_hardware_info group's points, `null` while no source gives it; `neuron_k8s_info` with
  --kubernetes (report.kubernetes).

The standing report keeps the last body of every group that was not due, as the 1.x one does; but the
applications of a runtime index are those of its latest collection: one that exited disappears with
all its sections at the next collection of its runtime's groups.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from typing import Any, NamedTuple

from opentelemetry.sdk.metrics.export import MetricsData

from otel_neuron.exporters.section_memo import SectionMemo
from otel_neuron.groups.base import PointsByMetric
from otel_neuron.report.instance import instance_facts
from otel_neuron.report.kubernetes import K8S_INFO_METRICS, render_k8s_info
from otel_neuron.report.routing import Application, Collection, read_metrics
from otel_neuron.report.section_table import (
    ENTRY_SECTIONS_V2,
    SYSTEM_SECTIONS_V2,
    SectionRenderer,
    metrics_read,
)
from otel_neuron.report.sections_v2 import ecc_devices, render_hardware_info
from otel_neuron.semconv import (
    DEVICE_CORES,
    DEVICE_INFO,
    ECC_ERRORS,
    HW_COUNTERS,
    NEURON_HARDWARE_INFO,
    NEURON_HW_COUNTERS,
    V2_RUNTIME_GROUP_NAMES,
)

Report = dict[str, Any]


# Runtime groups that 2.x reports at the system level (their ECC counts) or at the root.
ECC_GROUPS = frozenset((HW_COUNTERS, NEURON_HW_COUNTERS))
HARDWARE_NAMES = (DEVICE_INFO.name, DEVICE_CORES.name)
# Metrics no 2.x section reads are not even filed.
_READ = metrics_read(ENTRY_SECTIONS_V2, SYSTEM_SECTIONS_V2) | {
    ECC_ERRORS.name,
    *HARDWARE_NAMES,
    *K8S_INFO_METRICS,
}


def v2_key(report_key: str) -> str:
    """A group's key in the 2.x report (inference_stats is execution_stats there)."""
    return V2_RUNTIME_GROUP_NAMES.get(report_key, report_key)


class _Update(NamedTuple):
    """What one MetricsData says, in 2.x form."""

    # Per runtime index whose application groups were collected: its applications' entries, in order.
    entries: dict[int, list[tuple[Application | None, Report]]]
    system_data: Report
    instance_info: Report
    hardware_info: Report | None  # None: no source of it was collected
    k8s_info: Report | None = None  # None: no pod attribution (--kubernetes) in this MetricsData


def report_v2_from_metrics(metrics_data: MetricsData, memo: SectionMemo | None = None) -> Report:
    """The 2.x report of what `metrics_data` holds; `memo` keeps the renderings of sections that repeat."""
    update = _render(read_metrics(metrics_data, _READ), memo)
    return _document(
        [entry for index in sorted(update.entries) for _, entry in update.entries[index]],
        update.system_data,
        update.instance_info,
        update.hardware_info,
        update.k8s_info,
    )


def _document(
    entries: list[Report], system: Report, instance: Report, hardware: Report | None, k8s: Report | None
) -> Report:
    document = {
        "neuron_runtime_data": entries,
        "system_data": system,
        "instance_info": instance,
        "neuron_hardware_info": hardware,
    }
    if k8s is not None:
        document["neuron_k8s_info"] = k8s
    return document


class StandingReportV2:
    """The 2.x report as it stands after each update (see the module's docstring)."""

    def __init__(self) -> None:
        self._memo = SectionMemo()
        self._entries: dict[int, dict[Application | None, Report]] = {}
        self._system: Report = {}
        self._instance: Report = {}
        self._hardware: Report | None = None
        self._k8s: Report | None = None

    def update(self, metrics_data: MetricsData) -> Report:
        """Merge what `metrics_data` holds and return the whole report."""
        update = _render(read_metrics(metrics_data, _READ), self._memo)
        for index, entries in update.entries.items():
            self._replace_applications(index, entries)
        self._system.update(update.system_data)
        self._instance = update.instance_info
        if update.hardware_info is not None:
            self._hardware = update.hardware_info
        if update.k8s_info is not None:
            self._k8s = update.k8s_info
        return self.document()

    def document(self) -> Report:
        entries = [entry for index in sorted(self._entries) for entry in self._entries[index].values()]
        return _document(entries, self._system, self._instance, self._hardware, self._k8s)

    def _replace_applications(self, index: int, entries: list[tuple[Application | None, Report]]) -> None:
        """The applications of runtime `index` become those just collected; each keeps the sections
        of its groups that were not due."""
        before = self._entries.get(index, {})
        now: dict[Application | None, Report] = {}
        for application, entry in entries:
            kept = before.get(application)
            if kept is not None:
                entry["report"] = {**kept["report"], **entry["report"]}
            now[application] = entry
        gone = {(index, application) for application in before.keys() - now.keys()}
        if gone:
            self._memo.forget(lambda section: _section_of(section) in gone)
        self._entries[index] = now


def _section_of(memo_key: object) -> tuple[Any, Any] | None:
    """The (runtime index, application) of an application section's memo key (key, index, app)."""
    if isinstance(memo_key, tuple) and len(memo_key) == 3:
        return memo_key[1], memo_key[2]
    return None


def _render(collection: Collection, memo: SectionMemo | None) -> _Update:
    health = collection.health
    system: Report = {}
    application_groups: dict[int, list[str]] = {}
    ecc_groups: list[tuple[str, int]] = []
    hardware_groups: list[tuple[str, int]] = []
    for key, index in health.periods:
        if index is None:
            renderer = SYSTEM_SECTIONS_V2.get(key)
            system[key] = _body(collection, key, None, renderer, collection.points.of, "", memo, key)
        elif key in ECC_GROUPS:
            ecc_groups.append((key, index))
        elif key == NEURON_HARDWARE_INFO:
            hardware_groups.append((key, index))
        else:
            application_groups.setdefault(index, []).append(key)
    if ecc_groups:
        system[NEURON_HW_COUNTERS] = _hw_counters(collection, ecc_groups)
    entries = {index: _entries(collection, index, keys, memo) for index, keys in application_groups.items()}
    instance = (
        memo.derived("instance_info", collection.resource, lambda: instance_facts(collection.resource))
        if memo is not None
        else instance_facts(collection.resource)
    )
    hardware = _hardware_info(collection, hardware_groups) if hardware_groups else None
    return _Update(entries, system, instance, hardware, render_k8s_info(collection))


def _body(
    collection: Collection,
    key: str,
    index: int | None,
    renderer: SectionRenderer | None,
    points_of: Callable[[frozenset[str], Any], PointsByMetric],
    upstream_error: str,
    memo: SectionMemo | None,
    memo_key: Hashable,
) -> Report:
    """A group's section: period, what its points render to, and its error (the collection's, which
    leaves nothing to render, else upstream's)."""
    period = round(collection.health.periods[(key, index)], 9)
    error = collection.health.errors.get((key, index), "")
    if renderer is None:
        return {"period": period, "error": error or f"no renderer for group {key!r}"}
    if error:
        return {"period": period, "error": error}
    own = points_of(renderer.metric_names, index)
    if memo is not None and renderer.repeats:
        rendered = memo.render(memo_key, renderer.render, own)
    else:
        rendered = renderer.render(own)
    return {"period": period, **rendered, "error": upstream_error}


def _entries(
    collection: Collection,
    index: int,
    keys: list[str],
    memo: SectionMemo | None,
) -> list[tuple[Application | None, Report]]:
    """The entries of the applications the groups `keys` of runtime `index` just collected."""
    renderers = {key: ENTRY_SECTIONS_V2.get(key) for key in keys}
    names = frozenset().union(*(renderer.metric_names for renderer in renderers.values() if renderer))
    found = dict.fromkeys(collection.points.applications(names, index))
    found.update(dict.fromkeys(collection.health.applications_with_errors(index)))
    applications = sorted(found, key=_application_order) or [None]
    return [
        (application, _entry(collection, index, application, renderers, memo)) for application in applications
    ]


def _application_order(application: Application | None) -> tuple[int, str]:
    return application if application is not None else (-1, "")


def _entry(
    collection: Collection,
    index: int,
    application: Application | None,
    renderers: Mapping[str, SectionRenderer | None],
    memo: SectionMemo | None,
) -> Report:
    points, errors = collection.points, collection.health.application_errors

    def points_of(names: frozenset[str], where: Any) -> PointsByMetric:
        return points.of_application(names, where, application)

    report: Report = {}
    for key, renderer in renderers.items():
        upstream = errors.get((index, application, key)) or errors.get((index, application, v2_key(key)), "")
        memo_key = (key, index, application)
        report[v2_key(key)] = _body(collection, key, index, renderer, points_of, upstream, memo, memo_key)
    error = errors.get((index, application, None)) or collection.health.runtime_errors.get(index, "")
    pid, tag = application if application is not None else (0, str(index))
    return {"pid": pid, "neuron_runtime_tag": tag, "error": error, "report": report}


def _hw_counters(collection: Collection, groups: list[tuple[str, int]]) -> Report:
    """system_data.neuron_hw_counters: every runtime's ECC counts by device (several applications of
    a runtime add up; a device seen by several runtimes is taken from the lowest runtime index)."""
    health = collection.health
    groups = sorted(groups, key=lambda group: group[1])
    devices: dict[int, dict[str, int]] = {}
    for key, index in groups:
        if not health.errors.get((key, index)):
            own = collection.points.of((ECC_ERRORS.name,), index)
            for device_index, device in ecc_devices(own).items():
                devices.setdefault(device_index, device)
    error = next((health.errors[group] for group in groups if health.errors.get(group)), "")
    return {
        "period": round(health.periods[groups[0]], 9),
        "neuron_devices": [devices[device_index] for device_index in sorted(devices)],
        "error": error,
    }


def _hardware_info(collection: Collection, groups: list[tuple[str, int]]) -> Report:
    """The root neuron_hardware_info, from the lowest runtime index whose group gave device facts."""
    groups = sorted(groups, key=lambda group: group[1])
    chosen, own = groups[0], collection.points.of(HARDWARE_NAMES, groups[0][1])
    for group in groups:
        candidate = collection.points.of(HARDWARE_NAMES, group[1])
        if candidate[DEVICE_INFO.name]:
            chosen, own = group, candidate
            break
    return {**render_hardware_info(own), "error": collection.health.errors.get(chosen, "")}
