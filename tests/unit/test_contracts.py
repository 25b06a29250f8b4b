"""Message contracts as sources.yaml declares them: each topic's versions, and rejection with a
reason instead of a guess."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import BaseModel

from headwater.contracts import ContractError, parse_schema_version
from headwater.contracts import validate_record as validate_with
from headwater.sources import load_sources

BY_TOPIC = {s.topic: s for s in load_sources().values()}


def validate_record(topic: str, version: int, payload: object) -> BaseModel:
    _contract, model = BY_TOPIC[topic].contract(version)
    return validate_with(model, payload)


READING = {
    "device_id": "thermostat-000",
    "device_type": "thermostat",
    "sensor": "temperature",
    "value": 21.5,
    "unit": "C",
    "ts": "2026-11-23T09:00:00Z",
}
EVENT = {
    "event_id": "01JAZ3V9Q8W4B5C6D7E8F9G0H1",
    "user_id": "user-42",
    "event_type": "page.view",
    "occurred_at": None,
    "properties": {"path": "/"},
    "received_at": "2026-11-23T09:00:00.123Z",
}


def reason(topic: str, payload: object, version: int = 1) -> str:
    with pytest.raises(ContractError) as info:
        validate_record(topic, version, payload)
    return info.value.reason


def test_every_declared_source_has_a_contract_for_its_schema_version() -> None:
    for source in load_sources().values():
        assert source.contract(source.schema_version)[1] is not None


def test_the_five_sources_declare_version_1() -> None:
    assert {(s.topic, v) for s in BY_TOPIC.values() for v in s.contracts} >= {
        ("devices", 1),
        ("machine-metrics", 1),
        ("work-orders", 1),
        ("user-events", 1),
        ("matches", 1),
    }


def test_simulator_reading_is_valid_and_its_time_is_utc() -> None:
    model = validate_record("devices", 1, READING)
    assert model.ts == datetime(2026, 11, 23, 9, tzinfo=UTC)


def test_offset_times_are_normalised_to_utc() -> None:
    model = validate_record("devices", 1, {**READING, "ts": "2026-11-23T10:00:00+01:00"})
    assert model.ts == datetime(2026, 11, 23, 9, tzinfo=UTC)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"value": "21.5C"}, "value: Input should be a valid number"),
        ({"value": None}, "value: Input should be a valid number"),
        ({"value": True}, "value: Input should be a valid number"),
        ({"value": "21.5"}, "value: Input should be a valid number"),
        ({"ts": "2026-11-23T09:00:00"}, "ts: Input should have timezone info"),
        ({"ts": 1795424400}, "ts: must be an ISO-8601 string"),
        ({"device_id": ""}, "device_id: String should have at least 1 character"),
        ({"extra": 1}, "extra: Extra inputs are not permitted"),
    ],
)
def test_bad_reading_fields_are_named_in_the_reason(change: dict, expected: str) -> None:
    assert reason("devices", {**READING, **change}) == expected


def test_missing_value_is_named() -> None:
    payload = {k: v for k, v in READING.items() if k != "value"}
    assert reason("devices", payload) == "value: Field required"


def test_every_problem_of_a_record_is_listed() -> None:
    assert reason("devices", {"device_id": "d"}) == (
        "sensor: Field required; value: Field required; unit: Field required; ts: Field required"
    )


def test_a_json_value_that_is_not_an_object_is_rejected() -> None:
    assert reason("devices", [READING]) == "record must be a JSON object, got array"
    assert reason("devices", "x") == "record must be a JSON object, got string"


def test_unknown_schema_version_is_rejected_not_guessed() -> None:
    assert reason("devices", READING, version=2) == (
        "unknown schema_version 2 for topic devices (known: 1)"
    )


@pytest.mark.parametrize(
    ("header", "expected"),
    [(b"1", 1), ("2", 2), (b" 3 ", 3)],
)
def test_schema_version_header_is_a_whole_number(header: bytes | str, expected: int) -> None:
    assert parse_schema_version(header) == expected


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, "missing schema_version header"),
        (b"v1", "schema_version header 'v1' is not a whole number"),
        (b"1.0", "schema_version header '1.0' is not a whole number"),
        (b"\xff", "schema_version header is not UTF-8"),
    ],
)
def test_bad_schema_version_header_is_rejected(header: bytes | None, expected: str) -> None:
    with pytest.raises(ContractError) as info:
        parse_schema_version(header)
    assert info.value.reason == expected


def test_machine_metric_takes_integer_id_and_epoch_seconds() -> None:
    model = validate_record("machine-metrics", 1, {"id": 19, "val": 8073, "time": 1624320043})
    assert model.val == 8073.0
    assert reason("machine-metrics", {"id": "19", "val": 1.0, "time": 1}) == (
        "id: Input should be a valid integer"
    )
    assert reason("machine-metrics", {"id": 1, "val": 1.0, "time": -5}) == (
        "time: Input should be greater than or equal to 0"
    )


def test_work_order_production_must_be_a_number() -> None:
    assert validate_record("work-orders", 1, {"time": 1624320000, "product": 0, "production": 20})
    assert reason("work-orders", {"time": 1624320000, "product": 0, "production": "lots"}) == (
        "production: Input should be a valid number"
    )


def test_user_event_as_the_events_api_stores_it_is_valid() -> None:
    model = validate_record("user-events", 1, EVENT)
    assert model.occurred_at is None
    assert model.received_at == datetime(2026, 11, 23, 9, 0, 0, 123000, tzinfo=UTC)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"event_id": "01jaz3v9q8w4b5c6d7e8f9g0h1"}, "event_id"),  # lower case
        ({"event_id": "01JAZ3V9Q8"}, "event_id"),  # too short
        ({"event_id": "81JAZ3V9Q8W4B5C6D7E8F9G0H1"}, "event_id"),  # above 128 bits
        ({"user_id": "has space"}, "user_id"),
        ({"event_type": "Page"}, "event_type"),
        ({"properties": []}, "properties"),
        ({"received_at": None}, "received_at"),
    ],
)
def test_user_event_field_rules(change: dict, field: str) -> None:
    assert reason("user-events", {**EVENT, **change}).startswith(f"{field}: ")


def test_user_event_without_occurred_at_key_is_rejected() -> None:
    payload = {k: v for k, v in EVENT.items() if k != "occurred_at"}
    assert reason("user-events", payload) == "occurred_at: Field required"


def test_match_keeps_fields_the_api_adds() -> None:
    match = {"id": 540001, "utcDate": "2025-08-16T11:30:00Z", "status": "FINISHED", "odds": {}}
    model = validate_record("matches", 1, match)
    assert model.model_dump()["odds"] == {}
    assert reason("matches", {"id": 1, "status": "FINISHED"}) == "utcDate: Field required"


def test_match_fields_that_mongodb_would_read_as_operators_are_rejected() -> None:
    match = {"id": 1, "utcDate": "2025-08-16T11:30:00Z", "status": "FINISHED"}
    assert reason("matches", {**match, "$where": 1}) == "record: unexpected field names ['$where']"
    assert reason("matches", {**match, "a.b": 1}).startswith("record: unexpected field names")


def test_fields_a_match_keeps_as_sent_must_still_be_storable() -> None:
    match = {"id": 1, "utcDate": "2025-08-16T11:30:00Z", "status": "FINISHED"}
    assert reason("matches", {**match, "team": {"name": "\ud800"}}) == (
        "record: team.name: is not valid Unicode text (it holds a lone surrogate)"
    )
    assert reason("matches", {**match, "odds": {"a.b": 1}}) == (
        "record: odds: key 'a.b' may not start with '$' or contain '.'"
    )
