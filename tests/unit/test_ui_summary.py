"""The Headwater page's figures (pure): per source, its last reconciled window and lag; per check,
its latest result and failures; the page shows what the JSON says, to logged-in users only."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any

import pytest
from fastapi import FastAPI, HTTPException, Request
from fastapi.testclient import TestClient

from headwater.health_checks import ALL_CHECKS, CHECK_FRESHNESS, CHECK_LAG
from headwater.pipeline_summary import (
    PIPELINE_DAGS,
    SummaryInputs,
    build_summary,
    ingest_dag_id,
    lag_total,
    partition_lag,
)
from headwater.settings import REPO_ROOT
from headwater.sources import parse_sources
from tests.unit.declared import entry

NOW = datetime(2026, 12, 2, 18, 0, tzinfo=UTC)
SOURCES = parse_sources(
    {
        "sources": {
            "devices": entry(topic="devices", collection="readings", description="sim"),
            "user-events": entry(topic="user-events", collection="user_events"),
        }
    }
)


def _reconcile(source: str, minutes_ago: int, **fields: Any) -> dict[str, Any]:
    until = NOW - timedelta(minutes=minutes_ago)
    return {
        "_id": f"{source}|x|{minutes_ago}",
        "source": source,
        "since": until - timedelta(minutes=1),
        "until": until,
        "run_id": f"scheduled__{minutes_ago}",
        "outcome": "ok",
        "pulled": 480,
        "produced": 480,
        "stored": 475,
        "rejected": 5,
        "error": None,
        "reconciled_at": until + timedelta(seconds=20),
        **fields,
    }


def _heartbeat(
    instance: str, age_s: float, partitions: list[tuple], phase: str = "running"
) -> dict:
    return {
        "instance": instance,
        "phase": phase,
        "heartbeat_at": NOW - timedelta(seconds=age_s),
        "assigned": [f"{t}[{p}]" for t, p, *_ in partitions],
        "partitions": [
            {"topic": t, "partition": p, "committed": c, "high": h, "lag": lag}
            for t, p, c, h, lag in partitions
        ],
        "lag_total": sum(lag for *_, lag in partitions),
        "last_error": None,
    }


def _inputs(**overrides: Any) -> SummaryInputs:
    values: dict[str, Any] = {
        "sources": list(SOURCES.values()),
        "reconciles": {
            "devices": [
                _reconcile("devices", 1),
                _reconcile("devices", 2, outcome="failed", stored=400, error="short"),
            ]
        },
        "heartbeats": [
            _heartbeat("consumer-1", 2, [("devices", 0, 100, 103, 3), ("devices", 1, 50, 50, 0)]),
            _heartbeat("consumer-2", 3, [("devices", 2, 7, 7, 0), ("user-events", 0, 9, 9, 0)]),
        ],
        "health_latest": {
            CHECK_LAG: {
                "check": CHECK_LAG,
                "ok": False,
                "detail": "devices lag 2000 > 1000",
                "checked_at": NOW - timedelta(seconds=40),
                "dag_run_id": "scheduled__h2",
            },
            CHECK_FRESHNESS: {
                "check": CHECK_FRESHNESS,
                "ok": True,
                "detail": "fresh",
                "measured": {"age_s": {"devices": 61.0}, "bound_s": {"devices": 180.0}},
                "checked_at": NOW - timedelta(seconds=40),
                "dag_run_id": "scheduled__h2",
            },
        },
        "health_failures": {
            CHECK_LAG: [
                {
                    "check": CHECK_LAG,
                    "ok": False,
                    "dag_run_id": "scheduled__h2",
                    "failures": 3,
                    "last_failure": {"at": NOW - timedelta(seconds=40), "detail": "lag 2000"},
                },
                {
                    "check": CHECK_LAG,
                    "ok": True,
                    "dag_run_id": "scheduled__h1",
                    "failures": 1,
                    "last_failure": {"at": NOW - timedelta(hours=1), "detail": "lag 1500"},
                },
            ]
        },
        "group": "headwater-consumer",
        "stale_after_s": 30.0,
    }
    values.update(overrides)
    return SummaryInputs(**values)


def test_each_source_shows_its_newest_reconciled_window_with_its_four_numbers() -> None:
    summary = build_summary(_inputs(), NOW)
    devices, events = summary["sources"]
    assert devices["name"] == "devices"
    assert devices["last_reconcile"] == {
        "since": "2026-12-02T17:58:00+00:00",
        "until": "2026-12-02T17:59:00+00:00",
        "run_id": "scheduled__1",
        "outcome": "ok",
        "pulled": 480,
        "produced": 480,
        "stored": 475,
        "rejected": 5,
        "error": None,
        "reconciled_at": "2026-12-02T17:59:20+00:00",
    }
    assert [r["outcome"] for r in devices["recent_reconciles"]] == ["ok", "failed"]
    # A source never reconciled says so rather than borrowing another's numbers.
    assert events["last_reconcile"] is None and events["recent_reconciles"] == []


def test_a_failed_last_reconcile_is_named_in_the_overview() -> None:
    failed = _reconcile("devices", 0, outcome="failed", stored=None, rejected=None, error="x")
    reconciles = {"devices": [failed, _reconcile("devices", 1)]}
    summary = build_summary(_inputs(reconciles=reconciles), NOW)
    assert summary["overview"]["failed_reconciles"] == ["devices"]
    assert summary["sources"][0]["last_reconcile"]["stored"] is None


def test_lag_is_listed_per_partition_of_the_sources_topic_across_members() -> None:
    devices, events = build_summary(_inputs(), NOW)["sources"]
    assert [(p["partition"], p["lag"], p["member"]) for p in devices["lag"]["partitions"]] == [
        (0, 3, "consumer-1"),
        (1, 0, "consumer-1"),
        (2, 0, "consumer-2"),
    ]
    assert devices["lag"]["total"] == 3
    assert events["lag"]["total"] == 0


def test_after_a_rebalance_the_newest_report_of_a_partition_wins_and_a_dead_one_is_marked() -> None:
    beats = [
        _heartbeat("consumer-1", 120, [("devices", 0, 10, 500, 490)], phase="running"),
        _heartbeat("consumer-2", 2, [("devices", 0, 499, 500, 1)]),
        _heartbeat("consumer-3", 90, [("devices", 1, 5, 9, 4)], phase="stopped"),
    ]
    rows = partition_lag(beats, NOW, 30.0)["devices"]
    assert [(r["partition"], r["member"], r["lag"], r["member_live"]) for r in rows] == [
        (0, "consumer-2", 1, True),
        (1, "consumer-3", 4, False),
    ]


def test_a_partition_with_unknown_lag_makes_the_total_unknown_not_smaller() -> None:
    assert lag_total([{"lag": 3}, {"lag": None}]) is None
    assert lag_total([]) is None
    assert lag_total([{"lag": 3}, {"lag": 0}]) == 3


def test_members_are_live_only_with_a_fresh_heartbeat_and_not_stopping() -> None:
    beats = [
        _heartbeat("consumer-1", 2, []),
        _heartbeat("consumer-2", 31, []),
        _heartbeat("consumer-3", 1, [], phase="stopping"),
    ]
    consumer = build_summary(_inputs(heartbeats=beats), NOW)["consumer"]
    assert [(m["instance"], m["live"]) for m in consumer["members"]] == [
        ("consumer-3", False),
        ("consumer-1", True),
        ("consumer-2", False),
    ]
    assert build_summary(_inputs(heartbeats=beats), NOW)["overview"]["members_live"] == 1


def test_every_check_has_a_row_with_its_latest_result_and_failure_history() -> None:
    summary = build_summary(_inputs(), NOW)
    health = {h["check"]: h for h in summary["health"]}
    assert list(health) == list(ALL_CHECKS)
    lag = health[CHECK_LAG]
    assert lag["latest"] == {
        "ok": False,
        "detail": "devices lag 2000 > 1000",
        "checked_at": "2026-12-02T17:59:20+00:00",
        "dag_run_id": "scheduled__h2",
    }
    assert [(f["detail"], f["failed_pokes"], f["recovered"]) for f in lag["failures"]] == [
        ("lag 2000", 3, False),
        ("lag 1500", 1, True),
    ]
    assert summary["overview"]["checks_failing"] == [CHECK_LAG]
    never = set(ALL_CHECKS) - {CHECK_LAG, CHECK_FRESHNESS}
    assert set(summary["overview"]["checks_never_run"]) == never


def test_freshness_comes_from_the_latest_check_for_the_sources_it_watches() -> None:
    devices, events = build_summary(_inputs(), NOW)["sources"]
    assert devices["freshness"] == {
        "age_s": 61.0,
        "bound_s": 180.0,
        "checked_at": "2026-12-02T17:59:20+00:00",
    }
    assert events["freshness"] is None


def test_dag_links_cover_every_ingest_dag_and_the_pipelines_own_under_the_ui_root() -> None:
    summary = build_summary(_inputs(), NOW, airflow_root="/airflow/")
    assert [d["dag_id"] for d in summary["dags"]] == [
        "ingest_devices",
        "ingest_user_events",
        *PIPELINE_DAGS,
    ]
    assert summary["sources"][1]["dag_url"] == "/airflow/dags/ingest_user_events"
    assert ingest_dag_id("work-orders") == "ingest_work_orders"


def test_an_empty_database_gives_a_summary_with_nothing_invented() -> None:
    empty = _inputs(reconciles={}, heartbeats=[], health_latest={}, health_failures={})
    summary = build_summary(empty, NOW)
    assert all(s["last_reconcile"] is None for s in summary["sources"])
    assert all(s["lag"] == {"total": None, "partitions": []} for s in summary["sources"])
    assert summary["overview"]["checks_never_run"] == list(ALL_CHECKS)
    assert summary["overview"]["members_live"] == 0


# ---- the page and the app (plugins/headwater_ui, imported the way Airflow does) ---------------


@pytest.fixture(scope="module")
def ui() -> Iterator[dict[str, ModuleType]]:
    plugins = str(REPO_ROOT / "plugins")
    added = plugins not in sys.path
    if added:
        sys.path.insert(0, plugins)
    yield {
        "page": importlib.import_module("headwater_ui.ui_page"),
        "app": importlib.import_module("headwater_ui.ui_app"),
    }
    if added:
        sys.path.remove(plugins)


def test_the_page_shows_the_figures_of_the_summary_in_findable_cells(ui: dict) -> None:
    summary = build_summary(_inputs(), NOW)
    html = ui["page"].render_page(summary)
    assert '<tr data-source="devices">' in html
    assert '<td data-field="stored" class="n">475</td>' in html
    assert '<td data-field="rejected" class="n">5</td>' in html
    assert '<td data-field="lag_total" class="n">3</td>' in html
    assert 'href="/dags/ingest_devices"' in html
    assert 'href="/dags/replay_rejected"' in html
    assert "devices lag 2000 &gt; 1000" in html


def test_the_page_escapes_text_from_the_database(ui: dict) -> None:
    hostile = _reconcile("devices", 0, outcome="failed", error="<script>alert(1)</script>")
    html = ui["page"].render_page(build_summary(_inputs(reconciles={"devices": [hostile]}), NOW))
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def _client(ui: dict, allowed: bool, logged_in: bool = True) -> TestClient:
    summary = build_summary(_inputs(), NOW)
    roots: list[str] = []

    def read(root: str) -> dict[str, Any]:
        roots.append(root)
        return summary

    def access(request: Request) -> None:
        if not logged_in:
            raise HTTPException(401, "Not authenticated")
        if not allowed:
            raise HTTPException(403, "Forbidden")

    app = ui["app"].create_app(read, access, lambda next_url: f"/auth/login?next={next_url}")
    # Mounted the way Airflow mounts a plugin's app on its API server.
    server = FastAPI()
    server.mount("/headwater", app)
    client = TestClient(server)
    client.roots = roots  # type: ignore[attr-defined]
    return client


def test_the_json_api_and_the_page_serve_the_same_summary(ui: dict) -> None:
    client = _client(ui, allowed=True)
    answer = client.get("/headwater/api/summary")
    assert answer.status_code == 200
    assert answer.json() == build_summary(_inputs(), NOW)
    page = client.get("/headwater/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<td data-field="stored" class="n">475</td>' in page.text
    # Links are built under the Airflow UI's root, not under the plugin's mount point.
    assert client.roots == ["/", "/"]  # type: ignore[attr-defined]


def test_without_a_login_the_api_answers_401_and_a_browser_goes_to_the_login(ui: dict) -> None:
    client = _client(ui, allowed=True, logged_in=False)
    assert client.get("/headwater/api/summary").status_code == 401
    page = client.get("/headwater/", follow_redirects=False)
    assert page.status_code == 303
    assert page.headers["location"].startswith("/auth/login?next=")
    assert client.get("/headwater/icon.svg").status_code == 401


def test_a_user_without_the_permission_gets_403_everywhere(ui: dict) -> None:
    client = _client(ui, allowed=False)
    assert client.get("/headwater/api/summary").status_code == 403
    assert client.get("/headwater/", follow_redirects=False).status_code == 403


class _Cursor:
    def __init__(self, log: list[dict[str, Any]], collection: str, query: dict, docs: list) -> None:
        self.entry: dict[str, Any] = {"collection": collection, "query": query}
        log.append(self.entry)
        self.docs = docs

    def sort(self, key: str, direction: int) -> _Cursor:
        self.entry["sort"] = (key, direction)
        return self

    def limit(self, n: int) -> _Cursor:
        self.entry["limit"] = n
        return self

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.docs)


class _Collection:
    def __init__(self, name: str, log: list[dict[str, Any]]) -> None:
        self.name, self.log = name, log

    def find(self, query: dict, projection: dict | None = None) -> _Cursor:
        return _Cursor(self.log, self.name, query, [])


class _Db:
    def __init__(self) -> None:
        self.log: list[dict[str, Any]] = []

    def __getitem__(self, name: str) -> _Collection:
        return _Collection(name, self.log)


def test_every_read_is_bounded_and_served_by_an_index_the_schema_declares(ui: dict) -> None:
    from db.schema import OWN_INDEXES

    store = importlib.import_module("headwater_ui.ui_store")
    db = _Db()
    inputs = store.read_inputs(
        db, list(SOURCES.values()), group="headwater-consumer", stale_after_s=30.0
    )
    assert inputs.health_latest == {} and inputs.heartbeats == []
    assert len(db.log) == len(SOURCES) + 1 + 2 * len(ALL_CHECKS)
    indexes = {(i.collection, tuple(k for k, _ in i.keys)) for i in OWN_INDEXES}
    for read in db.log:
        assert isinstance(read.get("limit"), int) and read["limit"] > 0, read
        sort_key, direction = read["sort"]
        assert direction == -1, read
        # Equality on the leading fields of an index, then its sort (or range) field.
        equal = [k for k, v in read["query"].items() if not isinstance(v, dict)]
        if read["collection"] == "pipeline_status":
            equal = []  # a handful of member documents, found through the heartbeat_at index
        assert (read["collection"], (*equal, sort_key)) in indexes, read
