"""The flask bench's plan (trial order, fsyncs per event) and its rows in the summary table."""

from __future__ import annotations

import pytest

from bench.flask_plan import per_event, rotated_order
from bench.report import flask_rows, summary_rows

SPREAD = {"n": 5, "median": 1200.0, "min": 1100.0, "max": 1300.0}


def test_every_round_runs_every_arm_each_starting_one_arm_later():
    assert rotated_order(["a", "b", "c"], 3) == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]
    assert rotated_order(["a", "b"], 2) == ["a", "b", "b", "a"]
    with pytest.raises(ValueError):
        rotated_order(["a"], 0)
    with pytest.raises(ValueError):
        rotated_order(["a", "a"], 1)


def test_fsyncs_per_event_are_the_commits_over_the_accepted_events():
    assert per_event(250, 1000) == 0.25
    assert per_event(None, 1000) is None  # an API without the counter
    assert per_event(3, 0) is None
    with pytest.raises(ValueError, match="backwards"):
        per_event(-1, 10)


def test_own_api_figures_show_each_arm_with_its_spread():
    arm = {
        "accepted_per_s": SPREAD,
        "p50_ms": {"n": 5, "median": 4.0, "min": 3.0, "max": 5.0},
        "p99_ms": {"n": 5, "median": 20.0, "min": 15.0, "max": 30.0},
        "fsyncs_per_event": {"n": 5, "median": 0.25, "min": 0.2, "max": 0.3},
        "errors": {},
    }
    part = {
        "concurrency": 16,
        "accepted_per_s": 1200.0,
        "latency_201": {"n": 10, "p50_ms": 4.0, "p95_ms": 9.0, "p99_ms": 20.0},
        "errors": {},
        "arms": {"group_commit": arm, "baseline": {**arm, "fsyncs_per_event": None}},
    }
    rows = flask_rows(part)
    assert rows[0][1].startswith("group_commit: accepted POST /events/s")
    assert rows[0][2:4] == ("1,200 (1,100-1,300, n=5)", "fsyncs/event 0.250 (0.200-0.300, n=5)")
    assert rows[1][2] == "4.0 (3.0-5.0, n=5) / 20.0 (15.0-30.0, n=5)"
    assert rows[2][3] == "fsyncs/event -"
    assert [r[0] for r in summary_rows({"flask": part})] == ["flask"] * 4
