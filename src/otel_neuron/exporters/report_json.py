"""MetricsData -> the guide's JSON report, and the exporter that streams it (or the 2.x one) to stdout.

`report_from_metrics` is pure: it reads only the OpenTelemetry data (the groups' instruments,
the health metrics and the resource) and returns the part of the report that data covers.
The 1.x report has one entry per configured runtime: the points of several applications under one
runtime index are folded into one runtime first (`report.fold`). `ReportJsonExporter` keeps the
standing report, merges each update into it (groups that were not due keep their last values) and
writes one complete JSON document per line.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Mapping
from typing import IO, Any

import orjson
from opentelemetry.sdk.metrics import Histogram
from opentelemetry.sdk.metrics.export import MetricExportResult, MetricsData
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation

from otel_neuron.exporters.section_memo import SectionMemo
from otel_neuron.exporters.temporality import DELTA_PREFERRED, DeclaredTemporalityExporter
from otel_neuron.groups.registry import group_classes, metric_names_by_key
from otel_neuron.histogram import SCALE
from otel_neuron.report.fold import fold_applications
from otel_neuron.report.instance import instance_facts
from otel_neuron.report.routing import read_metrics
from otel_neuron.report.v2 import ENTRY_SECTIONS, SectionRenderer, StandingReportV2

Report = dict[str, Any]
OUTPUT_FORMATS = ("1", "2")  # neuron-monitor 1.x (the guide's) and 2.x


def report_from_metrics(metrics_data: MetricsData, memo: SectionMemo | None = None) -> Report:
    """The report sections present in `metrics_data`, in the guide's format. With a `memo`, a section
    of a group whose sections repeat, with the points of its last rendering, gets that rendering again
    (see section_memo)."""
    collection = read_metrics(metrics_data)
    points, health = collection.points, collection.health
    report: Report = {
        "neuron_runtime_data": [],
        "system_data": {},
        "instance_data": _instance_data(collection.resource, memo),
    }
    runtimes: dict[int, Report] = {}
    classes, names = group_classes(), metric_names_by_key()
    for section, period in health.periods.items():
        key, index = section
        error = health.errors.get(section, "")
        group_class = classes.get(key)
        if group_class is None:
            body = {"period": round(period, 9), "error": error or f"no renderer for group {key!r}"}
        elif error:
            body = {"period": round(period, 9), "error": error}
        else:
            own = points.of(names[key], index)
            if len(points.applications(names[key], index)) > 1:
                own = fold_applications(own)
            if memo is not None and group_class.sections_repeat:
                rendered = memo.render(section, group_class.render, own)
            else:
                rendered = group_class.render(own)
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


class ReportJsonExporter(DeclaredTemporalityExporter):
    """Writes the consolidated report as one JSON document and a newline per export, then flushes.

    `output_format` "1" writes the guide's report (`report` holds it), "2" neuron-monitor 2.x's
    (`report.v2.StandingReportV2`). `validate` checks the 1.x report (the schema describes it; with
    "2" it is then kept too) and returns an error string, written as one line to `problems` (the
    report is still written).
    When the reader of the stream goes away the exporter marks itself `closed`.
    """

    def __init__(
        self,
        runtime_count: int,
        out: IO[str] = sys.stdout,
        validate: Callable[[Report], str] | None = None,
        output_format: str = "1",
        problems: IO[str] = sys.stderr,
    ) -> None:
        if output_format not in OUTPUT_FORMATS:
            raise ValueError(f"output format {output_format!r} is not one of {', '.join(OUTPUT_FORMATS)}")
        super().__init__(
            # Per-period counts, as the guide's report shows them (gauges and amounts as they stand).
            preferred_temporality=DELTA_PREFERRED,
            # In-app the latency comes from SDK Histograms; percentiles need the recorder's buckets.
            preferred_aggregation={Histogram: _LATENCY_AGGREGATION},
        )
        self._out = out
        self._bytes_out = _byte_stream_under(out)
        self._validate = validate
        self._problems = problems
        self.report = empty_report(runtime_count)
        self._sections = SectionMemo()
        self._v2 = StandingReportV2(_other_sections()) if output_format == "2" else None
        self.closed = False

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        if self.closed:
            return MetricExportResult.FAILURE
        if self._v2 is None or self._validate is not None:
            merge_report(self.report, report_from_metrics(metrics_data, self._sections))
        document = self.report if self._v2 is None else self._v2.update(metrics_data)
        if self._validate is not None:
            problem = self._validate(self.report)
            if problem:  # asked for explicitly, so said whatever the verbosity; the report still goes out
                print(
                    f"otel-neuron-monitor: report does not match the schema: {problem}",
                    file=self._problems,
                    flush=True,
                )
        try:
            if self._bytes_out is not None:  # the line as orjson made it: no text copy to decode and encode
                self._out.flush()  # whatever was written to the text layer goes first
                self._bytes_out.write(encode_line_bytes(document))
                self._bytes_out.flush()
            else:
                self._out.write(encode_line(document))
                self._out.flush()
        except (BrokenPipeError, ValueError):  # ValueError: the stream was closed under us
            self.closed = True
            return MetricExportResult.FAILURE
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self.closed = True


def encode_line(report: Report) -> str:
    """The report as one compact ASCII JSON line (see encode_line_bytes)."""
    return encode_line_bytes(report).decode("ascii")


def encode_line_bytes(report: Report) -> bytes:
    """The report as one compact ASCII JSON line. orjson writes the trn2-scale report in a tenth of
    the standard library's time (70 vs 790 us); both print floats as shortest round-trip decimals,
    orjson tiny ones without an exponent (0.00001, not 1e-05). A report holding other than ASCII (an
    error naming a path like /tmp/café) is escaped as before, so any stdout encoding can take it."""
    try:
        line = orjson.dumps(report, option=orjson.OPT_APPEND_NEWLINE)
    except TypeError:  # a value orjson does not take (an int over 64 bits)
        return (_ENCODER.encode(report) + "\n").encode("ascii")
    return line if line.isascii() else (_ENCODER.encode(report) + "\n").encode("ascii")


_ASCII = "".join(map(chr, range(128)))


def _byte_stream_under(out: IO[str]) -> IO[bytes] | None:
    """The binary stream of a text stream that writes ASCII as is (stdout, a file, a pipe: UTF-8 and
    its kin, newlines untranslated), where a report line can go as bytes; None otherwise."""
    stream, encoding = getattr(out, "buffer", None), getattr(out, "encoding", None)
    if stream is None or not isinstance(encoding, str) or os.linesep != "\n":
        return None
    try:
        return stream if _ASCII.encode(encoding) == _ASCII.encode("ascii") else None  # type: ignore[no-any-return]
    except LookupError:
        return None


def _other_sections() -> dict[str, SectionRenderer]:
    """The renderers of the groups the 2.x report has no section of its own for (otel-neuron's sysfs
    groups neuron_power and neuroncore_status): their group classes' own."""
    classes, names = group_classes(), metric_names_by_key()
    return {
        key: SectionRenderer(names[key], cls.render, cls.sections_repeat)
        for key, cls in classes.items()
        if key not in ENTRY_SECTIONS
    }


_ENCODER = json.JSONEncoder(separators=(",", ":"), check_circular=False)
_LATENCY_AGGREGATION = ExponentialBucketHistogramAggregation(max_size=2048, max_scale=SCALE)
