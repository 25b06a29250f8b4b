"""Pulling a window: pagination styles, retries, Retry-After, and what is refused."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from headwater.clients import delay_after
from headwater.settings import Settings
from headwater.sources import parse_sources
from producer.kafka_out import INVALID_KEY_PREFIX, encode_value, message_headers, message_key
from producer.pull import (
    PullStats,
    RetryPolicy,
    SourceError,
    SourceUnavailable,
    parse_retry_after,
    pull,
)

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
T1 = T0 + timedelta(minutes=10)
FAST = RetryPolicy(attempts=4, base_delay_s=0.01, max_delay_s=0.05)


class FakeResponse:
    def __init__(self, status: int, body: Any = None, headers: dict | None = None) -> None:
        self.status_code = status
        self._body = body
        self.headers = headers or {}
        self.text = str(body)

    def json(self) -> Any:
        if isinstance(self._body, Exception):
            raise self._body
        return self._body


class FakeSession:
    """Answers GETs from a script of responses (or exceptions), recording every request."""

    def __init__(self, script: list[Any]) -> None:
        self.script = list(script)
        self.requests: list[dict[str, str]] = []

    def get(self, url: str, params: dict, headers: dict, timeout: Any) -> FakeResponse:
        self.requests.append(dict(params))
        item = self.script.pop(0)
        if isinstance(item, Exception):
            raise item
        return item


def _source(**overrides: Any):
    spec: dict[str, Any] = {
        "base_url": "http://127.0.0.1:1",
        "route": "/r",
        "key_fields": ["id"],
        "event_time_field": "ts",
        "topic": "t",
        "collection": "t",
    }
    spec.update(overrides)
    if "contracts" not in spec:
        time_format = spec.get("event_time_format", "iso8601")
        fields: dict[str, Any] = {k: "string" for k in spec["key_fields"]}
        fields[spec["event_time_field"]] = {"type": "timestamp", "format": time_format}
        spec["contracts"] = {1: {"fields": fields}}
    return parse_sources({"sources": {"s": spec}})["s"]


def _rec(i: int, minute: int = 1) -> dict[str, Any]:
    ts = (T0 + timedelta(minutes=minute)).isoformat().replace("+00:00", "Z")
    return {"id": i, "ts": ts}


def _run(source: Any, session: FakeSession, sleeps: list[float] | None = None) -> list[Any]:
    slept = sleeps if sleeps is not None else []
    return list(
        pull(source, T0, T1, Settings(), session=session, policy=FAST, sleep=slept.append)  # type: ignore[arg-type]
    )


def test_cursor_pagination_follows_next_cursor_to_the_end() -> None:
    session = FakeSession(
        [
            FakeResponse(200, {"records": [_rec(1), _rec(2)], "next_cursor": "c1"}),
            FakeResponse(200, {"records": [_rec(3)], "next_cursor": None}),
        ]
    )
    assert [r["id"] for r in _run(_source(), session)] == [1, 2, 3]
    assert "cursor" not in session.requests[0]
    assert session.requests[1]["cursor"] == "c1"
    assert session.requests[0]["since"] == "2026-11-23T09:00:00Z"
    assert session.requests[0]["until"] == "2026-11-23T09:10:00Z"


def test_page_pagination_stops_on_a_short_page() -> None:
    source = _source(pagination={"style": "page", "page_size": 2})
    session = FakeSession(
        [
            FakeResponse(200, {"records": [_rec(1), _rec(2)]}),
            FakeResponse(200, {"records": [_rec(3)]}),
        ]
    )
    assert [r["id"] for r in _run(source, session)] == [1, 2, 3]
    assert [r["page"] for r in session.requests] == ["1", "2"]


def test_no_pagination_makes_one_request() -> None:
    source = _source(pagination={"style": "none"}, records_path="matches")
    session = FakeSession([FakeResponse(200, {"matches": [_rec(1)]})])
    assert len(_run(source, session)) == 1
    assert "limit" not in session.requests[0]


def test_500_twice_then_200_completes_with_exact_records() -> None:
    sleeps: list[float] = []
    session = FakeSession(
        [
            FakeResponse(500, "boom"),
            requests.ConnectionError("refused"),
            FakeResponse(200, {"records": [_rec(1)], "next_cursor": None}),
        ]
    )
    assert [r["id"] for r in _run(_source(), session, sleeps)] == [1]
    assert sleeps == [0.01, 0.02]


def test_429_waits_for_retry_after() -> None:
    sleeps: list[float] = []
    session = FakeSession(
        [
            FakeResponse(429, "slow down", {"Retry-After": "3"}),
            FakeResponse(200, {"records": [_rec(1)], "next_cursor": None}),
        ]
    )
    assert len(_run(_source(), session, sleeps)) == 1
    assert sleeps == [3.0]


def test_every_retry_is_counted_and_timeouts_are_retried() -> None:
    sleeps: list[float] = []
    stats = PullStats()
    session = FakeSession(
        [
            requests.Timeout("read timed out"),
            FakeResponse(502, "bad gateway"),
            FakeResponse(429, "slow down"),  # no Retry-After: the backoff decides
            FakeResponse(200, {"records": [_rec(1)], "next_cursor": None}),
        ]
    )
    records = pull(
        _source(),
        T0,
        T1,
        Settings(),
        session=session,  # type: ignore[arg-type]
        policy=FAST,
        stats=stats,
        sleep=sleeps.append,
    )
    assert len(list(records)) == 1
    assert sleeps == [0.01, 0.02, 0.04]
    assert stats.retries == 3


def test_a_retry_after_past_the_limit_fails_at_once() -> None:
    sleeps: list[float] = []
    session = FakeSession([FakeResponse(429, "slow down", {"Retry-After": "121"})])
    with pytest.raises(SourceUnavailable, match="rate limited for 121s"):
        _run(_source(), session, sleeps)
    assert sleeps == [] and len(session.requests) == 1


def test_rate_limited_to_the_last_attempt_gives_up() -> None:
    sleeps: list[float] = []
    session = FakeSession([FakeResponse(429, "slow down", {"Retry-After": "1"})] * FAST.attempts)
    with pytest.raises(SourceUnavailable, match="gave up after 4 attempts"):
        _run(_source(), session, sleeps)
    assert sleeps == [1.0, 1.0, 1.0]


def test_an_answer_that_is_not_json_is_refused_at_once() -> None:
    session = FakeSession([FakeResponse(200, ValueError("Expecting value"))])
    with pytest.raises(SourceError, match="not JSON"):
        _run(_source(), session)
    assert len(session.requests) == 1


def test_unpaginated_source_that_has_more_pages_is_an_error() -> None:
    source = _source(pagination={"style": "none"})
    session = FakeSession([FakeResponse(200, {"records": [_rec(1)], "next_cursor": "more"})])
    with pytest.raises(SourceError, match="pagination style is 'none'"):
        _run(source, session)


def test_client_error_is_raised_at_once_with_the_answer() -> None:
    session = FakeSession([FakeResponse(400, {"error": "bad_parameter"})])
    with pytest.raises(SourceError, match="HTTP 400"):
        _run(_source(), session)
    assert len(session.requests) == 1


def test_persistent_5xx_gives_up_after_the_policy() -> None:
    sleeps: list[float] = []
    session = FakeSession([FakeResponse(503, "down")] * FAST.attempts)
    with pytest.raises(SourceUnavailable, match="4 attempts"):
        _run(_source(), session, sleeps)
    assert len(session.requests) == FAST.attempts
    assert sleeps == [0.01, 0.02, 0.04]  # no sleep after the last attempt


def test_records_outside_the_window_are_counted_and_left_out() -> None:
    stats = PullStats()
    session = FakeSession(
        [
            FakeResponse(
                200, {"records": [_rec(1, -1), _rec(2, 5), _rec(3, 10)], "next_cursor": None}
            )
        ]
    )
    got = list(pull(_source(), T0, T1, Settings(), session=session, policy=FAST, stats=stats))  # type: ignore[arg-type]
    assert [r["id"] for r in got] == [2]
    assert stats.outside_window == 2
    assert stats.records == 1


def test_record_without_readable_time_is_kept_for_quarantine() -> None:
    session = FakeSession(
        [FakeResponse(200, {"records": [{"id": 1, "ts": "garbage"}], "next_cursor": None})]
    )
    assert len(_run(_source(), session)) == 1


def test_a_repeated_cursor_is_an_error_not_a_loop() -> None:
    page = FakeResponse(200, {"records": [_rec(1)], "next_cursor": "same"})
    with pytest.raises(SourceError, match="cursor repeated"):
        _run(_source(), FakeSession([page, page, page]))


def test_response_without_records_list_is_refused() -> None:
    with pytest.raises(SourceError, match="no list"):
        _run(_source(), FakeSession([FakeResponse(200, {"data": {}})]))


def test_backoff_is_exponential_and_capped() -> None:
    wait = RetryPolicy(base_delay_s=0.5, max_delay_s=4).backoff()
    assert [delay_after(wait, n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 4, 4]


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    now = datetime(2026, 11, 23, 9, 0, 0, tzinfo=UTC)
    assert parse_retry_after("7", now) == 7.0
    assert parse_retry_after("Mon, 23 Nov 2026 09:00:30 GMT", now) == 30.0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None


def test_message_key_is_the_natural_key_and_stable_without_one() -> None:
    source = _source(key_fields=["device_id", "ts"])
    record = {"device_id": "d1", "ts": "2026-11-23T09:00:00Z", "value": 1}
    assert message_key(source, record) == "d1|2026-11-23T09:00:00Z"
    broken = {"ts": "2026-11-23T09:00:00Z", "value": 1}
    key = message_key(source, broken)
    assert key.startswith(INVALID_KEY_PREFIX)
    assert key == message_key(source, dict(broken))
    assert key != message_key(source, {"ts": "2026-11-23T09:00:01Z", "value": 1})


def test_values_are_byte_stable_and_headers_name_the_run() -> None:
    record = {"b": 1, "a": "é"}
    assert encode_value(record) == encode_value(dict(record)) == '{"b":1,"a":"é"}'.encode()
    headers = dict(message_headers(_source(), T0, T1, "run-1"))
    assert headers == {
        "source": b"s",
        "schema_version": b"1",
        "window_start": b"2026-11-23T09:00:00Z",
        "window_end": b"2026-11-23T09:10:00Z",
        "run_id": b"run-1",
    }


def _pages_with_a_retry() -> list[Any]:
    return [
        FakeResponse(200, {"records": [_rec(1), _rec(2, -1)], "next_cursor": "c1"}),
        FakeResponse(503, "busy"),
        FakeResponse(429, "slow down", {"Retry-After": "2"}),
        FakeResponse(200, {"records": [_rec(3), _rec(4)], "next_cursor": "c2"}),
        FakeResponse(200, {"records": [_rec(5, 10)], "next_cursor": None}),
    ]


def test_a_prefetched_pull_yields_the_same_records_waits_and_stats() -> None:
    outcomes = []
    for prefetch in (0, 2):
        stats, sleeps = PullStats(), []
        session = FakeSession(_pages_with_a_retry())
        records = pull(
            _source(),
            T0,
            T1,
            Settings(),
            session=session,  # type: ignore[arg-type]
            policy=FAST,
            stats=stats,
            sleep=sleeps.append,
            prefetch=prefetch,
        )
        outcomes.append(([r["id"] for r in records], sleeps, stats, session.requests))
    assert outcomes[0] == outcomes[1]
    ids, sleeps, stats, _ = outcomes[1]
    assert ids == [1, 3, 4]
    assert sleeps == [0.01, 2.0]
    assert (stats.pages, stats.records, stats.outside_window, stats.retries) == (3, 3, 2, 2)


def test_a_prefetched_pull_raises_the_source_error_after_the_records_before_it() -> None:
    session = FakeSession(
        [
            FakeResponse(200, {"records": [_rec(1)], "next_cursor": "c1"}),
            FakeResponse(200, {"records": [_rec(2)], "next_cursor": "c2"}),
            FakeResponse(400, {"error": "bad_parameter"}),
        ]
    )
    got: list[int] = []
    records = pull(_source(), T0, T1, Settings(), session=session, policy=FAST, prefetch=2)  # type: ignore[arg-type]
    with pytest.raises(SourceError, match="HTTP 400"):
        for record in records:
            got.append(record["id"])
    assert got == [1, 2]


class EndlessSession:
    """A source whose every page has a next cursor: only closing the pull ends it."""

    def __init__(self) -> None:
        self.served = 0

    def get(self, url: str, params: dict, headers: dict, timeout: Any) -> FakeResponse:
        self.served += 1
        return FakeResponse(200, {"records": [_rec(self.served)], "next_cursor": f"c{self.served}"})


def test_closing_a_prefetched_pull_stops_its_thread() -> None:
    before = set(threading.enumerate())
    session = EndlessSession()
    records = pull(_source(), T0, T1, Settings(), session=session, policy=FAST, prefetch=2)  # type: ignore[arg-type]
    assert next(records)["id"] == 1
    records.close()
    assert set(threading.enumerate()) - before == set()
    assert session.served <= 1 + 2  # the page taken and at most two ahead
