"""The external-API stand-in: files as routes, exact windows, cursor paging, JSON errors."""

from __future__ import annotations

import json
import logging
import shutil
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from headwater.sources import Source
from producer.simulator import readings
from producer.standin import generate_data
from producer.standin.app import create_app
from producer.standin.datafiles import (
    TIME_FIELDS,
    declarations,
    declared_time_us,
    detect_time_field,
    event_time_us,
    parse_records,
)
from producer.standin.paging import (
    decode_cursor,
    device_page,
    encode_cursor,
    file_page,
)
from producer.standin.query import BadParameter, Window, parse_instant, parse_window

COMMITTED_DATA = Path(generate_data.__file__).parent / "data"
T0 = 1_700_000_000  # 2023-11-14T22:13:20Z

# Deliberately out of time order, with two ties (100 twice, 300 twice) in file order a/b.
METRICS = [
    {"id": 1, "val": 1.0, "time": T0 + 300, "tag": "a"},
    {"id": 2, "val": 2.0, "time": T0 + 100, "tag": "a"},
    {"id": 3, "val": 3.0, "time": T0 + 0},
    {"id": 4, "val": 4.0, "time": T0 + 100, "tag": "b"},
    {"id": 5, "val": 5.0, "time": T0 + 200},
    {"id": 6, "val": 6.0, "time": T0 + 300, "tag": "b"},
    {"id": 7, "val": 7.0, "time": T0 + 400},
]
EVENTS = [
    {"event": "b", "ts": "2024-01-01T00:00:02Z"},
    {"event": "a", "ts": "2024-01-01T00:00:01+00:00"},
    {"event": "c", "ts": "2024-01-01T01:00:03.250000+01:00"},  # 00:00:03.25Z
]
MATCHES = {
    "count": 3,
    "filters": {"season": "2025"},
    "matches": [
        {"id": 12, "utcDate": "2025-08-17T14:00:00Z"},
        {"id": 11, "utcDate": "2025-08-16T14:00:00Z"},
        {"id": 13, "utcDate": "2025-08-18T19:00:00Z"},
    ],
}


# Declared as scanned_at; `ts` is a decoy that guessing would pick (and order by, differently).
SCANS = [
    {"scan_id": "s3", "scanned_at": "2024-03-01T10:00:03Z", "ts": "2024-01-01T00:00:01Z"},
    {"scan_id": "s1", "scanned_at": "2024-03-01T10:00:01Z", "ts": "2024-01-01T00:00:03Z"},
    {"scan_id": "s4", "scanned_at": "2024-03-01T11:00:04+01:00"},  # 10:00:04Z
    {"scan_id": "s2", "scanned_at": "2024-03-01T10:00:02Z", "ts": "2024-01-01T00:00:02Z"},
    {"scan_id": "s5", "scanned_at": "2024-03-01T10:00:05Z"},
]


def declared(
    route: str, field: str, fmt: str = "iso8601", base_url: str = "{external_api_url}"
) -> Source:
    """A source that declares `route`'s event time (the stand-in reads nothing else of it)."""
    name = route.strip("/")
    # model_construct: only the route and the event time matter here; the rest of a declaration
    # (contracts, collection, ...) is validated in test_sources, not by the stand-in.
    return Source.model_construct(
        name=name,
        base_url=base_url,
        route=route,
        key_fields=("scan_id",),
        event_time_field=field,
        event_time_format=fmt,
        topic=name,
    )


PARCEL_SCANS = declared("/parcel-scans", "scanned_at")


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    write_jsonl(folder / "metrics.jsonl", METRICS)
    (folder / "events.json").write_text(json.dumps(EVENTS))
    (folder / "matches.json").write_text(json.dumps(MATCHES))
    (folder / "notes.txt").write_text("not a route")
    return folder


@pytest.fixture
def extra_dir(tmp_path: Path) -> Path:
    """The second data folder; not created: a test that needs it makes it."""
    return tmp_path / "extra"


@pytest.fixture
def sources() -> dict[str, Source]:
    """The declared sources the app sees; a test may change them while the app runs."""
    return {PARCEL_SCANS.name: PARCEL_SCANS}


