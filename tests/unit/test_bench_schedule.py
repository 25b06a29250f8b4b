"""The end-to-end bench's windows stay inside one scheduled interval."""

from __future__ import annotations

import pytest

from bench.schedule import windows_in_one_interval

MINUTE = 60


def test_windows_are_consecutive_and_inside_one_minute():
    windows = windows_in_one_interval(1_000_000_000.5, 12, 4, MINUTE)
    assert len(windows) == 4
    assert all(b - a == 12 for a, b in windows)
    assert all(windows[i][1] == windows[i + 1][0] for i in range(3))
    first, last = windows[0][0], windows[-1][1]
    assert first // MINUTE == (last - 1) // MINUTE
    # Room before the minute ends for the last window to land before the scheduled pull.
    assert (first // MINUTE + 1) * MINUTE - last >= 8


def test_windows_start_in_the_future():
    now = 1_700_000_000 + 30.0  # half-way through a minute: too late for 48 s of windows
    windows = windows_in_one_interval(now, 12, 4, MINUTE)
    assert windows[0][0] >= now + 1
    assert windows[0][0] % MINUTE == 4


def test_the_current_minute_is_used_when_it_still_has_room():
    minute = 1_700_000_040 - 1_700_000_040 % MINUTE
    windows = windows_in_one_interval(minute + 1, 10, 2, MINUTE)
    assert windows[0][0] // MINUTE == minute // MINUTE


def test_windows_that_cannot_fit_in_an_interval_are_refused():
    with pytest.raises(ValueError, match="fewer or shorter"):
        windows_in_one_interval(0, 20, 3, MINUTE)


@pytest.mark.parametrize(("window_s", "count"), [(0, 3), (10, 0)])
def test_empty_windows_are_refused(window_s, count):
    with pytest.raises(ValueError):
        windows_in_one_interval(0, window_s, count, MINUTE)
