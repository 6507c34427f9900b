"""MetricsData -> the guide's JSON report, and the exporter that streams it to stdout.

`report_from_metrics` is pure: it reads only the OpenTelemetry data (the groups' instruments,
the health metrics and the resource) and returns the part of the report that data covers.
`ReportJsonExporter` keeps the standing report, merges each update into it (groups that
were not due keep their last values) and writes one complete JSON document per line.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import IO, Any

import orjson
from opentelemetry.sdk.metrics import Histogram
from opentelemetry.sdk.metrics.export import (
    ExponentialHistogramDataPoint,
    MetricExporter,
    MetricExportResult,
    MetricsData,
)
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation

from otel_neuron.exporters.section_memo import SectionMemo
from otel_neuron.exporters.temporality import DELTA_PREFERRED
from otel_neuron.groups.base import (
    GROUP,
    RUNTIME_INDEX,
    Attributes,
    HistogramDelta,
    Point,
    PointColumns,
    derived_from,
    values_of,
)
from otel_neuron.groups.registry import group_classes, metric_names_by_key
from otel_neuron.histogram import SCALE
from otel_neuron.producer import ERROR_MESSAGE, GROUP_ERROR, GROUP_PERIOD, RUNTIME_ERROR, PointBlocks
from otel_neuron.sources.instance import facts_from_resource

Report = dict[str, Any]
_Section = tuple[str, Any]  # (report key, runtime index or None for system groups)


def report_from_metrics(metrics_data: MetricsData, memo: SectionMemo | None = None) -> Report:
    """The report sections present in `metrics_data`, in the guide's format. With a `memo`, a section
    of a group whose sections repeat, with the points of its last rendering, gets that rendering again
    (see section_memo)."""
    points = _SectionPoints()
    periods: dict[_Section, float] = {}
    errors: dict[_Section, str] = {}
    runtime_errors: dict[int, str] = {}
    instance: dict[str, str] = {}
    for resource_metrics in metrics_data.resource_metrics:
        instance = _instance_data(resource_metrics.resource.attributes, memo)
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                name = metric.name
                if name == GROUP_PERIOD.name:
                    for attributes, value in _pairs(metric.data.data_points):
                        periods[(str(attributes[GROUP]), attributes.get(RUNTIME_INDEX))] = float(value)  # type: ignore[arg-type]
                elif name == GROUP_ERROR.name:
                    for attributes, _ in _pairs(metric.data.data_points):
                        where = (str(attributes[GROUP]), attributes.get(RUNTIME_INDEX))
                        errors[where] = str(attributes.get(ERROR_MESSAGE, ""))
                elif name == RUNTIME_ERROR.name:
                    for attributes, _ in _pairs(metric.data.data_points):
                        index = attributes.get(RUNTIME_INDEX)
                        runtime_errors[int(index)] = str(attributes.get(ERROR_MESSAGE, ""))  # type: ignore[arg-type]
                else:
                    points.file(name, _blocks(metric.data.data_points))

    report: Report = {"neuron_runtime_data": [], "system_data": {}, "instance_data": instance}
    runtimes: dict[int, Report] = {}
    classes, names = group_classes(), metric_names_by_key()
    for section, period in periods.items():
        key, index = section
        error = errors.get(section, "")
        group_class = classes.get(key)
        if group_class is None:
            body = {"period": round(period, 9), "error": error or f"no renderer for group {key!r}"}
        elif error:
            body = {"period": round(period, 9), "error": error}
        else:
            own = points.of(names[key], index)
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
                entry = runtimes[index] = _runtime_entry(index, runtime_errors.get(index, ""))
            entry["report"][key] = body
    report["neuron_runtime_data"] = [runtimes[index] for index in sorted(runtimes)]
    return report


def _instance_data(attributes: Mapping[str, object], memo: SectionMemo | None) -> dict[str, str]:
    if memo is None:
        return facts_from_resource(attributes).as_report()
    return memo.derived("instance_data", attributes, lambda: facts_from_resource(attributes).as_report())


def _runtime_entry(index: int, error: str) -> Report:
    return {"neuron_runtime_index": index, "error": error, "report": {}}


class _SectionPoints:
    """The points of each runtime index (None: the system groups) and metric, kept as the blocks
    they came in.

    Our producer adds one block per group and instrument, so a section's metric usually is one
    block, handed to the renderer as it is: no copy, and its columns stay readable in C passes.
    """

    def __init__(self) -> None:
        self._blocks: dict[Any, dict[str, list[Sequence[Point]]]] = {}

    def file(self, name: str, blocks: Iterable[Sequence[Point]]) -> None:
        """File each block of metric `name` under its runtime index; a block from one group is filed whole."""
        for block in blocks:
            index = _runtime_index_of(block)
            if index is not _SEVERAL:
                self._add(index, name, block)
            elif block:
                self._file_by_point(name, block)

    def _file_by_point(self, name: str, block: Sequence[Point]) -> None:
        by_index: dict[Any, list[Point]] = {}
        for attributes, value in block:
            by_index.setdefault(attributes.get(RUNTIME_INDEX), []).append((attributes, value))
        for index, points in by_index.items():
            self._add(index, name, points)

    def _add(self, index: Any, name: str, block: Sequence[Point]) -> None:
        by_name = self._blocks.get(index)
        if by_name is None:
            self._blocks[index] = {name: [block]}
        elif name in by_name:
            by_name[name].append(block)
        else:
            by_name[name] = [block]

    def of(self, names: Iterable[str], index: Any) -> dict[str, Sequence[Point]]:
        """The points of `names` in the section of runtime `index` (None: the system groups)."""
        by_name = self._blocks.get(index, {})
        own: dict[str, Sequence[Point]] = {}
        for name in names:
            blocks = by_name.get(name)
            if blocks is None:
                own[name] = []
            elif len(blocks) == 1:
                own[name] = blocks[0]
            else:
                own[name] = [point for block in blocks for point in block]
        return own


_SEVERAL = object()  # a block whose points belong to several runtimes (or none: an empty block)


def _runtime_index_of(block: Sequence[Point]) -> Any:
    """The runtime index every point of `block` has (None: a system group's), or _SEVERAL."""
    # type() rather than isinstance(): these are Sequence ABCs, whose isinstance check costs more.
    if type(block) is PointColumns:
        indexes = derived_from(block.attributes, _runtime_indexes)
    elif len(block) == 1:  # most blocks: a group's period, error, latency... one point each
        return block[0][0].get(RUNTIME_INDEX)
    else:
        indexes = _runtime_indexes([point[0] for point in block])
    if len(indexes) == 1:
        (index,) = indexes
        return index
    return _SEVERAL


def _runtime_indexes(attributes: Sequence[Attributes]) -> frozenset[Any]:
    return frozenset(values_of(RUNTIME_INDEX, attributes))


def _blocks(data_points: Any) -> Iterable[Sequence[Point]]:
    """The points in blocks (one per group and instrument from our producer; one in all otherwise)."""
    if type(data_points) is PointBlocks:
        return data_points.blocks()
    return [list(_pairs(data_points))]


def _pairs(data_points: Any) -> Iterable[Point]:
    """(attributes, value) of each point; the producer's blocks hand them over without building objects."""
    if type(data_points) is PointBlocks:
        return data_points.pairs()
    return (((point.attributes or {}), _value_of(point)) for point in data_points)


def _value_of(point: Any) -> Any:
    if isinstance(point, ExponentialHistogramDataPoint):
        return HistogramDelta(
            scale=point.scale,
            zero_count=point.zero_count,
            offset=point.positive.offset,
            bucket_counts=tuple(point.positive.bucket_counts),
            count=point.count,
            sum=point.sum,
            min=point.min,
            max=point.max,
        )
    return point.value


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


class ReportJsonExporter(MetricExporter):
    """Writes the consolidated report as one JSON document and a newline per export, then flushes.

    `transform` rewrites the report before writing (the 2.x output format); `validate`
    checks it and returns an error string, written as one line to `problems` (the report is
    still written).
    When the reader of the stream goes away the exporter marks itself `closed`.
    """

    def __init__(
        self,
        runtime_count: int,
        out: IO[str] = sys.stdout,
        validate: Callable[[Report], str] | None = None,
        transform: Callable[[Report], Report] | None = None,
        problems: IO[str] = sys.stderr,
    ) -> None:
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
        self._transform = transform
        self.report = empty_report(runtime_count)
        self._sections = SectionMemo()
        self.closed = False

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        if self.closed:
            return MetricExportResult.FAILURE
        merge_report(self.report, report_from_metrics(metrics_data, self._sections))
        document = self._transform(self.report) if self._transform else self.report  # transforms are pure
        if self._validate is not None:  # the schema describes the 1.x report, before any transform
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


_ENCODER = json.JSONEncoder(separators=(",", ":"), check_circular=False)
_LATENCY_AGGREGATION = ExponentialBucketHistogramAggregation(max_size=2048, max_scale=SCALE)
