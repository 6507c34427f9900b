"""The report's JSON line: what any JSON reader gets back, whichever encoder wrote it."""

from __future__ import annotations

import copy
import json

from guide_example import GUIDE_REPORT

from otel_neuron.exporters.report_json import encode_line


def test_the_guides_report_comes_back_as_it_went_in_on_one_compact_line() -> None:
    line = encode_line(GUIDE_REPORT)
    assert line.endswith("\n") and line.count("\n") == 1
    assert json.loads(line) == GUIDE_REPORT
    assert line == json.dumps(GUIDE_REPORT, separators=(",", ":")) + "\n"  # key order, spacing, numbers


def test_tiny_and_huge_floats_read_back_exactly() -> None:
    report = {"latency": [1e-05, 3.2e-07, 0.000123, 1e16, 0.30000000000000004, -0.0]}
    assert json.loads(encode_line(report)) == report


def test_a_value_orjson_refuses_still_makes_a_line() -> None:
    report = copy.deepcopy(GUIDE_REPORT)
    report["system_data"]["vcpu_usage"]["context_switch_count"] = 2**70  # over 64 bits
    assert json.loads(encode_line(report)) == report


def test_a_report_with_other_than_ascii_is_escaped_as_the_standard_library_does() -> None:
    report = copy.deepcopy(GUIDE_REPORT)
    report["neuron_runtime_data"][0]["error"] = "cannot connect to unix:/tmp/café/rt.sock: no such file"
    line = encode_line(report)
    assert line.isascii() and "caf\\u00e9" in line
    assert json.loads(line) == report
