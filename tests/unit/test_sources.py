"""Source declarations and the pure rules on them: keys, window bounds, time formats."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from headwater.settings import Settings
from headwater.sources import (
    format_time,
    get_path,
    in_window,
    load_sources,
    parse_sources,
    parse_time,
    pipeline_topics,
    record_key,
    window_params,
)
from tests.unit.declared import entry

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def _source(**overrides: object) -> dict:
    return entry(**overrides)


def test_declared_sources_load_with_one_topic_each() -> None:
    sources = load_sources()
    assert {"devices", "user-events"} <= set(sources)
    assert len(pipeline_topics()) == len(sources)
    assert sources["devices"].key_fields == ("device_id", "ts")
    assert sources["user-events"].auth is not None


def test_base_url_comes_from_settings_not_the_file() -> None:
    devices = load_sources()["devices"]
    settings = Settings()
    expected_port = settings.services.external_api_port
    assert devices.url(settings) == f"http://127.0.0.1:{expected_port}/devices"


def test_two_sources_on_one_topic_are_refused() -> None:
    with pytest.raises(ValueError, match="topic t is also the topic of a, b"):
        parse_sources({"sources": {"a": _source(topic="t"), "b": _source(topic="t")}})


def test_unknown_keys_and_missing_key_fields_are_refused() -> None:
    with pytest.raises(ValueError, match="pagenation: Extra inputs are not permitted"):
        parse_sources({"sources": {"a": _source(pagenation={"style": "cursor"})}})
    with pytest.raises(ValueError, match="key_fields must name at least one field"):
        parse_sources(
            {
                "sources": {
                    "a": _source(key_fields=[], contracts={1: {"fields": {"ts": "timestamp"}}})
                }
            }
        )


def test_record_key_joins_natural_key_fields() -> None:
    source = parse_sources({"sources": {"a": _source()}})["a"]
    assert record_key(source, {"ts": "2026-11-23T09:00:00Z", "device_id": "d1"}) == (
        "d1|2026-11-23T09:00:00Z"
    )
    numeric = parse_sources({"sources": {"a": _source(key_fields=["id", "time"])}})["a"]
    assert record_key(numeric, {"id": 19, "time": 1624377478}) == "19|1624377478"
    with pytest.raises(KeyError, match="ts"):
        record_key(source, {"device_id": "d1"})


def test_window_params_in_every_format() -> None:
    until = T0 + timedelta(minutes=10)
    iso = parse_sources({"sources": {"a": _source()}})["a"]
    assert window_params(iso, T0, until) == {
        "since": "2026-11-23T09:00:00Z",
        "until": "2026-11-23T09:10:00Z",
    }
    epoch = parse_sources({"sources": {"a": _source(window={"format": "epoch_s"})}})["a"]
    assert window_params(epoch, T0, until)["since"] == str(int(T0.timestamp()))
    dated = parse_sources(
        {
            "sources": {
                "a": _source(
                    window={
                        "since_param": "dateFrom",
                        "until_param": "dateTo",
                        "format": "date",
                        "until_inclusive": True,
                    }
                )
            }
        }
    )["a"]
    day = datetime(2026, 1, 1, tzinfo=UTC)
    assert window_params(dated, day, day + timedelta(days=1)) == {
        "dateFrom": "2026-01-01",
        "dateTo": "2026-01-01",
    }


def test_time_round_trips() -> None:
    assert parse_time("2026-11-23T09:00:00Z", "iso8601") == T0
    assert parse_time("2026-11-23T10:00:00+01:00", "iso8601") == T0
    assert parse_time(int(T0.timestamp()), "epoch_s") == T0
    assert parse_time(int(T0.timestamp()) * 1000, "epoch_ms") == T0
    assert format_time(T0.astimezone(timezone(timedelta(hours=2))), "iso8601") == (
        "2026-11-23T09:00:00Z"
    )
    with pytest.raises(ValueError):
        parse_time("yesterday", "iso8601")
    with pytest.raises(ValueError):
        parse_time(True, "epoch_s")


def test_window_is_half_open() -> None:
    until = T0 + timedelta(minutes=1)
    assert in_window(T0, T0, until)
    assert not in_window(until, T0, until)


def test_get_path_follows_dots_and_stops_on_missing() -> None:
    doc = {"a": {"b": [{"c": 1}]}}
    assert get_path(doc, "a.b.0.c") == 1
    assert get_path(doc, "a.x.c") is None
    assert get_path(doc, "") == doc
