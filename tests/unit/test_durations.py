"""Durations as the guide writes them."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from otel_neuron.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("1s", 1.0),
        ("2m", 120.0),
        ("1h", 3600.0),
        ("1.5s", 1.5),
        ("250ms", 0.25),
        (" 5s ", 5.0),
    ],
)
def test_good_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0s", '"0s" must be longer than zero'),
        ("0ms", '"0ms" must be longer than zero'),
        ("-1s", '"-1s" is not a duration like "500ms", "2s", "1m", "1h"'),
        ("5", '"5" is not a duration like "500ms", "2s", "1m", "1h"'),
        ("2x", '"2x" is not a duration like "500ms", "2s", "1m", "1h"'),
        ("", '"" is not a duration like "500ms", "2s", "1m", "1h"'),
        ("1 d", '"1 d" is not a duration like "500ms", "2s", "1m", "1h"'),
        ("1 s", '"1 s" is not a duration like "500ms", "2s", "1m", "1h"'),
        ("1e3s", '"1e3s" is not a duration like "500ms", "2s", "1m", "1h"'),
        ("s", '"s" is not a duration like "500ms", "2s", "1m", "1h"'),
        ("1" * 400 + "h", f'"{"1" * 36}... is too long'),  # quoted, cut short to stay one readable line
    ],
)
def test_bad_durations_are_rejected_with_the_value_quoted(text: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_duration(text)
    assert str(caught.value) == message


@pytest.mark.parametrize("seconds", [0.5, 0.25, 1.0, 1.5, 2.0, 60.0, 90.0, 3600.0, 7200.0])
def test_format_duration_reads_back_to_the_same_seconds(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds)


@given(st.text(max_size=30))
def test_any_text_is_a_positive_finite_duration_or_a_value_error(text: str) -> None:
    try:
        seconds = parse_duration(text)
    except ValueError:
        return
    assert seconds > 0 and math.isfinite(seconds)
