"""The user-events API on a temp SQLite file: validation, idempotency, paging, ids, errors (the
server's own included) and its OpenAPI document."""

from __future__ import annotations

import io
import json
import random
import socket
import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from gunicorn.config import Config
from gunicorn.http import errors as http_errors
from gunicorn.util import load_class
from jsonschema import Draft202012Validator
from schemathesis.specs.openapi.definitions import OPENAPI_31
from werkzeug.test import TestResponse

from consumer.messages import InboundMessage
from consumer.pipeline import PipelineContext, Rejected, process_message, sources_by_topic
from headwater.declarations import KEY_RULE, value_problem
from headwater.settings import get_settings
from headwater.sources import load_sources
from infra.stack import gunicorn_command
from producer.events.app import create_app
from producer.events.ids import (
    ALPHABET,
    MAX_TIME_MS,
    decode_id,
    encode_id,
    first_id_at,
    id_time_ms,
    is_event_id,
    next_event_id,
)
from producer.events.openapi import KEY_PATTERN
from producer.events.query import (
    decode_cursor,
    encode_cursor,
    needs_settling,
    parse_page_request,
)
from producer.events.rules import event_rules
from producer.events.server import WORKER_CLASS, EventsWorker, json_error_response
from producer.events.times import format_ms, to_us
from producer.events.timing import parse_duration_ms
from producer.events.validation import (
    MAX_PROPERTIES_BYTES,
    InvalidInput,
    parse_batch,
    parse_event,
    parse_json_body,
)

API_KEY = "test-key"
T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
GOOD = {"user_id": "user-1", "event_type": "page.view"}


