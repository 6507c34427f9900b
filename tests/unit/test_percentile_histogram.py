"""neuron-monitor's latency percentiles carried as an exponential histogram."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otel_neuron.histogram import merge_histograms, percentiles
from otel_neuron.sources.percentile_histogram import histogram_from_percentiles

GIVEN = {"p0": 0.011, "p1": 0.0111, "p25": 0.012, "p50": 0.013, "p75": 0.014, "p99": 0.018, "p100": 0.02}


@pytest.mark.parametrize("count", [100, 123, 1000, 10**7])
def test_the_reports_percentiles_come_back_within_one_percent(count: int) -> None:
    histogram = histogram_from_percentiles(GIVEN, count)
    assert histogram is not None
    assert histogram.count == count
    assert histogram.min == GIVEN["p0"] and histogram.max == GIVEN["p100"]
    back = percentiles(histogram)
    assert back["p0"] == GIVEN["p0"] and back["p100"] == GIVEN["p100"]
    for name, value in GIVEN.items():
        assert back[name] == pytest.approx(value, rel=0.01), name
    assert GIVEN["p0"] * count <= histogram.sum <= GIVEN["p100"] * count


def test_nothing_executed_gives_no_histogram() -> None:
    assert histogram_from_percentiles(GIVEN, 0) is None
    assert histogram_from_percentiles({}, 10) is None


def test_zero_latencies_go_to_the_zero_bucket() -> None:
    histogram = histogram_from_percentiles({"p0": 0.0, "p50": 0.0, "p100": 1.0}, 10)
    assert histogram is not None
    assert histogram.zero_count == 5 and sum(histogram.bucket_counts) == 5


def test_merging_two_periods_adds_counts_and_keeps_extremes() -> None:
    first = histogram_from_percentiles(GIVEN, 100)
    second = histogram_from_percentiles({"p0": 0.5, "p50": 0.6, "p100": 0.7}, 50)
    merged = merge_histograms(first, second)
    assert merged is not None
    assert merged.count == 150 and sum(merged.bucket_counts) + merged.zero_count == 150
    assert (merged.min, merged.max) == (0.011, 0.7)
    assert merge_histograms(None, first) is first


finite = st.floats(min_value=0.0, max_value=1e4, allow_nan=False)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(list(GIVEN)), finite, min_size=1), st.integers(1, 10**6))
def test_fuzz_any_summary_gives_a_consistent_histogram(given_: dict[str, float], count: int) -> None:
    histogram = histogram_from_percentiles(given_, count)
    assert histogram is not None
    assert histogram.zero_count + sum(histogram.bucket_counts) == count
    assert all(bucket >= 0 for bucket in histogram.bucket_counts)
    assert histogram.min <= histogram.max
