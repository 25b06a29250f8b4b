"""The slow-clients bench's plan and its rows in the summary table."""

from __future__ import annotations

import pytest

from bench.report import slow_clients_rows, summary_rows
from bench.slow_clients_plan import (
    NO_SLOW,
    SLOW,
    cutoff_outcome,
    paired_ratios,
    slow_kind,
    slow_request_start,
    trial_order,
)


def test_trials_interleave_and_alternate_which_arm_goes_first():
    assert trial_order(3) == [NO_SLOW, SLOW, SLOW, NO_SLOW, NO_SLOW, SLOW]
    with pytest.raises(ValueError):
        trial_order(0)


def test_each_trial_is_compared_with_its_own_pair():
    assert paired_ratios([200.0, 100.0], [100.0, 100.0]) == [0.5, 1.0]
    with pytest.raises(ValueError, match="accepted nothing"):
        paired_ratios([0.0], [10.0])
    with pytest.raises(ValueError):
        paired_ratios([1.0, 2.0], [1.0])


def test_half_the_slow_sockets_stop_in_their_headers_half_in_a_body():
    assert [slow_kind(i) for i in range(4)] == ["headers", "body", "headers", "body"]
    headers = slow_request_start("headers", "k")
    assert b"\r\n\r\n" not in headers  # the head never ends
    body = slow_request_start("body", "k")
    assert body.endswith(b"\r\n\r\n") and b"X-API-Key: k\r\n" in body
    with pytest.raises(ValueError, match="headers, body"):
        slow_request_start("nope", "k")


def test_a_cut_off_is_named_by_the_answer_or_its_absence():
    assert cutoff_outcome(b"") == "closed"
    assert cutoff_outcome(b"HTTP/1.1 408 REQUEST TIMEOUT\r\n\r\n{}") == "answered_408"
    assert cutoff_outcome(b"garbage") == "closed"


PART = {
    "slow_sockets": 200,
    "trials_each": 5,
    "no_slow_accepted_per_s": {"n": 5, "median": 300.0, "min": 280.0, "max": 320.0},
    "slow_accepted_per_s": {"n": 5, "median": 285.0, "min": 250.0, "max": 300.0},
    "ratio": {"n": 5, "median": 0.95, "min": 0.9, "max": 1.02},
    "ratio_of_medians": 0.95,
    "slow_cutoffs": {"headers:closed": 400, "body:answered_408": 250},
}


def test_slow_clients_rows_show_both_arms_and_the_ratio_with_its_spread():
    rows = slow_clients_rows(PART)
    assert rows[0][2:] == ("285 (250-300, n=5)", "none open 300 (280-320, n=5)", "0.950")
    assert rows[1][2] == "0.950 (0.900-1.020, n=5)"
    assert "body:answered_408 250" in rows[2][1] and "headers:closed 400" in rows[2][1]
    assert [r[0] for r in summary_rows({"slow_clients": PART})] == ["slow clients"] * 3