@pytest.fixture
def app(data_dir: Path, extra_dir: Path, sources: dict[str, Source]) -> Flask:
    return create_app(
        {
            "DATA_DIR": data_dir,
            "EXTRA_DATA_DIR": extra_dir,
            "LOAD_SOURCES": lambda: sources,
            "PAGE_SIZE": 4,
            "MAX_PAGE_SIZE": 50,
            "SIMULATOR_DEVICES": 3,
        }
    )


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def get_ok(client: FlaskClient, url: str, **params: Any) -> dict[str, Any]:
    response = client.get(url, query_string=params)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def walk(client: FlaskClient, url: str, key: str = "records", **params: Any) -> list[Any]:
    """Every record of a window, following next_cursor to the end."""
    records: list[Any] = []
    cursor = None
    for _ in range(10_000):
        query = dict(params, **({"cursor": cursor} if cursor else {}))
        body = get_ok(client, url, **query)
        assert body["count"] == len(body[key])
        records += body[key]
        cursor = body["next_cursor"]
        if cursor is None:
            return records
        assert body["count"] > 0, "a page that promises more must not be empty"
    raise AssertionError("cursor walk did not end")


def bad_fields(client: FlaskClient, url: str, **params: Any) -> list[str]:
    response = client.get(url, query_string=params)
    assert response.status_code == 400, response.get_json()
    body = response.get_json()
    assert body["error"] == "bad_parameter"
    assert all(set(d) == {"field", "problem"} and d["problem"] for d in body["details"])
    return [d["field"] for d in body["details"]]


# ---- routes ----------------------------------------------------------------------------------


def test_every_data_file_is_a_route_and_other_files_are_not(client: FlaskClient) -> None:
    routes = ["/devices", "/events", "/matches", "/metrics"]
    assert get_ok(client, "/healthz") == {"status": "ok", "routes": routes}
    assert get_ok(client, "/") == {"routes": routes}
    assert client.get("/notes").status_code == 404


def test_unknown_route_is_404_listing_the_routes(client: FlaskClient) -> None:
    for url in ("/nope", "/nested/path"):
        response = client.get(url)
        assert response.status_code == 404
        body = response.get_json()
        assert body["error"] == "not_found" and body["detail"]
        assert "/metrics" in body["routes"] and "/devices" in body["routes"]


def test_wrong_method_is_answered_in_json(client: FlaskClient) -> None:
    response = client.post("/metrics")
    assert response.status_code == 405
    assert response.get_json()["error"] == "method_not_allowed"
    assert "GET" in response.headers["Allow"]


def test_a_file_added_after_start_becomes_a_route(client: FlaskClient, data_dir: Path) -> None:
    assert client.get("/late").status_code == 404
    write_jsonl(data_dir / "late.jsonl", [{"ts": "2024-01-01T00:00:00Z", "x": 1}])
    assert get_ok(client, "/late")["records"] == [{"ts": "2024-01-01T00:00:00Z", "x": 1}]
    assert "/late" in get_ok(client, "/healthz")["routes"]


def test_a_changed_file_is_reread_and_a_removed_one_disappears(
    client: FlaskClient, data_dir: Path
) -> None:
    assert get_ok(client, "/metrics", limit=50)["count"] == len(METRICS)
    write_jsonl(data_dir / "metrics.jsonl", [*METRICS, {"id": 8, "val": 8.0, "time": T0 + 500}])
    assert get_ok(client, "/metrics", limit=50)["count"] == len(METRICS) + 1
    (data_dir / "metrics.jsonl").unlink()
    assert client.get("/metrics").status_code == 404


def test_an_unreadable_file_is_503_json_not_500(client: FlaskClient, data_dir: Path) -> None:
    (data_dir / "half.jsonl").write_text('{"time": 1}\n{"time": ')
    response = client.get("/half")
    assert response.status_code == 503
    assert response.get_json()["error"] == "data_file_unavailable"


def test_a_file_named_like_an_app_route_is_not_served(client: FlaskClient, data_dir: Path) -> None:
    write_jsonl(data_dir / "devices.jsonl", [{"time": 1}])
    assert client.get("/devices").status_code == 400  # still the simulator: window required
    assert get_ok(client, "/healthz")["routes"].count("/devices") == 1


# ---- ordering, keys and windows -----------------------------------------------------------------


def test_records_come_in_event_time_order_with_ties_in_file_order(client: FlaskClient) -> None:
    body = get_ok(client, "/metrics", limit=50)
    assert [r["id"] for r in body["records"]] == [3, 2, 4, 5, 1, 6, 7]
    assert body["next_cursor"] is None and body["count"] == 7


