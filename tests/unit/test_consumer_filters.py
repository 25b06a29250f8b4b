"""Filter rules as sources.yaml declares them, applied to stored bodies (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from headwater.sources import Source, load_sources, parse_sources
from producer.simulator import DEVICE_TYPES
from tests.unit.declared import entry

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
SOURCES = load_sources()


def check_record(body: dict[str, Any], now: datetime) -> str | None:
    """The first rule of the body's source (its "_source") that the body fails, or None."""
    source: Source = body.pop("_source")
    return source.check(body, now)


def reading(sensor: str, value: float, unit: str, ts: datetime = NOW) -> dict[str, Any]:
    return {
        "_source": SOURCES["devices"],
        "device_id": "dev-1",
        "device_type": None,
        "sensor": sensor,
        "value": value,
        "unit": unit,
        "ts": ts,
    }


def event(user_id: str = "user-1", event_type: str = "click", **kw: object) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "_source": SOURCES["user-events"],
        "event_id": "01JAZ3V9Q8W4B5C6D7E8F9G0H1",
        "user_id": user_id,
        "event_type": event_type,
        "occurred_at": None,
        "properties": {},
        "received_at": NOW,
    }
    fields.update(kw)
    return fields


def work_order(production: float) -> dict[str, Any]:
    return {"_source": SOURCES["work-orders"], "product": 0, "production": production, "ts": NOW}


def match(status: str) -> dict[str, Any]:
    return {"_source": SOURCES["matches"], "id": 1, "utcDate": NOW, "status": status}


@pytest.mark.parametrize(
    ("sensor", "unit", "low", "high"),
    [
        ("temperature", "C", -50, 60),
        ("pressure", "hPa", 800, 1200),
        ("humidity", "%RH", 0, 100),
        ("heart_rate", "bpm", 25, 250),
    ],
)
def test_physical_ranges_are_inclusive(sensor: str, unit: str, low: float, high: float) -> None:
    assert check_record(reading(sensor, low, unit), NOW) is None
    assert check_record(reading(sensor, high, unit), NOW) is None
    reason = f"{sensor} outside [{low}, {high}] {unit}"
    assert check_record(reading(sensor, low - 0.01, unit), NOW) == reason
    assert check_record(reading(sensor, high + 0.01, unit), NOW) == reason


def test_every_simulated_device_range_fits_the_physical_range_and_impossible_values_do_not() -> (
    None
):
    for kind in DEVICE_TYPES:
        assert check_record(reading(kind.sensor, kind.low, kind.unit), NOW) is None
        assert check_record(reading(kind.sensor, kind.high, kind.unit), NOW) is None
        for value in kind.impossible:
            assert check_record(reading(kind.sensor, value, kind.unit), NOW) is not None


def test_wrong_unit_is_filtered() -> None:
    assert check_record(reading("temperature", 70, "F"), NOW) == "temperature unit must be C"


def test_sensor_without_a_range_is_filtered_but_machine_metrics_have_no_ranges() -> None:
    assert check_record(reading("noise", 1, "dB"), NOW) == ("no range configured for sensor noise")
    machine = {**reading("param_19", 8073.41, "unknown"), "_source": SOURCES["machine-metrics"]}
    assert check_record(machine, NOW) is None


def test_reading_far_in_the_future_is_filtered() -> None:
    later = NOW + timedelta(hours=2)
    assert check_record(reading("temperature", 20, "C", later), NOW) == (
        "ts more than 3600 s in the future"
    )
    soon = NOW + timedelta(minutes=59)
    assert check_record(reading("temperature", 20, "C", soon), NOW) is None


@pytest.mark.parametrize("user_id", ["qa-anna", "loadtest-7", "synthetic-x"])
def test_test_users_are_filtered_by_prefix(user_id: str) -> None:
    prefix = user_id.split("-")[0] + "-"
    assert check_record(event(user_id), NOW) == (f"test user (user_id starts with {prefix!r})")


def test_real_users_pass() -> None:
    assert check_record(event("user-1"), NOW) is None
    assert check_record(event("test-user"), NOW) is None  # not a configured prefix


def test_event_claiming_to_happen_long_after_it_was_received_is_filtered() -> None:
    late = event(occurred_at=NOW + timedelta(minutes=6))
    assert check_record(late, NOW) == "occurred_at more than 300 s after received_at"
    assert check_record(event(occurred_at=NOW + timedelta(minutes=4)), NOW) is None


def test_blocked_event_types() -> None:
    spec = entry(
        key_fields=["event_id"],
        event_time_field="received_at",
        contracts={
            1: {
                "fields": {"event_id": "string", "event_type": "string", "received_at": "timestamp"}
            }
        },
        filters=[{"rule": "block", "field": "event_type", "values": ["debug"]}],
    )
    source = parse_sources({"sources": {"e": spec}})["e"]
    body = {"event_id": "x", "event_type": "debug", "received_at": NOW, "_source": source}
    assert check_record(body, NOW) == "blocked event_type debug"


def test_negative_production_is_filtered() -> None:
    assert check_record(work_order(-1.0), NOW) == "production below 0"
    assert check_record(work_order(0.0), NOW) is None


def test_match_status_must_be_known_and_fixtures_far_ahead_are_plausible() -> None:
    assert check_record(match("FINISHED"), NOW) is None
    assert check_record(match("WHATEVER"), NOW) == "status WHATEVER not accepted"
    fixture = {**match("SCHEDULED"), "utcDate": NOW + timedelta(days=200)}
    assert check_record(fixture, NOW) is None


def test_event_time_older_than_the_declared_age_is_filtered() -> None:
    spec = entry(plausibility={"max_future_s": 60, "max_age_s": 86400})
    source = parse_sources({"sources": {"a": spec}})["a"]
    old = {"device_id": "d", "ts": NOW - timedelta(days=2), "_source": source}
    assert check_record(old, NOW) == "ts more than 86400 s in the past"
    ahead = {"device_id": "d", "ts": NOW + timedelta(seconds=61), "_source": source}
    assert check_record(ahead, NOW) == "ts more than 60 s in the future"


def test_a_mistake_in_the_rules_is_a_problem_of_that_entry_named_at_load() -> None:
    ranges = {
        "rule": "ranges",
        "by": "device_id",
        "value": "ts",
        "unit": "device_id",
        "ranges": {"t": {"unit": "C", "min": 60, "max": -50}},
    }
    with pytest.raises(ValueError, match=r"min 60\.0 is above max -50\.0"):
        parse_sources({"sources": {"a": entry(filters=[ranges])}})
    with pytest.raises(ValueError, match="'sensor' is not a stored field"):
        parse_sources(
            {
                "sources": {
                    "a": entry(filters=[{"rule": "allow", "field": "sensor", "values": ["x"]}])
                }
            }
        )
    with pytest.raises(ValueError, match="does not match any of the expected tags"):
        parse_sources({"sources": {"a": entry(filters=[{"rule": "maybe", "field": "ts"}])}})