class FakeClock:
    """A clock that only moves when told to."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def app(tmp_path: Path, clock: FakeClock) -> Flask:
    return create_app(
        {
            "TESTING": True,
            "DATABASE": tmp_path / "events" / "events.db",
            "API_KEY": API_KEY,
            "BATCH_LIMIT": 5,
            "MAX_CONTENT_LENGTH": 64 * 1024,
            "CLOCK": clock,
        }
    )


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def post(
    client: FlaskClient,
    body: Any,
    path: str = "/events",
    key: str | None = API_KEY,
    headers: dict[str, str] | None = None,
    raw: str | bytes | None = None,
    content_type: str = "application/json",
) -> TestResponse:
    all_headers = dict(headers or {})
    if key is not None:
        all_headers["X-API-Key"] = key
    data = raw if raw is not None else json.dumps(body)
    return client.post(path, data=data, headers=all_headers, content_type=content_type)


def stored_count(client: FlaskClient) -> int:
    health = client.get("/healthz")
    assert health.status_code == 200
    listed = client.get("/events", query_string={"limit": 5000}).get_json()["count"]
    assert listed == health.get_json()["events"]
    return int(listed)


def all_events(client: FlaskClient, **params: Any) -> list[dict[str, Any]]:
    events, cursor = [], None
    while True:
        query = dict(params, **({"cursor": cursor} if cursor else {}))
        response = client.get("/events", query_string=query)
        assert response.status_code == 200, response.get_json()
        body = response.get_json()
        assert body["count"] == len(body["events"])
        events += body["events"]
        cursor = body["next_cursor"]
        if cursor is None:
            return events


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def fields(response: TestResponse) -> list[str]:
    return [detail["field"] for detail in response.get_json()["details"]]


# ---- event ids (pure) ---------------------------------------------------------------------------


def test_event_id_is_26_crockford_chars_carrying_its_millisecond() -> None:
    ms = to_us(T0) // 1000
    event_id = next_event_id(ms, None)
    assert len(event_id) == 26
    assert set(event_id) <= set(ALPHABET)
    assert id_time_ms(event_id) == ms
    assert is_event_id(event_id)


def test_event_ids_increase_when_the_clock_stands_still() -> None:
    ms = to_us(T0) // 1000
    ids = [next_event_id(ms, None)]
    for _ in range(1000):
        ids.append(next_event_id(ms, ids[-1]))
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert {id_time_ms(i) for i in ids} == {ms}


def test_event_ids_increase_when_the_clock_goes_backwards() -> None:
    ms = to_us(T0) // 1000
    first = next_event_id(ms, None)
    earlier = next_event_id(ms - 60_000, first)
    assert earlier > first
    assert id_time_ms(earlier) == ms  # received_at does not run backwards either
    later = next_event_id(ms + 1, earlier)
    assert later > earlier
    assert id_time_ms(later) == ms + 1


def test_event_ids_sort_as_strings_exactly_as_their_numbers() -> None:
    rng = random.Random(7)
    values = [rng.getrandbits(128) for _ in range(2000)] + [0, (1 << 128) - 1]
    ids = [encode_id(v) for v in values]
    assert sorted(ids) == [encode_id(v) for v in sorted(values)]
    assert all(decode_id(i) == v for i, v in zip(ids, values, strict=True))


def test_new_millisecond_takes_fresh_random_bits() -> None:
    event_id = next_event_id(1000, next_event_id(999, None), randbits=lambda bits: 12345)
    assert decode_id(event_id) == (1000 << 80) | 12345


def test_random_part_overflow_carries_into_the_next_millisecond() -> None:
    full = next_event_id(5, None, randbits=lambda bits: (1 << bits) - 1)
    after = next_event_id(5, full)
    assert after > full
    assert id_time_ms(after) == 6


@pytest.mark.parametrize(
    "text",
    ["", "01ARZ3NDEKTSV4RRFFQ69G5FA", "01arz3ndektsv4rrffq69g5fav", "81ARZ3NDEKTSV4RRFFQ69G5FAV"],
)
def test_malformed_event_ids_are_refused(text: str) -> None:
    assert not is_event_id(text)


def test_id_arguments_out_of_range_are_refused() -> None:
    with pytest.raises(ValueError):
        next_event_id(-1, None)
    with pytest.raises(ValueError):
        next_event_id(MAX_TIME_MS + 1, None)
    assert first_id_at(0) == "0" * 26


# ---- validation (pure) --------------------------------------------------------------------------


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"a": value}
    return value


def test_valid_event_is_normalised_to_utc() -> None:
    event = parse_event(
        {**GOOD, "occurred_at": "2026-11-23T10:00:00+01:00", "properties": {"a": [1, 2]}}, T0
    )
    assert event.occurred_at == T0
    assert event.properties == {"a": [1, 2]}
    assert parse_event(GOOD, T0).properties == {}
    assert parse_event(GOOD, T0).occurred_at is None


BAD_EVENTS = [
    ({"event_type": "click"}, "user_id", "is required"),
    ({"user_id": "u"}, "event_type", "is required"),
    ({**GOOD, "user_id": 42}, "user_id", "must be a string, got integer"),
    ({**GOOD, "user_id": ""}, "user_id", "1 to 128"),
    ({**GOOD, "user_id": "u" * 129}, "user_id", "1 to 128"),
    ({**GOOD, "user_id": "a b"}, "user_id", "may only contain"),
    ({**GOOD, "event_type": ["click"]}, "event_type", "got array"),
    ({**GOOD, "event_type": "Click"}, "event_type", "must match"),
    ({**GOOD, "event_type": "1click"}, "event_type", "must match"),
    ({**GOOD, "event_type": "click\n"}, "event_type", "must match"),
    ({**GOOD, "event_type": "c" * 65}, "event_type", "1 to 64"),
    ({**GOOD, "occurred_at": "2026-11-23T09:00:00"}, "occurred_at", "timezone"),
    ({**GOOD, "occurred_at": "2026-11-23"}, "occurred_at", "not an ISO-8601"),
    ({**GOOD, "occurred_at": "yesterday"}, "occurred_at", "not an ISO-8601"),
    ({**GOOD, "occurred_at": 1_700_000_000}, "occurred_at", "got integer"),
    ({**GOOD, "occurred_at": "2026-11-23T09:05:00.001Z"}, "occurred_at", "in the future"),
    ({**GOOD, "occurred_at": "0001-01-01T00:00:00+01:00"}, "occurred_at", "range"),
    ({**GOOD, "properties": [1]}, "properties", "must be a JSON object, got array"),
    ({**GOOD, "properties": {f"k{i}": i for i in range(65)}}, "properties", "65 keys"),
    ({**GOOD, "properties": {"k": "x" * MAX_PROPERTIES_BYTES}}, "properties", "bytes as JSON"),
    ({**GOOD, "colour": "red"}, "colour", "unknown field"),
    ([GOOD], "body", "must be a JSON object, got array"),
    # What MongoDB could not store as sent, named at any depth in the consumer's words.
    ({**GOOD, "properties": {"n": float("inf")}}, "properties.n", "is not a finite number"),
    ({**GOOD, "properties": {"a": {"b": "\ud800"}}}, "properties.a.b", "lone surrogate"),
    ({**GOOD, "properties": {"\udfff": 1}}, "properties", "key that is not valid Unicode"),
    ({**GOOD, "user_id": "u\ud800"}, "user_id", "lone surrogate"),
    ({**GOOD, "event_type": "click\udc00"}, "event_type", "lone surrogate"),
    ({**GOOD, "occurred_at": "2026-11-23T09:00:00\ud800Z"}, "occurred_at", "lone surrogate"),
    ({**GOOD, "properties": {"$where": 1}}, "properties", f"key '$where' {KEY_RULE}"),
    ({**GOOD, "properties": {"a.b": 1}}, "properties", f"key 'a.b' {KEY_RULE}"),
    ({**GOOD, "properties": {"": 1}}, "properties", f"key '' {KEY_RULE}"),
    ({**GOOD, "properties": {"x": [0, {"$gt": 1}]}}, "properties.x.1", f"key '$gt' {KEY_RULE}"),
    ({**GOOD, "properties": {"a": {"b": {"c.d": 1}}}}, "properties.a.b", f"key 'c.d' {KEY_RULE}"),
    ({**GOOD, "properties": {"deep": nested(40)}}, "properties.deep" + ".a" * 32, "deeper than 32"),
]


@pytest.mark.parametrize(("raw", "field", "problem"), BAD_EVENTS)
def test_bad_event_names_its_field(raw: Any, field: str, problem: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_event(raw, T0)
    assert [(p.field, problem in p.problem) for p in caught.value.problems] == [(field, True)]


def test_every_bad_field_is_listed() -> None:
    raw = {"user_id": 1, "event_type": "X", "occurred_at": "nope", "properties": 3, "extra": 0}
    with pytest.raises(InvalidInput) as caught:
        parse_event(raw, T0)
    named = sorted(p.field for p in caught.value.problems)
    assert named == ["event_type", "extra", "occurred_at", "properties", "user_id"]


def test_limits_are_inclusive() -> None:
    five_minutes = iso(T0 + timedelta(minutes=5))
    assert parse_event({**GOOD, "occurred_at": five_minutes}, T0).occurred_at is not None
    assert len(parse_event({**GOOD, "properties": {f"k{i}": i for i in range(64)}}, T0).properties)
    filler = "x" * (MAX_PROPERTIES_BYTES - len('{"k":""}'))
    assert parse_event({**GOOD, "properties": {"k": filler}}, T0).properties["k"] == filler
    assert parse_event({**GOOD, "user_id": "a" * 128, "event_type": "b" * 64}, T0)
    assert parse_event({**GOOD, "user_id": "A.z_0:9@x-y", "event_type": "a0_.-"}, T0)


def test_batch_names_the_bad_items_and_fields() -> None:
    items = [GOOD, GOOD, {**GOOD, "event_type": "BAD"}, {"event_type": "x"}]
    with pytest.raises(InvalidInput) as caught:
        parse_batch({"events": items}, T0, limit=10)
    assert [p.field for p in caught.value.problems] == ["events[2].event_type", "events[3].user_id"]


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"events": []}, "events"),
        ({"events": [GOOD] * 4}, "events"),
        ({"events": GOOD}, "events"),
        ({}, "events"),
        ({"events": [GOOD], "more": 1}, "more"),
        ([GOOD], "body"),
        ({"events": [GOOD, "x"]}, "events[1]"),
    ],
)
def test_bad_batch_shape_names_its_field(raw: Any, field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_batch(raw, T0, limit=3)
    assert [p.field for p in caught.value.problems] == [field]


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"{", "not valid JSON"),
        (b"", "empty"),
        (b'{"a": NaN}', "NaN"),
        (b'{"a": 1, "a": 2}', "duplicate key"),
        (b"\xff\xfe", "not UTF-8"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    ],
)
def test_malformed_json_body_is_refused(body: bytes, problem: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_json_body(body)
    (only,) = caught.value.problems
    assert only.field == "body"
    assert problem in only.problem


def test_cursor_round_trips_and_refuses_forgeries() -> None:
    event_id = next_event_id(to_us(T0) // 1000, None)
    cursor = encode_cursor(event_id)
    assert "=" not in cursor
    assert decode_cursor(cursor) == event_id
    for forged in ["", "abc", event_id, encode_cursor(event_id)[:-2], "!!!!"]:
        with pytest.raises(ValueError):
            decode_cursor(forged)


def test_window_bounds_round_up_to_whole_milliseconds() -> None:
    ms = to_us(T0) // 1000
    page = parse_page_request(
        {"since": "2026-11-23T09:00:00.0005Z", "until": "2026-11-23T09:00:00.002Z"}, 500, 5000
    )
    assert (page.lower, page.upper) == (first_id_at(ms + 1), first_id_at(ms + 2))
    assert parse_page_request({"until": "1969-01-01T00:00:00Z"}, 500, 5000).empty
    naive = parse_page_request({"since": "2026-11-23T09:00:00"}, 500, 5000)
    assert naive.lower == first_id_at(ms)


# ---- POST over the test client ------------------------------------------------------------------


def test_post_event_is_committed_before_201(client: FlaskClient, app: Flask) -> None:
    body = {**GOOD, "occurred_at": "2026-11-23T06:59:00-02:00", "properties": {"page": "/a"}}
    response = post(client, body)
    assert response.status_code == 201
    event = response.get_json()["event"]
    assert list(event) == [
        "event_id",
        "user_id",
        "event_type",
        "occurred_at",
        "properties",
        "received_at",
    ]
    assert event["occurred_at"] == "2026-11-23T08:59:00.000Z"
    assert event["received_at"] == "2026-11-23T09:00:00.000Z"
    assert event["properties"] == {"page": "/a"}
    # A connection of its own sees the row: it was committed, not just written.
    with sqlite3.connect(app.config["DATABASE"]) as conn:
        (mode,) = conn.execute("PRAGMA journal_mode").fetchone()
        rows = conn.execute("SELECT event_id FROM events").fetchall()
    assert mode == "wal"
    assert rows == [(event["event_id"],)]
    assert client.get(f"/events/{event['event_id']}").get_json() == {"event": event}


def test_post_batch_stores_every_event_in_order(client: FlaskClient) -> None:
    items = [{**GOOD, "user_id": f"u{i}"} for i in range(5)]
    response = post(client, {"events": items}, path="/events/batch")
    assert response.status_code == 201
    body = response.get_json()
    assert body["count"] == 5
    assert [e["user_id"] for e in body["events"]] == [f"u{i}" for i in range(5)]
    ids = [e["event_id"] for e in body["events"]]
    assert ids == sorted(ids)
    assert [e["event_id"] for e in all_events(client)] == ids


OVERSIZE = {**GOOD, "properties": {"k": "x" * 70_000}}
BAD_REQUESTS: list[tuple[str, dict[str, Any], int, str, str]] = [
    ("malformed json", {"raw": '{"user_id": '}, 400, "malformed_json", "body"),
    ("not an object", {"body": ["x"]}, 400, "invalid_event", "body"),
    ("wrong type", {"body": {**GOOD, "user_id": 7}}, 400, "invalid_event", "user_id"),
    ("missing field", {"body": {"user_id": "u"}}, 400, "invalid_event", "event_type"),
    ("unknown field", {"body": {**GOOD, "x": 1}}, 400, "invalid_event", "x"),
    ("bad event_type", {"body": {**GOOD, "event_type": "A"}}, 400, "invalid_event", "event_type"),
    (
        "occurred_at without tz",
        {"body": {**GOOD, "occurred_at": "2026-11-23T08:00:00"}},
        400,
        "invalid_event",
        "occurred_at",
    ),
    (
        "occurred_at far future",
        {"body": {**GOOD, "occurred_at": "2026-11-23T10:00:00Z"}},
        400,
        "invalid_event",
        "occurred_at",
    ),
    (
        "oversized properties",
        {"body": {**GOOD, "properties": {"k": "x" * 17_000}}},
        400,
        "invalid_event",
        "properties",
    ),
    ("oversize body", {"body": OVERSIZE}, 413, "payload_too_large", "body"),
    (
        "wrong content type",
        {"body": GOOD, "content_type": "text/plain"},
        415,
        "unsupported_media_type",
        "Content-Type",
    ),
    ("no api key", {"body": GOOD, "key": None}, 401, "unauthorized", "X-API-Key"),
    ("wrong api key", {"body": GOOD, "key": "nope"}, 401, "unauthorized", "X-API-Key"),
    (
        "bad idempotency key",
        {"body": GOOD, "headers": {"Idempotency-Key": "\t"}},
        400,
        "invalid_header",
        "Idempotency-Key",
    ),
    (
        "batch over the limit",
        {"path": "/events/batch", "body": {"events": [GOOD] * 6}},
        400,
        "invalid_event",
        "events",
    ),
    (
        "one bad item in a batch",
        {"path": "/events/batch", "body": {"events": [GOOD] * 3 + [{**GOOD, "user_id": None}]}},
        400,
        "invalid_event",
        "events[3].user_id",
    ),
    (
        "empty batch",
        {"path": "/events/batch", "body": {"events": []}},
        400,
        "invalid_event",
        "events",
    ),
]


@pytest.mark.parametrize(
    ("kwargs", "status", "error", "field"),
    [case[1:] for case in BAD_REQUESTS],
    ids=[case[0] for case in BAD_REQUESTS],
)
def test_bad_request_is_answered_in_json_and_stores_nothing(
    client: FlaskClient, kwargs: dict[str, Any], status: int, error: str, field: str
) -> None:
    response = post(client, kwargs.pop("body", None), **kwargs)
    assert response.status_code == status
    assert response.is_json
    body = response.get_json()
    assert body["error"] == error
    assert field in fields(response)
    assert all(
        set(detail) == {"field", "problem"} and detail["problem"] for detail in body["details"]
    )
    assert stored_count(client) == 0


def chunked_post(client: FlaskClient, body: bytes) -> TestResponse:
    # A chunked request: no Content-Length, a stream the server (gunicorn) terminates.
    return client.post(
        "/events",
        input_stream=io.BytesIO(body),
        headers={"X-API-Key": API_KEY, "Content-Type": "application/json"},
        environ_overrides={"HTTP_TRANSFER_ENCODING": "chunked", "wsgi.input_terminated": True},
    )


def test_chunked_body_over_the_limit_is_413_not_cut_short(client: FlaskClient, app: Flask) -> None:
    limit = app.config["MAX_CONTENT_LENGTH"]
    # Cut at the limit, this body would still be a valid event: it must be refused whole.
    valid_prefix = json.dumps(GOOD).encode()
    too_large = chunked_post(client, valid_prefix + b" " * limit)
    assert too_large.status_code == 413
    assert fields(too_large) == ["body"]
    assert stored_count(client) == 0
    exactly = chunked_post(client, valid_prefix + b" " * (limit - len(valid_prefix)))
    assert exactly.status_code == 201


def test_werkzeug_errors_come_back_in_the_json_shape(client: FlaskClient) -> None:
    missing = client.get("/nowhere")
    assert (missing.status_code, missing.get_json()["error"], fields(missing)) == (
        404,
        "not_found",
        ["path"],
    )
    not_allowed = client.delete("/events")
    assert not_allowed.status_code == 405
    assert not_allowed.get_json()["error"] == "method_not_allowed"
    assert "POST" in not_allowed.headers["Allow"]
    unknown = client.get("/events/01ARZ3NDEKTSV4RRFFQ69G5FAV")
    assert (unknown.status_code, fields(unknown)) == (404, ["event_id"])


# ---- idempotency --------------------------------------------------------------------------------


def test_same_idempotency_key_twice_stores_one_event(client: FlaskClient) -> None:
    headers = {"Idempotency-Key": "order-17"}
    first = post(client, GOOD, headers=headers)
    # The same JSON with other spacing and key order is the same request.
    again = post(
        client, None, headers=headers, raw='{ "event_type":"page.view","user_id":"user-1"}'
    )
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.get_json() == first.get_json()
    assert stored_count(client) == 1


def test_same_idempotency_key_with_another_body_is_a_conflict(client: FlaskClient) -> None:
    headers = {"Idempotency-Key": "order-17"}
    assert post(client, GOOD, headers=headers).status_code == 201
    conflict = post(client, {**GOOD, "user_id": "someone-else"}, headers=headers)
    assert conflict.status_code == 409
    assert conflict.get_json()["error"] == "idempotency_conflict"
    assert fields(conflict) == ["Idempotency-Key"]
    # The same key on the batch route is another request too.
    batch = post(client, {"events": [GOOD]}, path="/events/batch", headers=headers)
    assert batch.status_code == 409
    assert stored_count(client) == 1


def test_batch_idempotency_replays_every_original_event(client: FlaskClient) -> None:
    headers = {"Idempotency-Key": "batch-1"}
    body = {"events": [{**GOOD, "user_id": f"u{i}"} for i in range(3)]}
    first = post(client, body, path="/events/batch", headers=headers)
    again = post(client, body, path="/events/batch", headers=headers)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.get_json() == first.get_json()
    assert stored_count(client) == 3


def test_refused_request_does_not_use_up_its_idempotency_key(client: FlaskClient) -> None:
    headers = {"Idempotency-Key": "retry-me"}
    assert post(client, {"user_id": "u"}, headers=headers).status_code == 400
    assert post(client, GOOD, headers=headers).status_code == 201


def test_idempotency_key_outlives_the_app(tmp_path: Path, clock: FakeClock) -> None:
    config = {"DATABASE": tmp_path / "shared.db", "API_KEY": API_KEY, "CLOCK": clock}
    headers = {"Idempotency-Key": "k-1"}
    first = post(create_app(config).test_client(), GOOD, headers=headers)
    other = create_app(config).test_client()
    again = post(other, GOOD, headers=headers)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.get_json()["event"]["event_id"] == first.get_json()["event"]["event_id"]
    assert stored_count(other) == 1


# ---- reads --------------------------------------------------------------------------------------


def post_at(client: FlaskClient, clock: FakeClock, moments: list[datetime]) -> list[dict[str, Any]]:
    events = []
    for i, moment in enumerate(moments):
        clock.now = moment
        response = post(client, {**GOOD, "user_id": f"u{i}"})
        assert response.status_code == 201
        events.append(response.get_json()["event"])
    return events


def test_paging_with_cursor_returns_every_event_once_in_id_order(
    client: FlaskClient, clock: FakeClock
) -> None:
    # Several events per millisecond and a clock that steps back once.
    moments = [T0 + timedelta(milliseconds=i // 3) for i in range(20)] + [T0] * 3
    posted = post_at(client, clock, moments)
    ids = [e["event_id"] for e in posted]
    assert ids == sorted(ids)
    received = [e["received_at"] for e in posted]
    assert received == sorted(received)  # never backwards, even when the clock is
    pages = []
    cursor = None
    while True:
        query = {"limit": 4, **({"cursor": cursor} if cursor else {})}
        body = client.get("/events", query_string=query).get_json()
        pages.append(body["events"])
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert [len(p) for p in pages] == [4, 4, 4, 4, 4, 3]
    assert [e["event_id"] for p in pages for e in p] == ids


def test_paging_sees_events_that_commit_between_pages(
    client: FlaskClient, clock: FakeClock
) -> None:
    post_at(client, clock, [T0, T0])
    first = client.get("/events", query_string={"limit": 1}).get_json()
    late = post_at(client, clock, [T0 - timedelta(seconds=30)])[0]
    rest = all_events(client, cursor=first["next_cursor"])
    assert rest[-1] == late
    assert len(rest) == 2


def test_window_bounds_are_since_inclusive_until_exclusive(
    client: FlaskClient, clock: FakeClock
) -> None:
    moments = [T0 + timedelta(milliseconds=i) for i in range(6)]
    posted = post_at(client, clock, moments)

    def window(**params: str) -> list[str]:
        return [e["user_id"] for e in all_events(client, **params)]

    assert window(since=iso(moments[1]), until=iso(moments[4])) == ["u1", "u2", "u3"]
    assert window(since=posted[2]["received_at"]) == ["u2", "u3", "u4", "u5"]
    assert window(until=posted[2]["received_at"]) == ["u0", "u1"]
    assert window(since="2026-11-23T09:00:00.0015Z", until="2026-11-23T09:00:00.0035Z") == [
        "u2",
        "u3",
    ]
    assert window(since="2026-11-23T10:00:00.001+01:00", limit="1") == [
        "u1",
        "u2",
        "u3",
        "u4",
        "u5",
    ]
    assert window(since=iso(moments[3]), until=iso(moments[3])) == []
    assert format_ms(to_us(moments[5]) // 1000) == posted[5]["received_at"]


def test_only_a_window_that_just_ended_waits_for_writers() -> None:
    now_ms = to_us(T0) // 1000
    just_ended = parse_page_request({"until": iso(T0 - timedelta(seconds=1))}, 500, 5000)
    long_ago = parse_page_request({"until": iso(T0 - timedelta(minutes=2))}, 500, 5000)
    assert needs_settling(just_ended, now_ms)
    assert not needs_settling(long_ago, now_ms)
    assert not needs_settling(parse_page_request({}, 500, 5000), now_ms)


def test_read_of_a_window_just_ended_waits_for_the_write_in_flight(app: Flask) -> None:
    write_lock = app.extensions["events_store"].write_lock
    answers: dict[str, TestResponse] = {}

    def read(until: datetime) -> None:
        answers[iso(until)] = app.test_client().get("/events", query_string={"until": iso(until)})

    assert app.test_client().get("/healthz").status_code == 200  # schema made, lock free again
    with write_lock.hold():  # a writer that took its received_at and has not committed yet
        read(T0 - timedelta(minutes=5))  # long settled: answered at once
        recent = threading.Thread(target=read, args=(T0,))
        recent.start()
        recent.join(timeout=0.3)
        assert recent.is_alive()
    recent.join(timeout=10)
    assert [answer.status_code for answer in answers.values()] == [200, 200]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"since": "yesterday"}, "since"),
        ({"until": "2026-13-01T00:00:00Z"}, "until"),
        ({"since": "2026-11-23T09:00:00 01:00"}, "since"),
        ({"since": "2026-11-23T10:00:00Z", "until": "2026-11-23T09:00:00Z"}, "since"),
        ({"limit": "0"}, "limit"),
        ({"limit": "5001"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"cursor": "01ARZ3NDEKTSV4RRFFQ69G5FAV"}, "cursor"),
    ],
)
def test_bad_read_parameter_is_400_naming_it(
    client: FlaskClient, query: dict[str, str], field: str
) -> None:
    response = client.get("/events", query_string=query)
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_parameter"
    assert fields(response) == [field]


def test_reads_need_no_api_key_and_writes_do(client: FlaskClient) -> None:
    assert client.get("/events").status_code == 200
    assert client.post("/events", json=GOOD).status_code == 401


def test_healthz_is_503_when_the_database_is_unusable(tmp_path: Path) -> None:
    (tmp_path / "a-directory").mkdir()
    app = create_app({"DATABASE": tmp_path / "a-directory", "API_KEY": API_KEY})
    client = app.test_client()
    health = client.get("/healthz")
    assert health.status_code == 503
    assert health.get_json()["error"] == "unavailable"
    write = post(client, GOOD)
    assert write.status_code == 503
    assert fields(write) == ["database"]


def test_app_refuses_an_empty_api_key(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="API_KEY"):
        create_app({"DATABASE": tmp_path / "e.db", "API_KEY": ""})


# ---- what MongoDB cannot store: 400 naming the field, never a 500 ------------------------------

EVENT_TEXT = '"user_id": "u", "event_type": "x"'
# JSON text as sent: a number too large for a float parses as inf, and an escaped lone surrogate
# parses as text no UTF-8 encoder takes. Both used to be 500s.
UNSTORABLE_BODIES = [
    ("/events", f'{{{EVENT_TEXT}, "properties": {{"n": 1e999999}}}}', "properties.n"),
    ("/events", f'{{{EVENT_TEXT}, "properties": {{"n": [-1e400]}}}}', "properties.n.0"),
    ("/events", f'{{{EVENT_TEXT}, "properties": {{"s": "a\\ud800"}}}}', "properties.s"),
    ("/events", f'{{{EVENT_TEXT}, "properties": {{"\\udc00": 1}}}}', "properties"),
    ("/events", '{"user_id": "\\ud800", "event_type": "x"}', "user_id"),
    ("/events", '{"user_id": "u", "event_type": "x\\udfff"}', "event_type"),
    ("/events", f'{{{EVENT_TEXT}, "occurred_at": "2026-11-23T09:00:00\\ud800Z"}}', "occurred_at"),
    (
        "/events/batch",
        f'{{"events": [{{{EVENT_TEXT}}}, {{{EVENT_TEXT}}}, {{{EVENT_TEXT}}},'
        f' {{{EVENT_TEXT}, "properties": {{"x": 1e999999}}}}]}}',
        "events[3].properties.x",
    ),
    (
        "/events/batch",
        f'{{"events": [{{{EVENT_TEXT}}}, {{"user_id": "\\udbff", "event_type": "x"}}]}}',
        "events[1].user_id",
    ),
]


@pytest.mark.parametrize(("path", "text", "field"), UNSTORABLE_BODIES)
def test_unstorable_number_or_text_is_400_naming_the_field_in_the_consumers_words(
    client: FlaskClient, path: str, text: str, field: str
) -> None:
    response = post(client, None, path=path, raw=text)
    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.is_json
    body = response.get_json()
    assert body["error"] == "invalid_event"
    parsed = json.loads(text)
    items = parsed["events"] if "events" in parsed else [parsed]
    # Exactly the (path, problem) the shared rule gives for the bad item's field.
    for index, item in enumerate(items):
        prefix = f"events[{index}]." if "events" in parsed else ""
        for name in ("user_id", "event_type", "occurred_at", "properties"):
            found = value_problem(item.get(name), path=prefix + name)
            if found is not None:
                assert body["details"] == [{"field": found[0], "problem": found[1]}]
    assert fields(response) == [field]
    assert stored_count(client) == 0


@pytest.mark.parametrize(
    ("properties", "field", "key"),
    [
        ({"$where": "1"}, "properties", "$where"),
        ({"a.b": 1}, "properties", "a.b"),
        ({"page": {"$gt": 1}}, "properties.page", "$gt"),
        ({"list": [1, [{"x.y": 2}]]}, "properties.list.1.0", "x.y"),
        ({"a": {"b": {"c": {"d": {"$e": None}}}}}, "properties.a.b.c.d", "$e"),
    ],
)
def test_properties_keys_starting_with_dollar_or_holding_a_dot_are_400_at_any_depth(
    client: FlaskClient, properties: dict[str, Any], field: str, key: str
) -> None:
    single = post(client, {**GOOD, "properties": properties})
    assert single.status_code == 400
    assert single.get_json()["details"] == [{"field": field, "problem": f"key {key!r} {KEY_RULE}"}]
    batch = post(
        client, {"events": [GOOD, {**GOOD, "properties": properties}]}, path="/events/batch"
    )
    assert batch.status_code == 400
    assert fields(batch) == [f"events[1].{field}"]
    assert stored_count(client) == 0
    # The same keys one level down inside a plain value are fine: only keys are checked.
    assert post(client, {**GOOD, "properties": {"note": f"{key} is text"}}).status_code == 201


@pytest.mark.parametrize(
    "properties",
    [
        {"$where": "1"},
        {"a.b": 1},
        {f"k{i}": i for i in range(65)},
        {"k": "x" * MAX_PROPERTIES_BYTES},
    ],
    ids=["dollar key", "dotted key", "too many keys", "too large"],
)
def test_api_and_consumer_refuse_bad_properties_in_the_same_words(
    client: FlaskClient, properties: dict[str, Any]
) -> None:
    (detail,) = post(client, {**GOOD, "properties": properties}).get_json()["details"]
    sources = load_sources()
    topic = sources["user-events"].topic
    ctx = PipelineContext({topic: topic}, sources_by_topic(sources.values()))
    record = {
        "event_id": "01JAZ3V9Q8W4B5C6D7E8F9G0H1",
        **GOOD,
        "occurred_at": None,
        "properties": properties,
        "received_at": iso(T0),
    }
    message = InboundMessage(
        topic, 0, 0, b"k", json.dumps(record).encode(), (("schema_version", b"1"),)
    )
    refused = process_message(message, ctx, T0)
    assert isinstance(refused, Rejected)
    assert refused.reason == f"{detail['field']}: {detail['problem']}"


class BrokenBody(io.BytesIO):
    """A request body whose framing the server finds broken after `data` (as gunicorn raises it)."""

    def __init__(self, data: bytes, exc: Exception) -> None:
        super().__init__(data)
        self.exc = exc

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        if not data:
            raise self.exc
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


@pytest.mark.parametrize(
    ("exc", "at_limit"),
    [
        (http_errors.InvalidChunkSize(b"zz"), False),
        (http_errors.ChunkMissingTerminator(b"XX"), False),
        (http_errors.InvalidChunkExtension("bad"), True),
        # Gone just as the body reached the limit, when the API reads one byte more to tell.
        (http_errors.NoMoreData(b""), True),
    ],
    ids=["bad chunk size", "missing chunk terminator", "bad extension at limit", "gone at limit"],
)
def test_body_with_broken_framing_is_400_not_500(
    client: FlaskClient, app: Flask, exc: Exception, at_limit: bool
) -> None:
    start = json.dumps(GOOD).encode()
    data = start + b" " * (app.config["MAX_CONTENT_LENGTH"] - len(start)) if at_limit else b'{"'
    response = client.post(
        "/events",
        input_stream=BrokenBody(data, exc),
        headers={"X-API-Key": API_KEY, "Content-Type": "application/json"},
        environ_overrides={"HTTP_TRANSFER_ENCODING": "chunked", "wsgi.input_terminated": True},
    )
    assert response.status_code == 400, response.get_json()
    assert response.get_json()["error"] == "malformed_body"
    assert fields(response) == ["body"]
    assert stored_count(client) == 0


def test_api_key_outside_latin_1_is_401_not_500(client: FlaskClient) -> None:
    # Only an in-process WSGI client can send it (gunicorn decodes header bytes as latin-1).
    response = post(client, GOOD, key="ключ")
    assert response.status_code == 401
    assert fields(response) == ["X-API-Key"]


def test_stats_time_pushed_out_of_range_by_its_offset_is_400_not_500(client: FlaskClient) -> None:
    query = {"agg": "avg", "sensor": "t", "from": "0001-01-01T00:00:00+01:00", "to": iso(T0)}
    response = client.get("/stats", query_string=query)
    assert response.status_code == 400
    assert fields(response) == ["from"]


def test_options_is_answered_in_json_with_the_allowed_methods(client: FlaskClient) -> None:
    response = client.options("/events")
    assert response.status_code == 200
    assert response.is_json
    assert set(response.get_json()["allow"]) == {"GET", "HEAD", "OPTIONS", "POST"}
    assert set(response.allow) == {"GET", "HEAD", "OPTIONS", "POST"}


# ---- the server's own errors (gunicorn, before the app) ------------------------------------------


class FakeGunicornLog:
    """What the worker logs through, kept for the test."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def _keep(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self.lines.append(msg % args if args else msg)

    warning = exception = debug = info = error = _keep

    def access(self, *args: Any) -> None:
        self.lines.append("access")