def test_iso_times_with_offsets_are_ordered_by_instant(client: FlaskClient) -> None:
    assert [r["event"] for r in get_ok(client, "/events")["records"]] == ["a", "b", "c"]


def test_an_object_file_answers_under_its_own_list_key(client: FlaskClient) -> None:
    body = get_ok(client, "/matches")
    assert set(body) == {"matches", "count", "next_cursor"}
    assert [m["id"] for m in body["matches"]] == [11, 12, 13]


def test_window_is_since_inclusive_until_exclusive(client: FlaskClient) -> None:
    body = get_ok(client, "/metrics", since=T0 + 100, until=T0 + 300, limit=50)
    assert [r["id"] for r in body["records"]] == [2, 4, 5]
    iso = get_ok(
        client, "/metrics", since="2023-11-14T22:15:00Z", until="2023-11-14T23:18:20+01:00"
    )
    assert iso["records"] == body["records"][:4]


def test_either_bound_may_be_omitted_on_file_routes(client: FlaskClient) -> None:
    assert [r["id"] for r in get_ok(client, "/metrics", since=T0 + 300)["records"]] == [1, 6, 7]
    assert [r["id"] for r in get_ok(client, "/metrics", until=T0 + 100)["records"]] == [3]


def test_fractional_bounds_are_exact(client: FlaskClient) -> None:
    body = get_ok(client, "/events", since="2024-01-01T00:00:03.25Z")
    assert [r["event"] for r in body["records"]] == ["c"]
    body = get_ok(client, "/events", until="1704067203.25")
    assert [r["event"] for r in body["records"]] == ["a", "b"]


def test_date_from_and_date_to_are_whole_days_with_date_to_inclusive(client: FlaskClient) -> None:
    body = get_ok(client, "/matches", dateFrom="2025-08-16", dateTo="2025-08-17")
    assert [m["id"] for m in body["matches"]] == [11, 12]
    body = get_ok(client, "/matches", dateFrom="2025-08-18", dateTo="2025-08-18")
    assert [m["id"] for m in body["matches"]] == [13]


@pytest.mark.parametrize(
    ("params", "window"),
    [
        ({"since": T0 + 1000}, "after the last record"),
        ({"since": T0 + 50, "until": T0 + 50}, "empty"),
        ({"until": T0 - 1}, "before the first record"),
    ],
)
def test_an_exhausted_or_empty_window_is_an_empty_page(
    client: FlaskClient, params: dict[str, Any], window: str
) -> None:
    assert get_ok(client, "/metrics", **params) == {
        "records": [],
        "count": 0,
        "next_cursor": None,
    }, window


# ---- paging ------------------------------------------------------------------------------------


@pytest.mark.parametrize("limit", [1, 2, 3, 4, 6, 7, 50])
def test_cursor_walk_returns_every_record_exactly_once(client: FlaskClient, limit: int) -> None:
    everything = get_ok(client, "/metrics", limit=50)["records"]
    assert walk(client, "/metrics", limit=limit) == everything
    window = get_ok(client, "/metrics", since=T0 + 100, until=T0 + 400, limit=50)["records"]
    assert walk(client, "/metrics", since=T0 + 100, until=T0 + 400, limit=limit) == window


def test_default_page_size_applies_and_last_full_page_has_no_cursor(client: FlaskClient) -> None:
    first = get_ok(client, "/metrics")
    assert first["count"] == 4 and first["next_cursor"]
    second = get_ok(client, "/metrics", cursor=first["next_cursor"])
    assert second["count"] == 3 and second["next_cursor"] is None
    exact = get_ok(client, "/metrics", limit=7)
    assert exact["count"] == 7 and exact["next_cursor"] is None


def test_two_clients_keep_their_own_cursors(client: FlaskClient) -> None:
    a1 = get_ok(client, "/metrics", limit=2)
    b1 = get_ok(client, "/metrics", limit=3)
    a2 = get_ok(client, "/metrics", limit=2, cursor=a1["next_cursor"])
    b2 = get_ok(client, "/metrics", limit=3, cursor=b1["next_cursor"])
    assert [r["id"] for r in a1["records"] + a2["records"]] == [3, 2, 4, 5]
    assert [r["id"] for r in b1["records"] + b2["records"]] == [3, 2, 4, 5, 1, 6]


