"""Choosing an ingest run's window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from headwater.windows import WindowError, run_window

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
T1 = T0 + timedelta(minutes=1)


def test_scheduled_run_pulls_its_data_interval() -> None:
    assert run_window(T0, T1, {}) == (T0, T1)


def test_explicit_params_win_over_the_interval() -> None:
    params = {"since": "2026-01-05T12:00:00Z", "until": "2026-01-05T12:10:00+00:00"}
    since, until = run_window(T0, T1, params)
    assert since == datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
    assert until - since == timedelta(minutes=10)


def test_manual_run_with_an_empty_interval_must_name_its_window() -> None:
    with pytest.raises(WindowError, match="params since and until"):
        run_window(T0, T0, {"since": None, "until": None})


def test_half_a_window_and_garbage_are_refused() -> None:
    with pytest.raises(WindowError, match="both"):
        run_window(T0, T1, {"since": "2026-01-05T12:00:00Z"})
    with pytest.raises(WindowError, match="not an ISO-8601"):
        run_window(T0, T1, {"since": "yesterday", "until": "today"})
    with pytest.raises(WindowError, match="empty window"):
        run_window(T0, T1, {"since": "2026-01-05T12:00:00Z", "until": "2026-01-05T11:00:00Z"})