def server_error_answer(exc: Exception) -> tuple[bytes, dict[str, str], Any]:
    """What EventsWorker writes to a client whose request failed with `exc`."""
    worker = EventsWorker(0, 0, [], None, 30, Config(), FakeGunicornLog())
    ours, theirs = socket.socketpair()
    try:
        worker.handle_error(None, ours, ("127.0.0.1", 40000), exc)
        ours.close()
        theirs.settimeout(5)
        raw = b""
        while chunk := theirs.recv(65536):
            raw += chunk
    finally:
        theirs.close()
        worker.tmp.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in header_lines)
    assert int(headers["Content-Length"]) == len(body)
    return status_line.encode(), headers, json.loads(body)


@pytest.mark.parametrize(
    ("exc", "status", "error", "field"),
    [
        (
            http_errors.LimitRequestHeaders("limit request headers fields size"),
            431,
            "request_header_fields_too_large",
            "headers",
        ),
        (http_errors.LimitRequestLine(10_240, 4094), 414, "request_uri_too_long", "request_line"),
        (http_errors.InvalidRequestLine("GARBAGE"), 400, "bad_request", "request_line"),
        (http_errors.InvalidHeaderName("Bad Header"), 400, "bad_request", "headers"),
        (http_errors.InvalidChunkSize(b"zz"), 400, "bad_request", "body"),
        (RuntimeError("boom"), 500, "internal_error", "request"),
    ],
)
def test_server_errors_are_answered_in_the_json_error_shape(
    client: FlaskClient, exc: Exception, status: int, error: str, field: str
) -> None:
    status_line, headers, body = server_error_answer(exc)
    assert status_line.split(b" ", 2)[1] == str(status).encode()
    assert headers["Content-Type"] == "application/json"
    assert headers["Connection"] == "close"
    assert body["error"] == error
    assert [d["field"] for d in body["details"]] == [field]
    assert all(d["problem"] for d in body["details"])
    if status == 500:
        assert body["details"][0]["problem"] == "RuntimeError"  # the kind, never the text
    error_schema = client.get("/openapi.json").get_json()["components"]["schemas"]["Error"]
    Draft202012Validator(error_schema).validate(body)