def test_same_window_written_differently_accepts_the_same_cursor(client: FlaskClient) -> None:
    first = get_ok(client, "/metrics", since=T0, limit=2)
    again = get_ok(client, "/metrics", since="2023-11-14T22:13:20Z", cursor=first["next_cursor"])
    assert [r["id"] for r in again["records"]][:1] == [4]


# ---- bad parameters ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 51}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"since": "yesterday"}, "since"),
        ({"until": "2024-13-01T00:00:00Z"}, "until"),
        ({"since": T0 + 10, "until": T0}, "since"),
        ({"dateFrom": "2025-08-16T00:00:00Z"}, "dateFrom"),
        ({"dateTo": "16/08/2025"}, "dateTo"),
        ({"since": T0, "dateFrom": "2025-08-16"}, "dateFrom"),
        ({"cursor": "garbage!"}, "cursor"),
        ({"cursor": "eyJ2IjoxfQ"}, "cursor"),  # valid base64 JSON, not a cursor
        ({"since": "99999999999999"}, "since"),
    ],
)
def test_bad_parameters_are_400_naming_the_parameter(
    client: FlaskClient, params: dict[str, Any], field: str
) -> None:
    assert bad_fields(client, "/metrics", **params) == [field]


def test_every_bad_parameter_is_named_at_once(client: FlaskClient) -> None:
    assert bad_fields(client, "/metrics", since="x", until="y", limit=-1) == [
        "since",
        "until",
        "limit",
    ]


def test_a_cursor_from_another_window_or_route_is_refused(client: FlaskClient) -> None:
    cursor = get_ok(client, "/metrics", since=T0, limit=2)["next_cursor"]
    assert bad_fields(client, "/metrics", since=T0 + 1, cursor=cursor) == ["cursor"]
    assert bad_fields(client, "/metrics", cursor=cursor) == ["cursor"]
    assert bad_fields(client, "/events", since=T0, cursor=cursor) == ["cursor"]


def test_windows_on_a_file_without_event_times_are_refused(
    client: FlaskClient, data_dir: Path
) -> None:
    write_jsonl(data_dir / "plain.jsonl", [{"n": 2}, {"n": 1}])
    assert get_ok(client, "/plain")["records"] == [{"n": 2}, {"n": 1}]
    assert bad_fields(client, "/plain", since=T0) == ["since"]
    guessed = ", ".join(repr(name) for name in TIME_FIELDS)
    assert problem(client, "/plain", until=T0) == (
        f"/plain has no event-time field to window on: records have none of {guessed}"
    )


# ---- declared event-time fields ------------------------------------------------------------------


def problem(client: FlaskClient, url: str, **params: Any) -> str:
    """The one problem of a 400."""
    response = client.get(url, query_string=params)
    assert response.status_code == 400, response.get_json()
    [detail] = response.get_json()["details"]
    return str(detail["problem"])


def scan_ids(records: list[dict[str, Any]]) -> list[str]:
    return [r["scan_id"] for r in records]


def test_a_declared_non_standard_field_orders_and_windows_exactly(
    client: FlaskClient, data_dir: Path
) -> None:
    write_jsonl(data_dir / "parcel-scans.jsonl", SCANS)
    assert scan_ids(get_ok(client, "/parcel-scans", limit=50)["records"]) == [
        "s1",
        "s2",
        "s3",
        "s4",
        "s5",
    ]
    # since inclusive, until exclusive: 10:00:04Z (written +01:00) is left out.
    body = get_ok(
        client, "/parcel-scans", since="2024-03-01T10:00:02Z", until="2024-03-01T10:00:04Z"
    )
    assert scan_ids(body["records"]) == ["s2", "s3"] and body["next_cursor"] is None
    for limit in (1, 2, 3):
        window = {"since": "2024-03-01T10:00:01Z", "until": "2024-03-01T10:00:05Z"}
        assert scan_ids(walk(client, "/parcel-scans", limit=limit, **window)) == [
            "s1",
            "s2",
            "s3",
            "s4",
        ]


def test_a_declared_epoch_ms_field_is_read_as_milliseconds(
    client: FlaskClient, data_dir: Path, sources: dict[str, Source]
) -> None:
    sources["pings"] = declared("/pings", "at_ms", "epoch_ms")
    ms = T0 * 1000
    offsets = [1000, 250, 0, 999, 1001]
    write_jsonl(data_dir / "pings.jsonl", [{"scan_id": o, "at_ms": ms + o} for o in offsets])
    body = get_ok(client, "/pings", since=f"{T0}.25", until=T0 + 1)
    assert scan_ids(body["records"]) == [250, 999]
    assert scan_ids(walk(client, "/pings", since=T0, limit=2)) == [0, 250, 999, 1000, 1001]


