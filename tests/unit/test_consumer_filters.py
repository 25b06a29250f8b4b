"""Filter rules as configured in consumer/filters.yaml, applied as pure functions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from consumer.config import FILTERS_FILE
from consumer.filters import FilterRules, check_record, load_rules
from consumer.records import Match, Reading, UserEvent, WorkOrder
from producer.simulator import DEVICE_TYPES

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
RULES = load_rules(FILTERS_FILE)


def reading(sensor: str, value: float, unit: str, ts: datetime = NOW) -> Reading:
    return Reading("dev-1", sensor, value, unit, ts)


def event(user_id: str = "user-1", event_type: str = "click", **kw: object) -> UserEvent:
    fields: dict = {
        "event_id": "01JAZ3V9Q8W4B5C6D7E8F9G0H1",
        "user_id": user_id,
        "event_type": event_type,
        "occurred_at": None,
        "properties": {},
        "received_at": NOW,
    }
    fields.update(kw)
    return UserEvent(**fields)


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
    assert check_record(reading(sensor, low, unit), RULES, NOW) is None
    assert check_record(reading(sensor, high, unit), RULES, NOW) is None
    reason = f"{sensor} outside [{low}, {high}] {unit}"
    assert check_record(reading(sensor, low - 0.01, unit), RULES, NOW) == reason
    assert check_record(reading(sensor, high + 0.01, unit), RULES, NOW) == reason


def test_every_simulated_device_range_fits_the_physical_range_and_impossible_values_do_not() -> (
    None
):
    for kind in DEVICE_TYPES:
        assert check_record(reading(kind.sensor, kind.low, kind.unit), RULES, NOW) is None
        assert check_record(reading(kind.sensor, kind.high, kind.unit), RULES, NOW) is None
        for value in kind.impossible:
            assert check_record(reading(kind.sensor, value, kind.unit), RULES, NOW) is not None


def test_wrong_unit_is_filtered() -> None:
    assert check_record(reading("temperature", 70, "F"), RULES, NOW) == "temperature unit must be C"


def test_sensor_without_a_range_is_filtered_unless_unranged() -> None:
    assert check_record(reading("noise", 1, "dB"), RULES, NOW) == (
        "no range configured for sensor noise"
    )
    assert check_record(reading("param_19", 8073.41, "unknown"), RULES, NOW) is None


def test_reading_far_in_the_future_is_filtered() -> None:
    later = NOW + timedelta(hours=2)
    assert check_record(reading("temperature", 20, "C", later), RULES, NOW) == (
        "ts more than 3600 s in the future"
    )
    soon = NOW + timedelta(minutes=59)
    assert check_record(reading("temperature", 20, "C", soon), RULES, NOW) is None


@pytest.mark.parametrize("user_id", ["qa-anna", "loadtest-7", "synthetic-x"])
def test_test_users_are_filtered_by_prefix(user_id: str) -> None:
    prefix = user_id.split("-")[0] + "-"
    assert check_record(event(user_id), RULES, NOW) == (
        f"test user (user_id starts with {prefix!r})"
    )


def test_real_users_pass() -> None:
    assert check_record(event("user-1"), RULES, NOW) is None
    assert check_record(event("test-user"), RULES, NOW) is None  # not a configured prefix


def test_event_claiming_to_happen_long_after_it_was_received_is_filtered() -> None:
    late = event(occurred_at=NOW + timedelta(minutes=6))
    assert check_record(late, RULES, NOW) == "occurred_at more than 300 s after received_at"
    assert check_record(event(occurred_at=NOW + timedelta(minutes=4)), RULES, NOW) is None


def test_blocked_event_types() -> None:
    rules = FilterRules.model_validate({"user_events": {"blocked_event_types": ["debug"]}})
    assert check_record(event(event_type="debug"), rules, NOW) == "blocked event_type debug"


def test_negative_production_is_filtered() -> None:
    assert check_record(WorkOrder(0, -1.0, NOW), RULES, NOW) == "production below 0"
    assert check_record(WorkOrder(0, 0.0, NOW), RULES, NOW) is None


def test_match_status_must_be_known() -> None:
    assert check_record(Match(1, NOW, "FINISHED", {}), RULES, NOW) is None
    assert check_record(Match(1, NOW, "WHATEVER", {}), RULES, NOW) == (
        "status WHATEVER not accepted"
    )


def test_a_mistake_in_the_rules_file_fails_at_load(tmp_path: Path) -> None:
    bad = tmp_path / "filters.yaml"
    bad.write_text("readings:\n  sensors:\n    temperature: {unit: C, min: 60, max: -50}\n")
    with pytest.raises(ValidationError, match=r"min 60\.0 is above max -50\.0"):
        load_rules(bad)
    bad.write_text("readings:\n  sensor: {}\n")
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        load_rules(bad)
