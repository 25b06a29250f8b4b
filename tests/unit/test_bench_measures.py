"""The bench's arithmetic: percentiles, rates and ratios."""

from __future__ import annotations

import pytest

from bench.measures import (
    latency_summary,
    percentile,
    rate,
    ratio,
    spread_summary,
    sustained_rate,
)


def test_percentile_interpolates_between_closest_ranks():
    values = [1.0, 2.0, 3.0, 4.0]
    assert percentile(values, 0) == 1.0
    assert percentile(values, 50) == 2.5
    assert percentile(values, 100) == 4.0
    assert percentile(values, 25) == pytest.approx(1.75)


def test_percentile_ignores_input_order():
    assert percentile([9.0, 1.0, 5.0], 50) == percentile([1.0, 5.0, 9.0], 50) == 5.0


def test_percentile_of_one_value_is_that_value():
    assert percentile([0.25], 99) == 0.25


@pytest.mark.parametrize("q", [-1, 100.5])
def test_percentile_outside_0_to_100_is_refused(q):
    with pytest.raises(ValueError, match=r"0\.\.100"):
        percentile([1.0], q)


def test_percentile_of_nothing_is_an_error_not_zero():
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)


def test_latency_summary_reports_milliseconds():
    summary = latency_summary([i / 1000 for i in range(1, 101)])  # 1 .. 100 ms
    assert summary["n"] == 100
    assert summary["p50_ms"] == pytest.approx(50.5)
    assert summary["p99_ms"] == pytest.approx(99.0, abs=0.1)
    assert summary["max_ms"] == 100.0
    assert summary["mean_ms"] == pytest.approx(50.5)


def test_latency_summary_of_nothing_says_so():
    assert latency_summary([]) == {"n": 0}


def test_rate_over_no_time_is_refused():
    assert rate(10, 2.0) == 5.0
    with pytest.raises(ValueError):
        rate(10, 0)


@pytest.mark.parametrize(
    ("measured", "ceiling", "expected"),
    [(50.0, 200.0, 0.25), (300.0, 200.0, 1.5), (1.0, 3.0, 0.333)],
)
def test_ratio_is_measured_over_ceiling(measured, ceiling, expected):
    assert ratio(measured, ceiling) == expected


@pytest.mark.parametrize(("measured", "ceiling"), [(None, 1.0), (1.0, None), (1.0, 0.0)])
def test_ratio_without_a_usable_ceiling_is_none(measured, ceiling):
    assert ratio(measured, ceiling) is None


def test_sustained_rate_leaves_the_start_up_out():
    # 10 s of nothing while the process starts, then 100 items/s for 5 s.
    samples = [(0.0, 0), (10.0, 0), (10.5, 50), (15.5, 550)]
    assert sustained_rate(samples) == pytest.approx(100.0)


def test_sustained_rate_needs_two_samples_with_progress():
    with pytest.raises(ValueError):
        sustained_rate([(0.0, 0), (1.0, 10)])


def test_spread_summary_is_the_median_and_the_range_of_the_runs():
    assert spread_summary([3.0, 1.0, 2.0, 10.0, 2.5]) == {
        "n": 5,
        "median": 2.5,
        "min": 1.0,
        "max": 10.0,
    }
    assert spread_summary([0.12345], ndigits=2) == {
        "n": 1,
        "median": 0.12,
        "min": 0.12,
        "max": 0.12,
    }


def test_spread_summary_of_nothing_is_an_error_not_zero():
    with pytest.raises(ValueError):
        spread_summary([])