def test_a_declared_date_field_at_a_dotted_path_is_midnight_utc(
    client: FlaskClient, data_dir: Path, sources: dict[str, Source]
) -> None:
    sources["deliveries"] = declared("/deliveries", "shipment.day", "date")
    days = ["2025-08-17", "2025-08-16", "2025-08-18"]
    write_jsonl(
        data_dir / "deliveries.jsonl", [{"scan_id": d, "shipment": {"day": d}} for d in days]
    )
    body = get_ok(client, "/deliveries", since="2025-08-16T00:00:00Z", until="2025-08-18")
    assert scan_ids(body["records"]) == ["2025-08-16", "2025-08-17"]


def test_a_declared_field_no_record_has_refuses_windows_naming_it(
    client: FlaskClient, data_dir: Path
) -> None:
    write_jsonl(data_dir / "parcel-scans.jsonl", [{"scan_id": "b", "ts": 2}, {"scan_id": "a"}])
    assert problem(client, "/parcel-scans", since="2024-03-01T10:00:00Z") == (
        "/parcel-scans has no event-time field to window on: records have no 'scanned_at'"
    )
    # Unwindowed, the records are still served, in file order.
    assert scan_ids(get_ok(client, "/parcel-scans")["records"]) == ["b", "a"]


def test_a_declared_format_no_record_matches_refuses_windows_naming_it(
    client: FlaskClient, data_dir: Path, sources: dict[str, Source]
) -> None:
    sources["parcel-scans"] = declared("/parcel-scans", "scanned_at", "epoch_ms")
    write_jsonl(data_dir / "parcel-scans.jsonl", SCANS)
    assert problem(client, "/parcel-scans", until=T0) == (
        "/parcel-scans has no event-time field to window on: "
        "no record's 'scanned_at' reads as epoch_ms"
    )


def test_an_empty_declared_file_is_an_empty_window(client: FlaskClient, data_dir: Path) -> None:
    (data_dir / "parcel-scans.jsonl").write_text("")
    body = get_ok(client, "/parcel-scans", since="2024-03-01T10:00:00Z")
    assert body == {"records": [], "count": 0, "next_cursor": None}


def test_a_changed_declaration_reorders_the_cached_file(
    client: FlaskClient, data_dir: Path, sources: dict[str, Source]
) -> None:
    write_jsonl(data_dir / "parcel-scans.jsonl", SCANS)
    assert scan_ids(get_ok(client, "/parcel-scans")["records"])[:2] == ["s1", "s2"]
    sources["parcel-scans"] = declared("/parcel-scans", "ts")
    # By ts now; the records without one are left out.
    assert scan_ids(get_ok(client, "/parcel-scans")["records"]) == ["s3", "s2", "s1"]


def test_only_sources_on_the_standin_declare_its_routes(
    client: FlaskClient, data_dir: Path, sources: dict[str, Source]
) -> None:
    sources["parcel-scans"] = declared("/parcel-scans", "scanned_at", base_url="{flask_url}")
    write_jsonl(data_dir / "parcel-scans.jsonl", SCANS)
    # Not declared here: guessed, by the decoy ts.
    assert scan_ids(get_ok(client, "/parcel-scans")["records"]) == ["s3", "s2", "s1"]


