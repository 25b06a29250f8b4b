"""Rollup math: tumbling 10 s and 1 min windows, streamed, with stable ids."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from headwater.rollups import (
    combine_windows,
    is_aligned,
    rollup_id,
    rollup_readings,
    window_start,
)

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def reading(seconds: float, value: float, device: str = "d1", sensor: str = "temp") -> dict:
    return {
        "device_id": device,
        "sensor": sensor,
        "value": value,
        "unit": "C",
        # A naive datetime is UTC (a client without tz_aware reads them so): the math accepts it.
        "ts": (T0 + timedelta(seconds=seconds)).replace(tzinfo=None),
    }


def by_id(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {doc["_id"]: doc for doc in docs}


def test_window_start_is_an_epoch_multiple_of_the_size() -> None:
    ts = datetime(2026, 11, 23, 9, 0, 19, 999_000, tzinfo=UTC)
    assert window_start(ts, timedelta(seconds=10)) == datetime(2026, 11, 23, 9, 0, 10, tzinfo=UTC)
    assert window_start(ts, timedelta(minutes=1)) == T0
    assert window_start(T0.replace(tzinfo=None), timedelta(minutes=1)) == T0


def test_alignment_is_to_whole_minutes() -> None:
    assert is_aligned(T0)
    assert not is_aligned(T0 + timedelta(seconds=10))
    assert not is_aligned(T0 + timedelta(milliseconds=1))


def test_windows_hold_count_sum_min_max_avg_and_unit() -> None:
    docs = by_id(list(rollup_readings([reading(1, 2.0), reading(3, 6.0), reading(9, 1.0)])))
    ten = docs["d1|temp|10s|2026-11-23T09:00:00Z"]
    assert ten == {
        "_id": "d1|temp|10s|2026-11-23T09:00:00Z",
        "device_id": "d1",
        "sensor": "temp",
        "window": "10s",
        "start": T0,
        "end": T0 + timedelta(seconds=10),
        "count": 3,
        "sum": 9.0,
        "min": 1.0,
        "max": 6.0,
        "avg": 3.0,
        "unit": "C",
    }
    minute = docs["d1|temp|1m|2026-11-23T09:00:00Z"]
    assert (minute["count"], minute["end"]) == (3, T0 + timedelta(minutes=1))


def test_a_reading_on_a_boundary_opens_the_next_window() -> None:
    docs = by_id(list(rollup_readings([reading(9.999, 1.0), reading(10, 2.0), reading(60, 3.0)])))
    assert docs["d1|temp|10s|2026-11-23T09:00:00Z"]["count"] == 1
    assert docs["d1|temp|10s|2026-11-23T09:00:10Z"]["sum"] == 2.0
    assert docs["d1|temp|10s|2026-11-23T09:01:00Z"]["sum"] == 3.0
    assert docs["d1|temp|1m|2026-11-23T09:00:00Z"]["count"] == 2
    assert docs["d1|temp|1m|2026-11-23T09:01:00Z"]["count"] == 1
    assert len(docs) == 5


def test_devices_and_sensors_get_their_own_windows() -> None:
    docs = by_id(
        list(
            rollup_readings(
                [reading(1, 1.0), reading(2, 5.0, device="d2"), reading(3, 7.0, sensor="hum")]
            )
        )
    )
    assert docs["d2|temp|1m|2026-11-23T09:00:00Z"]["sum"] == 5.0
    assert docs["d1|hum|1m|2026-11-23T09:00:00Z"]["sum"] == 7.0
    assert docs["d1|temp|1m|2026-11-23T09:00:00Z"]["sum"] == 1.0
    assert len(docs) == 6


def test_windows_are_yielded_as_they_close_without_reading_ahead() -> None:
    consumed: list[float] = []

    def stream() -> Iterator[dict]:
        for seconds in range(0, 3600, 5):
            consumed.append(seconds)
            yield reading(seconds, 1.0)

    docs = rollup_readings(stream())
    first = next(docs)
    assert first["_id"] == "d1|temp|10s|2026-11-23T09:00:00Z"
    # The first window closes when the reading at 10 s arrives: nothing further was read.
    assert consumed == [0, 5, 10]
    assert sum(1 for _ in docs) + 1 == 360 + 60


def test_unsorted_readings_are_refused() -> None:
    with pytest.raises(ValueError, match="not sorted"):
        list(rollup_readings([reading(5, 1.0), reading(4, 1.0)]))


def test_non_numeric_values_are_skipped() -> None:
    bad = reading(2, 0.0) | {"value": "x"}
    flag = reading(3, 0.0) | {"value": True}
    docs = list(rollup_readings([reading(1, 4.0), bad, flag]))
    assert {doc["count"] for doc in docs} == {1}


def test_same_readings_give_identical_documents() -> None:
    readings = [reading(s / 3, s * 0.1) for s in range(500)]
    assert list(rollup_readings(readings)) == list(rollup_readings(readings))


def test_rollup_id_names_device_sensor_window_and_start() -> None:
    naive = T0.replace(tzinfo=None)
    assert rollup_id("d", "s", "1m", naive) == rollup_id("d", "s", "1m", T0)
    assert rollup_id("d", "s", "1m", T0) == "d|s|1m|2026-11-23T09:00:00Z"


def test_combined_avg_is_total_sum_over_total_count_not_a_mean_of_means() -> None:
    windows = [
        {"count": 1, "sum": 10.0, "min": 10.0, "max": 10.0},
        {"count": 3, "sum": 6.0, "min": 1.0, "max": 3.0},
    ]
    totals = combine_windows(windows)
    assert totals.value("avg") == 16.0 / 4  # a mean of means would be 6.0
    assert (totals.value("min"), totals.value("max"), totals.value("count")) == (1.0, 10.0, 4)


def test_no_windows_give_no_value() -> None:
    totals = combine_windows([])
    assert [totals.value(agg) for agg in ("avg", "min", "max", "count")] == [None] * 4
    assert totals.count == 0


def test_window_start_accepts_airflows_pendulum_datetimes() -> None:
    import pendulum

    from headwater.rollups import is_aligned, window_start

    moment = pendulum.datetime(2026, 11, 23, 11, 25, 7, 123000, tz="UTC")
    assert window_start(moment, timedelta(seconds=10)) == datetime(2026, 11, 23, 11, 25, tzinfo=UTC)
    assert is_aligned(pendulum.datetime(2026, 11, 23, 11, 25, tz="UTC"))
