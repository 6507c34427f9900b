"""The exposition rendered once per collection is prometheus_client's, byte for byte, for any families."""

from __future__ import annotations

import gzip
import math
import tracemalloc
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeHistogramMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    StateSetMetricFamily,
    SummaryMetricFamily,
    UnknownMetricFamily,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.utils import floatToGoString

from otel_neuron.exporters.exposition import MAX_KEPT, Exposition, FamiliesCollector, go_floats

# What Prometheus 2 and 3 ask for, the text format, and requests left to prometheus_client's encoder.
ACCEPTS = [
    None,
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
    "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,text/plain;version=0.0.4;q=0.2",
    "text/plain;version=1.0.0;escaping=allow-utf-8",
    "text/plain;version=1.0.0;escaping=dots",
    "application/openmetrics-text;version=1.0.0;escaping=values",
    "application/openmetrics-text;version=2.0.0",
]

# Mostly plain names (rendered here), sometimes one prometheus_client's encoder must render.
names = st.one_of(
    st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True),
    st.sampled_from(["ratio:per_core", "dotted.name", "über"]),
)
plain_names = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True)
texts = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**62), max_value=2**62),
    st.sampled_from([0.0, -0.0, 1e6, 999999.99, 1234567.5, 1e16, 1e22, 1e-7, 0.1]),
)
counts = st.integers(min_value=0, max_value=10**9)


@st.composite
def families(draw: Any) -> list[Any]:
    # Label names starting with "__" are reserved to Prometheus; no attribute becomes one.
    label_names = draw(
        st.lists(names.filter(lambda name: not name.startswith("__")), max_size=3, unique=True)
    )
    made: list[Any] = []
    for kind in draw(st.lists(st.sampled_from(range(8)), min_size=1, max_size=5)):
        name = draw(plain_names) + str(len(made))
        help_text = draw(texts)
        rows = draw(
            st.lists(st.lists(texts, min_size=len(label_names), max_size=len(label_names)), max_size=3)
        )
        if kind == 0:
            family: Any = GaugeMetricFamily(
                name, help_text, labels=label_names, unit=draw(st.sampled_from(["", "bytes"]))
            )
            for row in rows:
                family.add_metric(row, draw(values))
        elif kind == 1:
            family = CounterMetricFamily(name, help_text, labels=label_names)
            for row in rows:
                created = draw(st.one_of(st.none(), st.floats(min_value=0, max_value=2e9)))
                family.add_metric(row, draw(counts), created=created)
        elif kind == 2:
            family = HistogramMetricFamily(name, help_text, labels=label_names, unit="seconds")
            for row in rows:
                first = draw(st.sampled_from(["0.0", "-1.0", "0.5"]))
                family.add_metric(row, [(first, 1), ("2.0", 3), ("+Inf", 4)], draw(values))
        elif kind == 3:
            family = InfoMetricFamily(name, help_text, labels=label_names)
            for row in rows:
                family.add_metric(row, {"version": draw(texts)})
        elif kind == 4:
            family = SummaryMetricFamily(name, help_text, labels=label_names)
            for row in rows:
                family.add_metric(row, draw(counts), draw(values))
        elif kind == 5:
            family = UnknownMetricFamily(name, help_text, labels=label_names)
            for row in rows:
                family.add_metric(row, draw(values))
        elif kind == 6:
            family = StateSetMetricFamily(name, help_text, labels=label_names)
            for row in rows:
                family.add_metric(row, {"on": draw(st.booleans()), "off": draw(st.booleans())})
        else:
            family = GaugeHistogramMetricFamily(name, help_text, labels=label_names)
            for row in rows:
                family.add_metric(row, [("1.0", 2), ("+Inf", 3)], draw(values))
        made.append(family)
    return made


@settings(max_examples=300, deadline=None)
@given(families())
def test_every_format_is_what_prometheus_client_renders(made: list[Any]) -> None:
    exposition = Exposition.of(made)
    for accept in ACCEPTS:
        encoder, content_type = choose_encoder(accept or "")
        expected = encoder(FamiliesCollector(made))
        for _ in range(2):  # made once, then kept
            headers, body = exposition.answer(accept, None)
            assert headers == [("Content-Type", content_type)]
            assert body == expected, accept
        headers, zipped = exposition.answer(accept, "gzip")
        assert headers == [("Content-Type", content_type), ("Content-Encoding", "gzip")]
        assert gzip.decompress(zipped) == expected


def test_no_families_answer_an_empty_exposition() -> None:
    exposition = Exposition.of([])
    assert exposition.answer(None, None)[1] == b""
    assert exposition.answer("application/openmetrics-text", None)[1] == b"# EOF\n"


@given(st.lists(values, max_size=20))
def test_numbers_are_written_as_floattogostring_writes_them(numbers: list[float]) -> None:
    assert go_floats(numbers) == [floatToGoString(number) for number in numbers]


def test_numbers_go_writes_otherwise_than_python() -> None:
    numbers = [math.inf, -math.inf, math.nan, 1234567.0, 12345678.9, 1e22, -1234567.5, 0.5, 7]
    assert go_floats(numbers) == [
        "+Inf",
        "-Inf",
        "NaN",
        "1.234567e+06",
        "1.23456789e+07",
        "1e+22",
        "-1234567.5",
        "0.5",
        "7.0",
    ]


# Distinct OpenMetrics versions asked of one collection.
ASKED = 64


def test_a_collection_keeps_a_bounded_number_of_answers_whatever_clients_ask() -> None:
    """The content type comes from the client (any OpenMetrics version): answers are right for every
    one, and what one collection holds does not grow with the number of versions asked."""
    assert ASKED >= 4 * MAX_KEPT
    gauge = GaugeMetricFamily("value", "a value", labels=["n"])
    for n in range(500):
        gauge.add_metric([str(n)], n / 7)
    exposition = Exposition.of([gauge])
    size = len(exposition.answer(None, None)[1])
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for minor in range(ASKED):
            accept = f"application/openmetrics-text;version=1.{minor}.0"
            encoder, _ = choose_encoder(accept)
            assert exposition.answer(accept, None)[1] == encoder(FamiliesCollector([gauge]))
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held < ASKED // 2 * size  # half of what keeping each answer would hold