def test_the_load_log_says_where_the_time_field_came_from(
    client: FlaskClient, data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_jsonl(data_dir / "parcel-scans.jsonl", SCANS)
    with caplog.at_level(logging.INFO, logger="producer.standin.datafiles"):
        get_ok(client, "/parcel-scans")
        get_ok(client, "/metrics")
    loaded = [r.getMessage() for r in caplog.records if "data file loaded" in r.getMessage()]
    assert any(
        "route=/parcel-scans" in line
        and "time_field=scanned_at time_field_from=declared source=parcel-scans" in line
        for line in loaded
    ), loaded
    assert any(
        "route=/metrics" in line and "time_field=time time_field_from=detected" in line
        for line in loaded
    ), loaded


def test_unreadable_sources_are_503_not_a_guess(data_dir: Path) -> None:
    def broken() -> dict[str, Source]:
        raise ValueError("sources.yaml: line 3: mapping values are not allowed here")

    client = create_app({"DATA_DIR": data_dir, "LOAD_SOURCES": broken}).test_client()
    response = client.get("/metrics")
    assert response.status_code == 503
    assert "sources unreadable" in response.get_json()["detail"]


# ---- the extra data folder -----------------------------------------------------------------------


def test_files_in_the_extra_folder_are_routes_once_it_exists(
    client: FlaskClient, extra_dir: Path
) -> None:
    assert client.get("/parcel-scans").status_code == 404
    extra_dir.mkdir()
    write_jsonl(extra_dir / "parcel-scans.jsonl", SCANS)
    assert "/parcel-scans" in get_ok(client, "/healthz")["routes"]
    body = get_ok(client, "/parcel-scans", since="2024-03-01T10:00:04Z")
    assert scan_ids(body["records"]) == ["s4", "s5"]
    (extra_dir / "parcel-scans.jsonl").unlink()
    assert client.get("/parcel-scans").status_code == 404


def test_a_name_in_both_folders_is_served_from_the_main_one_and_warned_once(
    client: FlaskClient, extra_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    extra_dir.mkdir()
    write_jsonl(extra_dir / "metrics.jsonl", [{"id": 99, "time": T0}])
    with caplog.at_level(logging.WARNING, logger="producer.standin.datafiles"):
        for _ in range(3):
            assert get_ok(client, "/metrics", limit=50)["count"] == len(METRICS)
    shadowed = [r for r in caplog.records if "route /metrics is served from" in r.getMessage()]
    assert len(shadowed) == 1, [r.getMessage() for r in caplog.records]
    assert get_ok(client, "/healthz")["routes"].count("/metrics") == 1


# ---- the simulator route -----------------------------------------------------------------------


SIM_SINCE = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


@pytest.mark.parametrize("limit", [1, 7, 45, 50])
def test_devices_paging_returns_devices_times_seconds_records_once(
    client: FlaskClient, limit: int
) -> None:
    until = SIM_SINCE + timedelta(seconds=30)
    got = walk(client, "/devices", since=iso(SIM_SINCE), until=iso(until), limit=limit)
    assert len(got) == 3 * 30
    assert len({(r["device_id"], r["ts"]) for r in got}) == 3 * 30
    assert got == list(readings(SIM_SINCE, until, 3))


def test_devices_count_and_window_are_honoured(client: FlaskClient) -> None:
    since = SIM_SINCE + timedelta(milliseconds=1)  # rounds up to the next whole second
    body = get_ok(
        client, "/devices", since=iso(since), until=iso(SIM_SINCE + timedelta(seconds=3)), devices=5
    )
    assert body["count"] == 4 and body["next_cursor"]
    got = walk(
        client, "/devices", since=iso(since), until=iso(SIM_SINCE + timedelta(seconds=3)), devices=5
    )
    assert Counter(r["ts"] for r in got) == {"2026-01-05T12:00:01Z": 5, "2026-01-05T12:00:02Z": 5}


def test_devices_requires_since_and_until(client: FlaskClient) -> None:
    assert bad_fields(client, "/devices", until=iso(SIM_SINCE)) == ["since"]
    assert bad_fields(client, "/devices", since=iso(SIM_SINCE)) == ["until"]
    assert bad_fields(client, "/devices") == ["since", "until"]


@pytest.mark.parametrize("devices", [0, 1001, "many"])
def test_devices_count_out_of_range_is_refused(client: FlaskClient, devices: Any) -> None:
    window = {"since": iso(SIM_SINCE), "until": iso(SIM_SINCE + timedelta(seconds=1))}
    assert bad_fields(client, "/devices", devices=devices, **window) == ["devices"]


def test_devices_cursor_is_bound_to_window_and_device_count(client: FlaskClient) -> None:
    window = {"since": iso(SIM_SINCE), "until": iso(SIM_SINCE + timedelta(seconds=10))}
    cursor = get_ok(client, "/devices", limit=2, **window)["next_cursor"]
    assert bad_fields(client, "/devices", cursor=cursor, devices=4, **window) == ["cursor"]
    other = {"since": iso(SIM_SINCE), "until": iso(SIM_SINCE + timedelta(seconds=11))}
    assert bad_fields(client, "/devices", cursor=cursor, **other) == ["cursor"]
    file_cursor = get_ok(client, "/metrics", limit=2)["next_cursor"]
    assert bad_fields(client, "/devices", cursor=file_cursor, **window) == ["cursor"]


def test_devices_empty_window_is_an_empty_page(client: FlaskClient) -> None:
    moment = iso(SIM_SINCE)
    assert get_ok(client, "/devices", since=moment, until=moment) == {
        "records": [],
        "count": 0,
        "next_cursor": None,
    }


# ---- pure parts ----------------------------------------------------------------------------------


def test_instants_in_every_accepted_form_are_the_same_microsecond() -> None:
    forms = ["1704067200", "1704067200.0", "2024-01-01T00:00:00Z", "2024-01-01T01:00:00+01:00"]
    assert {parse_instant("since", f) for f in forms} == {1_704_067_200_000_000}
    assert parse_instant("since", "1704067200.000001") == 1_704_067_200_000_001


def test_window_from_dates_spans_whole_days() -> None:
    window = parse_window({"dateFrom": "2024-01-01", "dateTo": "2024-01-01"}, required=True)
    assert window.until_us - window.since_us == 86_400 * 1_000_000  # type: ignore[operator]


def test_cursor_round_trips_and_rejects_tampering() -> None:
    window = Window(1, 2)
    token = encode_cursor("metrics", window, (5, 6))
    assert decode_cursor(token)["a"] == [5, 6]
    assert "=" not in token
    with pytest.raises(BadParameter):
        decode_cursor(token[:-3])


def test_file_page_slices_by_key_and_resumes_after_a_position() -> None:
    keys = [(10, 0), (20, 1), (20, 2), (30, 3)]
    page = file_page(keys, Window(20, None), None, 1)
    assert (page.start, page.end, page.next_after) == (1, 2, (20, 1))
    page = file_page(keys, Window(20, None), (20, 1), 5)
    assert (page.start, page.end, page.next_after) == (2, 4, None)
    assert file_page(keys, Window(40, None), None, 5).end == 4  # empty: start == end


def test_device_page_positions_follow_ts_then_device() -> None:
    window = Window(0, 3_000_000)
    page = device_page(window, 2, (0, 1), 3)
    assert page.positions == [(1, 0), (1, 1), (2, 0)]
    assert page.next_after == (2, 0)
    assert device_page(window, 2, (2, 0), 3).next_after is None


def test_event_time_field_detection_and_parsing() -> None:
    assert detect_time_field([{"ts": "x"}, {"time": 1}]) == "time"
    assert detect_time_field([{"utcDate": "x"}]) == "utcDate"
    assert detect_time_field([{"n": 1}]) is None
    assert event_time_us(1.5) == 1_500_000
    assert event_time_us("1970-01-01T00:00:01Z") == 1_000_000
    assert event_time_us(True) is None and event_time_us("soon") is None


@pytest.mark.parametrize(
    ("value", "fmt", "us"),
    [
        ("2024-01-01T00:00:00Z", "iso8601", 1_704_067_200_000_000),
        ("2024-01-01T01:00:00.5+01:00", "iso8601", 1_704_067_200_500_000),
        ("2024-01-01", "date", 1_704_067_200_000_000),
        (1_704_067_200, "epoch_s", 1_704_067_200_000_000),
        (1_704_067_200.1, "epoch_s", 1_704_067_200_100_000),
        (1_704_067_200_001, "epoch_ms", 1_704_067_200_001_000),
        (1_704_067_200_000.5, "epoch_ms", 1_704_067_200_000_500),
        ("1704067200", "epoch_s", None),  # the puller reads epoch formats as numbers only
        (True, "epoch_ms", None),
        (1_704_067_200, "iso8601", None),
        ("soon", "date", None),
        (None, "iso8601", None),
    ],
)
def test_declared_event_times_are_read_exactly_as_declared(value: Any, fmt: Any, us: Any) -> None:
    assert declared_time_us(value, fmt) == us


def test_a_route_is_declared_only_by_sources_on_the_standin() -> None:
    elsewhere = declared("/parcel-scans", "ts", base_url="{flask_url}")
    found = declarations("parcel-scans", {"a": elsewhere, "b": PARCEL_SCANS})
    assert [(d.source, d.time.field, d.time.format) for d in found] == [
        ("parcel-scans", "scanned_at", "iso8601")
    ]
    assert declarations("other", {"b": PARCEL_SCANS}) == []


def test_object_files_need_exactly_one_list() -> None:
    assert parse_records('{"matches": [1], "count": 1}', ".json") == ("matches", [1])
    assert parse_records("[1, 2]", ".json") == ("records", [1, 2])
    for text in ('{"a": [], "b": []}', '{"a": 1}', "3"):
        with pytest.raises(ValueError, match="list"):
            parse_records(text, ".json")


# ---- the committed data ------------------------------------------------------------------------


def test_committed_data_is_what_the_generator_writes(tmp_path: Path) -> None:
    for path in generate_data.write_all(tmp_path):
        assert path.read_bytes() == (COMMITTED_DATA / path.name).read_bytes(), path.name


def test_committed_data_files_have_the_documented_shapes() -> None:
    metrics = [json.loads(line) for line in (COMMITTED_DATA / "machine-metrics.jsonl").open()]
    assert {r["id"] for r in metrics} == set(range(20))
    assert len(metrics) == 20 * 3 * 24 * 12
    assert min(r["time"] for r in metrics) >= 1_624_320_000  # 2021-06-22T00:00:00Z
    assert max(r["time"] for r in metrics) < 1_624_320_000 + 3 * 86_400

    orders = [json.loads(line) for line in (COMMITTED_DATA / "work-orders.jsonl").open()]
    times = [r["time"] for r in orders]
    assert times != sorted(times), "the file is not time-sorted; the server sorts"
    for product in range(5):
        series = [r["production"] for r in orders if r["product"] == product]
        assert len(series) == 3 * 24 * 6 and series == sorted(series)

    season = json.loads((COMMITTED_DATA / "matches.json").read_text())
    matches = season["matches"]
    assert list(season) == ["matches"] and len(matches) == 380
    pairs = Counter((m["homeTeam"]["id"], m["awayTeam"]["id"]) for m in matches)
    assert len(pairs) == 380 and len({m["homeTeam"]["id"] for m in matches}) == 20
    assert {m["status"] for m in matches} == {"FINISHED", "SCHEDULED"}
    for match in matches:
        finished = match["status"] == "FINISHED"
        assert (match["score"]["fullTime"]["home"] is not None) == finished
        assert match["utcDate"].endswith("Z")
    assert "2025-08" <= min(m["utcDate"] for m in matches) < max(m["utcDate"] for m in matches)
    assert max(m["utcDate"] for m in matches) < "2026-06"


def test_committed_data_serves_through_the_app() -> None:
    client = create_app({"DATA_DIR": COMMITTED_DATA}).test_client()
    routes = get_ok(client, "/healthz")["routes"]
    assert routes == ["/devices", "/machine-metrics", "/matches", "/work-orders"]
    body = get_ok(client, "/matches", dateFrom="2025-08-16", dateTo="2025-08-18")
    assert body["count"] == 10 and body["next_cursor"] is None
    hour = walk(client, "/work-orders", since=1_624_320_000, until=1_624_323_600, limit=7)
    assert len(hour) == 5 * 6
    assert [r["time"] for r in hour] == sorted(r["time"] for r in hour)


def test_committed_data_is_windowed_by_the_fields_sources_yaml_declares(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = create_app({"DATA_DIR": COMMITTED_DATA, "EXTRA_DATA_DIR": None}).test_client()
    with caplog.at_level(logging.INFO, logger="producer.standin.datafiles"):
        for path in sorted(COMMITTED_DATA.iterdir()):
            get_ok(client, f"/{path.stem}", limit=1)
    loaded = [r.getMessage() for r in caplog.records if "data file loaded" in r.getMessage()]
    assert len(loaded) == 3 and all("time_field_from=declared" in line for line in loaded), loaded


def test_data_dir_can_be_copied_and_served_elsewhere(tmp_path: Path) -> None:
    copy = shutil.copytree(COMMITTED_DATA, tmp_path / "copy")
    client = create_app({"DATA_DIR": copy}).test_client()
    assert get_ok(client, "/machine-metrics", limit=1)["count"] == 1


def test_out_of_range_settings_fail_at_startup(data_dir: Path) -> None:
    with pytest.raises(ValueError, match="PAGE_SIZE"):
        create_app({"DATA_DIR": data_dir, "PAGE_SIZE": 10, "MAX_PAGE_SIZE": 5})
    with pytest.raises(ValueError, match="DATA_DIR"):
        create_app({"DATA_DIR": data_dir / "missing"})
