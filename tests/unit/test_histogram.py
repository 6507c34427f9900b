"""Percentile math of the exponential histograms against exact nearest-rank percentiles."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from percentiles import exact_percentile

from otel_neuron.groups.base import HistogramDelta, bucket_list
from otel_neuron.histogram import (
    PERCENTILES,
    SCALE,
    bucket_bounds,
    bucket_index,
    dense_buckets,
    percentiles,
    subtract_buckets,
)


def histogram_of(values: list[float]) -> HistogramDelta:
    counts: dict[int, int] = {}
    zero = 0
    for value in values:
        if value <= 0:
            zero += 1
        else:
            index = bucket_index(value)
            counts[index] = counts.get(index, 0) + 1
    offset, dense = dense_buckets(counts)
    return HistogramDelta(
        SCALE, zero, offset, tuple(dense), len(values), sum(values), min(values), max(values)
    )


@given(st.floats(min_value=1e-9, max_value=1e6, allow_nan=False, allow_infinity=False))
def test_a_value_falls_inside_its_bucket(value: float) -> None:
    lower, upper = bucket_bounds(bucket_index(value))
    assert lower * (1 - 1e-12) <= value <= upper * (1 + 1e-12)


@pytest.mark.parametrize("power", [-10, -1, 0, 1, 5])
def test_an_exact_power_of_two_is_the_upper_bound_of_its_bucket(power: int) -> None:
    value = 2.0**power
    assert bucket_index(value) == (power << SCALE) - 1
    assert bucket_bounds(bucket_index(value))[1] == pytest.approx(value, rel=1e-12)


latencies = st.lists(
    st.floats(min_value=1e-5, max_value=30.0, allow_nan=False, allow_infinity=False), min_size=1, max_size=400
)


@settings(max_examples=200, deadline=None)
@given(latencies)
def test_percentiles_are_within_one_percent_and_the_ends_exact(values: list[float]) -> None:
    estimated = percentiles(histogram_of(values))
    assert list(estimated) == [f"p{q}" for q in PERCENTILES]
    assert estimated["p0"] == min(values)
    assert estimated["p100"] == max(values)
    for q in PERCENTILES:
        exact = exact_percentile(values, q)
        assert abs(estimated[f"p{q}"] - exact) <= 0.01 * exact, (q, estimated[f"p{q}"], exact)


def test_percentiles_of_a_realistic_lognormal_workload() -> None:
    rng = random.Random(7)
    values = [0.01 * math.exp(rng.gauss(0, 0.4)) for _ in range(20_000)]
    estimated = percentiles(histogram_of(values))
    for q in PERCENTILES:
        exact = exact_percentile(values, q)
        assert abs(estimated[f"p{q}"] - exact) / exact < 0.0055


def test_zero_latencies_count_in_the_zero_bucket() -> None:
    estimated = percentiles(histogram_of([0.0, 0.0, 0.0, 1.0]))
    assert estimated["p50"] == 0.0 and estimated["p75"] == 0.0
    assert estimated["p99"] == pytest.approx(1.0, rel=0.01)


def test_an_empty_histogram_has_no_percentiles() -> None:
    with pytest.raises(ValueError):
        percentiles(HistogramDelta(SCALE, 0, 0, (), 0, 0.0, 0.0, 0.0))


def subtracted(
    offset: int, counts: list[int], previous_offset: int, previous: list[int]
) -> tuple[int, tuple[int, ...]] | None:
    """subtract_buckets with its array of differences as a tuple of Python ints."""
    result = subtract_buckets(offset, counts, previous_offset, previous)
    return None if result is None else (result[0], tuple(bucket_list(result[1])))


def test_subtracting_cumulative_buckets_with_different_offsets() -> None:
    assert subtracted(5, [1, 2, 3], 6, [2, 1]) == (5, (1, 0, 2))
    assert subtracted(5, [1, 2, 3], 5, [1, 2, 3]) == (0, ())
    assert subtracted(3, [0, 4], 3, []) == (4, (4,))


def test_a_bucket_going_down_is_a_reset() -> None:
    assert subtracted(5, [1, 0], 5, [1, 1]) is None
    assert subtracted(6, [1], 5, [1]) is None


def test_differences_are_read_only_and_exact_for_any_uint64_count() -> None:
    result = subtract_buckets(0, [3, 2**62], 0, [1, 0])
    assert result is not None and not result[1].flags.writeable  # a HistogramDelta's counts
    counts = bucket_list(result[1])
    assert counts == [2, 2**62] and all(type(count) is int for count in counts)
    assert subtracted(0, [2**64 - 1, 7], 0, [1, 2]) == (0, (2**64 - 2, 5))
    assert subtracted(0, [2**64 - 1, 7], 1, [2]) == (0, (2**64 - 1, 5))
    assert subtracted(0, [5], 0, [2**63]) is None  # a bucket going down, however large


def test_percentiles_are_exact_past_int64_running_counts() -> None:
    # Two buckets of 2**62 each: their running count passes int64, the ranks must not wrap.
    lower_bucket, upper_bucket = bucket_index(0.01), bucket_index(0.02)
    counts = [0] * (upper_bucket - lower_bucket + 1)
    counts[0] = counts[-1] = 2**62
    histogram = HistogramDelta(SCALE, 0, lower_bucket, tuple(counts), 2**63, 0.0, 0.0099, 0.0201)
    estimated = percentiles(histogram)
    assert estimated["p25"] == pytest.approx(0.01, rel=0.01)
    assert estimated["p75"] == pytest.approx(0.02, rel=0.01)


def naive_subtraction(
    offset: int, counts: list[int], previous_offset: int, previous: list[int]
) -> tuple[int, tuple[int, ...]] | None:
    """Bucket by bucket over the union of both ranges, trimmed of zero ends."""
    if not previous:
        previous_offset = offset
    indexes = range(min(offset, previous_offset), max(offset + len(counts), previous_offset + len(previous)))
    now = {offset + i: c for i, c in enumerate(counts)}
    before = {previous_offset + i: c for i, c in enumerate(previous)}
    differences = [now.get(index, 0) - before.get(index, 0) for index in indexes]
    if any(difference < 0 for difference in differences):
        return None
    changed = [i for i, difference in enumerate(differences) if difference]
    if not changed:
        return 0, ()
    return indexes[changed[0]], tuple(differences[changed[0] : changed[-1] + 1])


@settings(max_examples=300)
@given(
    st.integers(-5, 5),
    st.lists(st.integers(0, 3), max_size=12),
    st.integers(-5, 5),
    st.lists(st.integers(0, 3), max_size=12),
)
def test_subtraction_agrees_with_a_bucket_by_bucket_reference(
    offset: int, counts: list[int], previous_offset: int, previous: list[int]
) -> None:
    expected = naive_subtraction(offset, counts, previous_offset, previous)
    assert subtracted(offset, counts, previous_offset, previous) == expected


def test_a_count_ahead_of_its_buckets_renders_no_percentiles_rather_than_failing() -> None:
    """A snapshot taken after a runtime counted a value and before it filled the bucket: the period's
    latency is null in both report formats (it used to raise, and the tick's report was lost)."""
    from otel_neuron.report.sections_v1 import render_inference_stats
    from otel_neuron.report.sections_v2 import render_execution_stats
    from otel_neuron.semconv import INFERENCE_LATENCY

    counted_only = HistogramDelta(SCALE, 0, 0, (0, 0), 1, 0.01, 0.01, 0.01)
    points = {INFERENCE_LATENCY.name: [({}, counted_only)]}
    assert render_inference_stats(points)["latency_stats"]["total_latency"] is None
    assert render_execution_stats(points)["latency_stats"]["total_latency"] is None
