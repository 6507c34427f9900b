"""The guide's (neuron-monitor 1.x) report, rendered from MetricsData, and how updates merge into it.

`report_from_metrics` is pure: it reads only the OpenTelemetry data (the groups' points, the health
metrics and the resource) and returns the part of the report that data covers, each section drawn
by its renderer in `report.section_table.SECTIONS_V1`. The report has one entry per configured
runtime: the points of several applications under one runtime index are folded into one runtime
first (`report.fold`). `merge_report` folds such an update into the standing report.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opentelemetry.sdk.metrics.export import MetricsData

from otel_neuron.exporters.section_memo import SectionMemo
from otel_neuron.report.fold import fold_applications
from otel_neuron.report.instance import instance_facts
from otel_neuron.report.routing import read_metrics
from otel_neuron.report.section_table import SECTIONS_V1, metrics_read

Report = dict[str, Any]

_READ = metrics_read(SECTIONS_V1)  # metrics no 1.x section reads are not even filed


def report_from_metrics(metrics_data: MetricsData, memo: SectionMemo | None = None) -> Report:
    """The report sections present in `metrics_data`, in the guide's format. With a `memo`, a section
    that repeats (`SectionRenderer.repeats`), with the points of its last rendering, gets that
    rendering again (see section_memo)."""
    collection = read_metrics(metrics_data, _READ)
    points, health = collection.points, collection.health
    report: Report = {
        "neuron_runtime_data": [],
        "system_data": {},
        "instance_data": _instance_data(collection.resource, memo),
    }
    runtimes: dict[int, Report] = {}
    for section, period in health.periods.items():
        key, index = section
        error = health.errors.get(section, "")
        renderer = SECTIONS_V1.get(key)
        if renderer is None:
            body = {"period": round(period, 9), "error": error or f"no renderer for group {key!r}"}
        elif error:
            body = {"period": round(period, 9), "error": error}
        else:
            own = points.of(renderer.metric_names, index)
            if len(points.applications(renderer.metric_names, index)) > 1:
                own = fold_applications(own)
            if memo is not None and renderer.repeats:
                rendered = memo.render(section, renderer.render, own)
            else:
                rendered = renderer.render(own)
            body = {"period": round(period, 9), **rendered, "error": error}
        if index is None:
            report["system_data"][key] = body
        else:
            entry = runtimes.get(index)
            if entry is None:
                entry = runtimes[index] = _runtime_entry(index, health.runtime_errors.get(index, ""))
            entry["report"][key] = body
    report["neuron_runtime_data"] = [runtimes[index] for index in sorted(runtimes)]
    return report


def _instance_data(attributes: Mapping[str, object], memo: SectionMemo | None) -> dict[str, str]:
    if memo is None:
        return instance_facts(attributes)
    return memo.derived("instance_data", attributes, lambda: instance_facts(attributes))


def _runtime_entry(index: int, error: str) -> Report:
    return {"neuron_runtime_index": index, "error": error, "report": {}}


def empty_report(runtime_count: int) -> Report:
    """The report before any collection: one entry per configured runtime."""
    return {
        "neuron_runtime_data": [_runtime_entry(index, "") for index in range(runtime_count)],
        "system_data": {},
        "instance_data": {},
    }


def merge_report(standing: Report, update: Report) -> None:
    """Fold `update` into `standing` in place; sections absent from the update keep their values."""
    entries = {entry["neuron_runtime_index"]: entry for entry in standing["neuron_runtime_data"]}
    for entry in update["neuron_runtime_data"]:
        target = entries.get(entry["neuron_runtime_index"])
        if target is None:
            target = entries[entry["neuron_runtime_index"]] = _runtime_entry(
                entry["neuron_runtime_index"], ""
            )
            standing["neuron_runtime_data"].append(target)
        target["error"] = entry["error"]
        target["report"].update(entry["report"])
    standing["system_data"].update(update["system_data"])
    if update["instance_data"]:
        standing["instance_data"] = update["instance_data"]
