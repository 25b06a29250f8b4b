"""Every reconcile leaves one document per window in reconcile_runs, passed or failed."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pymongo.errors import ServerSelectionTimeoutError

from headwater.reconcile import ReconcileError, Tally
from headwater.reconcile_log import reconcile_and_record, reconcile_id, record_reconcile
from headwater.sources import parse_sources
from tests.unit.declared import entry

SOURCE = parse_sources({"sources": {"meters": entry(topic="meters", collection="readings")}})[
    "meters"
]
NOW = datetime(2026, 12, 2, 18, 0, 5, tzinfo=UTC)
INGESTED = {
    "since": "2026-12-02T17:50:00+00:00",
    "until": "2026-12-02T18:00:00+00:00",
    "run_id": "scheduled__2026-12-02T17:50:00+00:00",
    "pulled": 480,
    "produced": 480,
}


def _run(recorded: list[dict[str, Any]], run: Any) -> Tally:
    return reconcile_and_record(SOURCE, INGESTED, run, recorded.append, lambda: NOW)


def test_a_passed_reconcile_records_its_window_and_numbers_under_source_since_until() -> None:
    recorded: list[dict[str, Any]] = []
    tally = _run(recorded, lambda: Tally(480, 480, 475, 5))
    assert tally == Tally(480, 480, 475, 5)
    assert recorded == [
        {
            "_id": "meters|2026-12-02T17:50:00+00:00|2026-12-02T18:00:00+00:00",
            "source": "meters",
            "topic": "meters",
            "collection": "readings",
            "since": datetime(2026, 12, 2, 17, 50, tzinfo=UTC),
            "until": datetime(2026, 12, 2, 18, 0, tzinfo=UTC),
            "run_id": "scheduled__2026-12-02T17:50:00+00:00",
            "outcome": "ok",
            "pulled": 480,
            "produced": 480,
            "stored": 475,
            "rejected": 5,
            "error": None,
            "reconciled_at": NOW,
        }
    ]


def test_a_failed_reconcile_is_recorded_with_the_numbers_it_saw_and_still_fails() -> None:
    recorded: list[dict[str, Any]] = []

    def short() -> Tally:
        raise ReconcileError("source meters run r: produced 480 but ...", Tally(480, 480, 400, 5))

    with pytest.raises(ReconcileError):
        _run(recorded, short)
    [doc] = recorded
    assert doc["outcome"] == "failed"
    assert (doc["stored"], doc["rejected"]) == (400, 5)
    assert doc["error"] == "ReconcileError: source meters run r: produced 480 but ..."


def test_a_reconcile_that_could_not_count_is_recorded_with_what_the_pull_knew() -> None:
    recorded: list[dict[str, Any]] = []

    def unreachable() -> Tally:
        raise ServerSelectionTimeoutError("127.0.0.1:27017: connection refused")

    with pytest.raises(ServerSelectionTimeoutError):
        _run(recorded, unreachable)
    [doc] = recorded
    assert doc["outcome"] == "failed"
    assert (doc["pulled"], doc["produced"], doc["stored"], doc["rejected"]) == (
        480,
        480,
        None,
        None,
    )
    assert doc["error"].startswith("ServerSelectionTimeoutError: 127.0.0.1:27017")


def test_a_rerun_of_the_window_gets_the_same_id_so_it_overwrites() -> None:
    first: list[dict[str, Any]] = []
    _run(first, lambda: Tally(480, 480, 480, 0))
    again = {**INGESTED, "run_id": "manual__2026-12-02T18:30:00+00:00"}
    second: list[dict[str, Any]] = []
    reconcile_and_record(SOURCE, again, lambda: Tally(480, 480, 480, 0), second.append, lambda: NOW)
    expected = reconcile_id("meters", INGESTED["since"], INGESTED["until"])
    assert first[0]["_id"] == second[0]["_id"] == expected
    assert second[0]["run_id"] == "manual__2026-12-02T18:30:00+00:00"


class _Collection:
    def __init__(self, error: Exception | None = None) -> None:
        self.docs: dict[str, dict[str, Any]] = {}
        self.error = error

    def replace_one(self, query: dict[str, Any], doc: dict[str, Any], upsert: bool) -> None:
        if self.error is not None:
            raise self.error
        assert upsert
        self.docs[query["_id"]] = doc


class _Db(dict):
    pass


def test_recording_replaces_the_document_and_never_raises_when_mongo_is_down() -> None:
    docs: list[dict[str, Any]] = []
    _run(docs, lambda: Tally(1, 1, 1, 0))
    up = _Db(reconcile_runs=_Collection())
    assert record_reconcile(up, docs[0]) is True  # type: ignore[arg-type]
    assert up["reconcile_runs"].docs == {docs[0]["_id"]: docs[0]}
    down = _Db(reconcile_runs=_Collection(ServerSelectionTimeoutError("refused")))
    assert record_reconcile(down, docs[0]) is False  # type: ignore[arg-type]