def test_server_error_falls_back_by_kind_when_gunicorn_wrote_nothing() -> None:
    for exc, status in ((http_errors.InvalidRequestLine("x"), 400), (RuntimeError("boom"), 500)):
        answer = json_error_response(b"", exc)
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(f"HTTP/1.1 {status} ".encode())
        assert b"Content-Type: application/json" in head
        assert json.loads(body)["details"][0]["field"] == (
            "request_line" if status == 400 else "request"
        )


def test_stack_serves_the_events_api_with_the_events_worker() -> None:
    argv = gunicorn_command(get_settings(), "producer.events.app:create_app()", 5000)
    assert argv[argv.index("--worker-class") + 1] == WORKER_CLASS
    assert load_class(WORKER_CLASS) is EventsWorker
    standin = gunicorn_command(get_settings(), "producer.standin.app:create_app()", 5001)
    assert standin[standin.index("--worker-class") + 1] == "gthread"


# ---- the OpenAPI document -----------------------------------------------------------------------


def openapi(client: FlaskClient) -> dict[str, Any]:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    assert response.is_json
    return dict(response.get_json())


def test_openapi_document_is_valid_openapi_3_1(client: FlaskClient) -> None:
    document = openapi(client)
    assert document["openapi"].startswith("3.1.")
    Draft202012Validator(OPENAPI_31).validate(document)
    for schema in document["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)


def test_openapi_document_describes_every_route_and_method(app: Flask, client: FlaskClient) -> None:
    paths = openapi(client)["paths"]
    routes: dict[str, set[str]] = {}
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = rule.rule.replace("<", "{").replace(">", "}")
        routes.setdefault(path, set()).update(m.lower() for m in rule.methods or ())
    assert set(paths) == set(routes)
    for path, methods in routes.items():
        assert set(paths[path]) == methods - {"head", "options"}, path
        for operation in paths[path].values():
            assert "default" in operation["responses"], path
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "path":
                    assert f"{{{parameter['name']}}}" in path


def test_openapi_document_holds_the_rules_the_routes_check(app: Flask, client: FlaskClient) -> None:
    document = openapi(client)
    schemas = document["components"]["schemas"]
    rules = event_rules()
    new_event = schemas["NewEvent"]
    for name, rule in (("user_id", rules.user_id), ("event_type", rules.event_type)):
        field = new_event["properties"][name]
        assert (field["pattern"], field["minLength"], field["maxLength"]) == (
            rule.pattern_text,
            rule.min_length,
            rule.max_length,
        )
    assert set(new_event["required"]) == {"user_id", "event_type"}
    assert new_event["additionalProperties"] is False
    assert schemas["Batch"]["properties"]["events"]["maxItems"] == app.config["BATCH_LIMIT"]
    assert schemas["Properties"]["maxProperties"] == rules.properties_max_keys == 64
    assert str(MAX_PROPERTIES_BYTES) in schemas["Properties"]["description"]
    assert KEY_RULE in schemas["Properties"]["description"]
    # The key pattern refuses exactly what the shared key rule refuses.
    for key in ["$where", "a.b", "", "ok", "with space", "x$"]:
        refused = value_problem({key: 1}) is not None
        assert (Draft202012Validator({"pattern": KEY_PATTERN}).is_valid(key)) is not refused, key
    assert document["components"]["securitySchemes"]["ApiKey"] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
    }
    paths = document["paths"]
    for path in ("/events", "/events/batch"):
        assert paths[path]["post"]["security"] == [{"ApiKey": []}]
        assert "Idempotency-Key" in [p["name"] for p in paths[path]["post"]["parameters"]]
    assert "security" not in paths["/events"]["get"]
    limit = next(p for p in paths["/events"]["get"]["parameters"] if p["name"] == "limit")
    assert limit["schema"]["maximum"] == app.config["MAX_PAGE_SIZE"]


