"""The exporter that streams the JSON report (1.x, the guide's, or 2.x) to stdout, one line per export.

`ReportJsonExporter` keeps the standing report, merges each update into it (groups that were not
due keep their last values) and writes one complete JSON document per line. The reports themselves
are rendered from MetricsData by `otel_neuron.report` (`report.v1`, `report.v2`).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import IO, Any

import orjson
from opentelemetry.sdk.metrics import Histogram
from opentelemetry.sdk.metrics.export import MetricExportResult, MetricsData
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation

from otel_neuron.exporters.section_memo import SectionMemo
from otel_neuron.exporters.temporality import DELTA_PREFERRED, DeclaredTemporalityExporter
from otel_neuron.histogram import SCALE
from otel_neuron.report.v1 import Report, empty_report, merge_report, report_from_metrics
from otel_neuron.report.v2 import StandingReportV2

OUTPUT_FORMATS = ("1", "2")  # neuron-monitor 1.x (the guide's) and 2.x


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
        self._v2 = StandingReportV2() if output_format == "2" else None
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
    """The report as one compact ASCII JSON line, written by orjson (docs/architecture.md, Cost: a
    tenth of the standard library's time). Both print floats as shortest round-trip decimals, orjson
    tiny ones without an exponent (0.00001, not 1e-05). A report holding other than ASCII (an error
    naming a path like /tmp/café) is escaped as before, so any stdout encoding can take it."""
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
