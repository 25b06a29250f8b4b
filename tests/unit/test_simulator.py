"""The device simulator: a pure, deterministic function of (device, second), ~1% malformed."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from itertools import islice, pairwise

import pytest

from producer.simulator import (
    DEVICE_TYPES,
    MALFORMED_KINDS,
    device_ids,
    malformed_kind,
    reading,
    readings,
)

SINCE = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
TEN_MINUTES = SINCE + timedelta(minutes=10)
RANGES = {t.sensor: (t.low, t.high) for t in DEVICE_TYPES}


def as_bytes(records: list[dict]) -> bytes:
    return "\n".join(json.dumps(r) for r in records).encode()


def epoch(moment: datetime) -> int:
    return int(moment.timestamp())


def is_valid(record: dict) -> bool:
    return malformed_kind(record["device_id"], record["ts"]) is None


def test_device_ids_cycle_through_the_four_types() -> None:
    assert device_ids(6) == [
        "thermostat-000",
        "barometer-001",
        "hygrometer-002",
        "heart_rate_meter-003",
        "thermostat-004",
        "barometer-005",
    ]
    assert [(t.name, t.sensor, t.unit) for t in DEVICE_TYPES] == [
        ("thermostat", "temperature", "C"),
        ("barometer", "pressure", "hPa"),
        ("hygrometer", "humidity", "%RH"),
        ("heart_rate_meter", "heart_rate", "bpm"),
    ]


def test_record_has_the_documented_shape() -> None:
    record = reading(0, epoch(SINCE))
    assert list(record) == ["device_id", "device_type", "sensor", "value", "unit", "ts"]
    assert record["device_id"] == "thermostat-000"
    assert record["ts"] == "2026-11-23T09:00:00Z"
    assert isinstance(record["value"], float)
    assert round(record["value"], 2) == record["value"]


def test_same_window_gives_identical_records_byte_for_byte() -> None:
    first = as_bytes(list(readings(SINCE, TEN_MINUTES, 8)))
    second = as_bytes(list(readings(SINCE, TEN_MINUTES, 8)))
    assert first == second


def test_readings_do_not_depend_on_the_process_hash_seed() -> None:
    # Python's hash() is salted per process; the simulator must not care.
    code = (
        "import hashlib, json; from datetime import datetime, timedelta, UTC;"
        "from producer.simulator import readings;"
        "s = datetime(2026, 11, 23, 9, tzinfo=UTC);"
        "rs = list(readings(s, s + timedelta(minutes=2), 8));"
        "print(hashlib.sha256(json.dumps(rs).encode()).hexdigest())"
    )
    digests = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for seed in ("1", "2")
    }
    expected = json.dumps(list(readings(SINCE, SINCE + timedelta(minutes=2), 8)))
    assert len(digests) == 1
    assert digests.pop() == hashlib.sha256(expected.encode()).hexdigest()


def test_reading_is_a_pure_function_of_device_and_second() -> None:
    start = epoch(SINCE)
    forward = [reading(i, start + s) for s in range(30) for i in range(8)]
    backward = [reading(i, start + s) for s in reversed(range(30)) for i in reversed(range(8))]
    assert forward == list(reversed(backward))
    # The window iterator is exactly the per-reading function, whatever the window's device count.
    assert list(readings(SINCE, SINCE + timedelta(seconds=30), 8)) == forward
    three = list(readings(SINCE, SINCE + timedelta(seconds=30), 3))
    assert three == [reading(i, start + s) for s in range(30) for i in range(3)]


def test_ten_minute_window_has_one_reading_per_device_per_second_in_order() -> None:
    records = list(readings(SINCE, TEN_MINUTES, 8))
    assert len(records) == 8 * 600
    keys = Counter((r["device_id"], r["ts"]) for r in records)
    assert len(keys) == 8 * 600 and set(keys.values()) == {1}
    assert records[0]["ts"] == "2026-11-23T09:00:00Z"
    assert records[-1]["ts"] == "2026-11-23T09:09:59Z"
    order = [(r["ts"], int(r["device_id"].rsplit("-", 1)[1])) for r in records]
    assert order == sorted(order)


def test_window_covers_whole_seconds_since_rounded_up_until_exclusive() -> None:
    since = SINCE + timedelta(microseconds=1)
    records = list(readings(since, SINCE + timedelta(seconds=3), 2))
    assert [r["ts"] for r in records] == ["2026-11-23T09:00:01Z"] * 2 + ["2026-11-23T09:00:02Z"] * 2
    until_mid_second = SINCE + timedelta(seconds=2, milliseconds=500)
    assert len(list(readings(SINCE, until_mid_second, 2))) == 3 * 2
    assert list(readings(SINCE, SINCE, 8)) == []
    assert list(readings(TEN_MINUTES, SINCE, 8)) == []


def test_naive_datetimes_are_taken_as_utc() -> None:
    naive = SINCE.replace(tzinfo=None)
    assert list(readings(naive, naive + timedelta(seconds=5), 4)) == list(
        readings(SINCE, SINCE + timedelta(seconds=5), 4)
    )


def test_values_drift_smoothly() -> None:
    by_device: dict[str, list[tuple[str, float]]] = defaultdict(list)
    for record in readings(SINCE, SINCE + timedelta(hours=1), 8):
        if is_valid(record):
            by_device[record["device_id"]].append((record["sensor"], record["value"]))
    for series in by_device.values():
        low, high = RANGES[series[0][0]]
        steps = [abs(b[1] - a[1]) for a, b in pairwise(series)]
        # A few valid neighbours are 2 s apart (a malformed reading between): still within 2%.
        assert max(steps) <= 0.02 * (high - low)
        # Not a constant either: the value moves over an hour.
        values = [v for _, v in series]
        assert max(values) - min(values) > 0.02 * (high - low)


def test_about_one_percent_is_malformed_with_every_kind_present() -> None:
    records = list(readings(SINCE, SINCE + timedelta(hours=2), 8))
    kinds = Counter(malformed_kind(r["device_id"], r["ts"]) for r in records)
    bad = len(records) - kinds[None]
    assert 0.005 <= bad / len(records) <= 0.015
    assert set(kinds) - {None} == set(MALFORMED_KINDS)


def test_each_malformed_kind_looks_the_way_it_is_named() -> None:
    seen = set()
    for record in readings(SINCE, SINCE + timedelta(hours=1), 8):
        kind = malformed_kind(record["device_id"], record["ts"])
        low, high = RANGES[record["sensor"]]
        if kind == "missing_value":
            assert "value" not in record
        elif kind == "wrong_type":
            assert isinstance(record["value"], str)
            assert record["value"].endswith(record["unit"])
        elif kind == "null_value":
            assert record["value"] is None
        elif kind == "impossible_value":
            assert isinstance(record["value"], float)
            assert not low <= record["value"] <= high
        seen.add(kind)
    assert seen == {None, *MALFORMED_KINDS}


def test_key_fields_are_never_missing() -> None:
    for record in readings(SINCE, SINCE + timedelta(hours=1), 8):
        assert isinstance(record["device_id"], str) and record["device_id"]
        assert isinstance(record["ts"], str) and record["ts"].endswith("Z")
        for field in ("device_type", "sensor", "unit"):
            assert field in record


def test_valid_values_stay_within_the_normal_range() -> None:
    for record in readings(SINCE, SINCE + timedelta(hours=3), 8):
        if is_valid(record):
            low, high = RANGES[record["sensor"]]
            assert isinstance(record["value"], float)
            assert low <= record["value"] <= high


@pytest.mark.parametrize("cut", [0, 1, 7, 8, 9, 500, 4798])
def test_start_after_resumes_exactly_after_the_last_record(cut: int) -> None:
    full = list(readings(SINCE, TEN_MINUTES, 8))
    last = full[cut]
    position = (epoch(datetime.fromisoformat(last["ts"])), int(last["device_id"][-3:]))
    assert list(readings(SINCE, TEN_MINUTES, 8, start_after=position)) == full[cut + 1 :]


def test_start_after_the_last_record_or_before_the_window_is_handled() -> None:
    full = list(readings(SINCE, TEN_MINUTES, 8))
    last_position = (epoch(TEN_MINUTES) - 1, 7)
    assert list(readings(SINCE, TEN_MINUTES, 8, start_after=last_position)) == []
    before = (epoch(SINCE) - 100, 3)
    assert list(readings(SINCE, TEN_MINUTES, 8, start_after=before)) == full


def test_readings_are_lazy_for_long_windows() -> None:
    year = readings(SINCE, SINCE + timedelta(days=365), 1000)
    first = list(islice(year, 3))
    assert [r["device_id"] for r in first] == device_ids(3)