def test_every_error_the_app_answers_fits_the_documented_error_shape(client: FlaskClient) -> None:
    validator = Draft202012Validator(openapi(client)["components"]["schemas"]["Error"])
    answers = [
        post(client, {**GOOD, "properties": {"$x": 1}}),
        post(client, GOOD, key=None),
        post(client, GOOD, content_type="text/plain"),
        client.get("/events", query_string={"limit": "0"}),
        client.get("/events/nope"),
        client.delete("/events"),
        client.get("/stats"),
    ]
    for answer in answers:
        assert answer.status_code >= 400
        validator.validate(answer.get_json())


def test_every_answer_says_how_long_the_server_spent_on_it(client: FlaskClient) -> None:
    accepted = post(client, {"user_id": "u-1", "event_type": "click"})
    refused = post(client, {"user_id": "", "event_type": "click"})
    health = client.get("/healthz")
    for response in (accepted, refused, health):
        duration = parse_duration_ms(response.headers.get("Server-Timing"))
        assert duration is not None and duration >= 0, response.headers


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("app;dur=12.5", 12.5),
        ('db;dur=3, app;desc="x";dur=4', 4.0),
        ("db;dur=3", None),
        ("app;dur=abc", None),
        (None, None),
    ],
)
def test_server_timing_parses_the_app_duration(header: str | None, expected: float | None) -> None:
    assert parse_duration_ms(header) == expected
