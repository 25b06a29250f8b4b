"""A contract fix followed by a replay lands the formerly rejected records exactly once; a dry run
changes nothing; a second replay changes nothing.

The test declares a source of its own in the stack's local declarations file
(HEADWATER_SOURCES_EXTRA_FILE, restored afterwards), produces to its topic, lets the running
consumer reject what the too-strict contract refuses, relaxes the contract in the file and runs
`replay_rejected` through the Airflow REST API: the task reads the declarations as they are now.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from pymongo.database import Database

from consumer.messages import InboundMessage
from consumer.pipeline import Rejected, process_message
from consumer.replay import Selection, replay_context
from consumer.replay_service import MongoReplayStore, replay_rejects
from headwater.clients import mongo_client
from headwater.contracts import Collections
from headwater.kafka_admin import admin_client, delete_topics
from headwater.settings import Settings
from headwater.sources import build_catalog
from tests.integration import test_new_source as new_source
from tests.integration.kafka_helpers import produce_all
from tests.integration.test_new_source import airflow, assigned, forget, wait_for

# The new-source test's fixtures: the stack's database, and its local declarations file (restored
# after the test).
db = new_source.db
local_sources = new_source.local_sources

DAG_ID = "replay_rejected"
SCANNED_AT = datetime(2026, 5, 2, 10, 0, tzinfo=UTC)


def scans_entry(name: str, weight_max: float) -> dict[str, Any]:
    """A source whose contract takes weights up to `weight_max`; a filter drops those above 50."""
    return {
        "description": "parcel scans (the replay test's own source)",
        "base_url": "{external_api_url}",
        "route": f"/{name}",
        "key_fields": ["scan_id"],
        "event_time_field": "scanned_at",
        "topic": name,
        "interval_s": 3600,
        "collection": "replay_" + name.split("-")[-1],
        "contracts": {
            1: {
                "fields": {
                    "scan_id": {"type": "string", "pattern": "^S[0-9]{5}$"},
                    "hub": {"type": "string", "enum": ["AMS", "BER", "CDG"]},
                    "scanned_at": {"type": "timestamp", "format": "iso8601"},
                    "weight_kg": {"type": "number", "min": 0, "max": weight_max},
                }
            }
        },
        "filters": [{"rule": "bounds", "field": "weight_kg", "max": 50}],
    }


def scans(raw_max_bytes: int) -> tuple[list[dict[str, Any]], dict[str, list[str]]]:
    """56 scans, and the ids of each kind: 20 fine under both contracts, 30 too heavy for the
    strict one only, 3 past the filter, 2 at an unknown hub, 1 too big to keep whole in a reject."""
    kinds: dict[str, list[str]] = {
        "valid": [],
        "relaxed": [],
        "filtered": [],
        "invalid": [],
        "truncated": [],
    }
    records = []
    for i in range(56):
        record: dict[str, Any] = {
            "scan_id": f"S{i:05d}",
            "hub": ("AMS", "BER", "CDG")[i % 3],
            "scanned_at": (SCANNED_AT + timedelta(seconds=i)).isoformat().replace("+00:00", "Z"),
            "weight_kg": 1 + i % 10,
        }
        if i < 20:
            kind = "valid"
        elif i < 50:
            kind, record["weight_kg"] = "relaxed", 11 + i % 30
        elif i < 53:
            kind, record["weight_kg"] = "filtered", 60 + i - 50
        elif i < 55:
            kind, record["hub"] = "invalid", "XXX"
        else:
            kind, record["note"] = "truncated", "x" * (raw_max_bytes + 1000)
        kinds[kind].append(record["scan_id"])
        records.append(record)
    return records, kinds


def snapshot(db: Database, collection: str, topic: str) -> tuple[dict, dict]:
    """Every document of the collection and every reject of the topic, whole."""
    return (
        {d["_id"]: d for d in db[collection].find()},
        {d["_id"]: d for d in db[Collections.REJECTED].find({"topic": topic})},
    )


def replay(settings: Settings, conf: dict[str, Any]) -> dict[str, Any]:
    """Trigger replay_rejected with `conf`, wait until it ends, return the task's summary."""
    base, headers = airflow(settings)
    run_id = f"replay-test-{uuid.uuid4().hex[:8]}"
    resp = requests.post(
        f"{base}/api/v2/dags/{DAG_ID}/dagRuns",
        json={"dag_run_id": run_id, "logical_date": None, "conf": conf},
        headers=headers,
        timeout=10,
    )
    assert resp.status_code == 200, resp.text
    run_url = f"{base}/api/v2/dags/{DAG_ID}/dagRuns/{run_id}"
    state = wait_for(
        f"run {run_id} finished",
        lambda: (
            s
            if (s := requests.get(run_url, headers=headers, timeout=10).json()["state"])
            in ("success", "failed")
            else None
        ),
        timeout_s=300,
        poll_s=2,
    )
    assert state == "success", requests.get(f"{run_url}/taskInstances", headers=headers).text
    resp = requests.get(
        f"{run_url}/taskInstances/replay/xcomEntries/return_value", headers=headers, timeout=10
    )
    assert resp.status_code == 200, resp.text
    value = resp.json()["value"]
    summary = json.loads(value) if isinstance(value, str) else value
    assert summary["run_id"] == run_id and summary["dry_run"] == conf.get("dry_run", True)
    return summary


@pytest.mark.timeout(1200)
def test_a_contract_fix_and_a_replay_land_the_rejects_once_and_a_second_replay_changes_nothing(
    live_stack: Settings,
    db: Database,
    local_sources: Callable[[dict[str, Any]], None],
) -> None:
    settings = live_stack
    name = f"replay-{uuid.uuid4().hex[:6]}"
    strict = scans_entry(name, weight_max=10)
    collection = strict["collection"]
    records, kinds = scans(settings.consumer.rejected_raw_max_bytes)
    base, headers = airflow(settings)
    dag_url = f"{base}/api/v2/dags/{DAG_ID}"
    registered = wait_for(
        f"DAG {DAG_ID} registered",
        lambda: (r := requests.get(dag_url, headers=headers, timeout=10)).ok and r,
        timeout_s=300,
        poll_s=5,
    )
    was_paused = registered.json()["is_paused"]
    started = datetime.now(UTC) - timedelta(seconds=1)
    try:
        local_sources({name: strict})
        # The consumer creates the topic (with its ACLs) and collection, and subscribes, unasked.
        wait_for(f"consumer subscribed to {name}", lambda: assigned(db, settings, name), 120)
        produce_all(
            settings,
            name,
            [(r["scan_id"], json.dumps(r)) for r in records],
            [("schema_version", b"1"), ("run_id", b"replay-test-produce")],
        )
        bad = len(records) - len(kinds["valid"])
        wait_for(
            "the strict contract's verdicts stored",
            lambda: (
                db[Collections.REJECTED].count_documents({"topic": name}) == bad
                and db[collection].count_documents({}) == len(kinds["valid"])
            ),
            timeout_s=120,
        )
        rejects = list(db[Collections.REJECTED].find({"topic": name}))
        assert Counter(d["stage"] for d in rejects) == {"validate": bad}
        truncated = [d for d in rejects if d["raw"]["truncated"]]
        assert [d["key"] for d in truncated] == kinds["truncated"]

        # The fix: the contract takes weights up to 100 (the filter still drops those above 50).
        local_sources({name: scans_entry(name, weight_max=100)})
        if was_paused:
            resp = requests.patch(dag_url, json={"is_paused": False}, headers=headers, timeout=10)
            assert resp.status_code == 200, resp.text
        before = snapshot(db, collection, name)

        dry = replay(settings, {"topic": name, "dry_run": True})
        assert snapshot(db, collection, name) == before
        assert dry["selected"] == bad
        assert dry["outcomes"] == {
            "would_store": len(kinds["relaxed"]),
            "would_filter": len(kinds["filtered"]),
            "still_rejected": len(kinds["invalid"]),
            "unreplayable": len(kinds["truncated"]),
        }
        # Counts by the reason each reject has now, and what each reason's rejects would become.
        reasons = Counter(d["reason"] for d in rejects)
        assert {r: c["selected"] for r, c in dry["by_reason"].items()} == reasons
        key_reason = {d["key"]: d["reason"] for d in rejects}
        for kind, outcome in (
            ("relaxed", "would_store"),
            ("filtered", "would_filter"),
            ("invalid", "still_rejected"),
            ("truncated", "unreplayable"),
        ):
            for reason in {key_reason[k] for k in kinds[kind]}:
                assert dry["by_reason"][reason][outcome] >= 1, (reason, dry["by_reason"][reason])
        assert dry["reasons_now"]["weight_kg above 50"] == len(kinds["filtered"])
        assert dry["stored"] == {} and dry["removed_from_rejected"] == 0

        real = replay(
            settings,
            {
                "topic": name,
                "stage": "validate",
                "rejected_since": started.isoformat(),
                "dry_run": False,
            },
        )
        assert real["outcomes"] == dry["outcomes"]
        assert real["stored"] == {collection: len(kinds["relaxed"])}
        assert real["removed_from_rejected"] == len(kinds["relaxed"])
        after = snapshot(db, collection, name)
        stored, left = after
        # Each formerly rejected record once, under its natural key, as the consumer stores one.
        assert sorted(stored) == sorted(kinds["valid"] + kinds["relaxed"])
        assert db[collection].count_documents({}) == len(kinds["valid"] + kinds["relaxed"])
        consumed = stored[kinds["valid"][0]]
        by_key = {d["key"]: d for d in rejects}
        for scan_id in kinds["relaxed"]:
            doc = stored[scan_id]
            assert set(doc) == set(consumed) and set(doc["ingest"]) == set(consumed["ingest"])
            reject = by_key[scan_id]
            assert (doc["ingest"]["partition"], doc["ingest"]["offset"]) == (
                reject["partition"],
                reject["offset"],
            )
            assert doc["ingest"]["run_id"] == "replay-test-produce" and doc["source"] == name
        for record in (r for r in records if r["scan_id"] in kinds["relaxed"]):
            doc = stored[record["scan_id"]]
            assert (doc["hub"], doc["weight_kg"]) == (record["hub"], record["weight_kg"])
            assert doc["scanned_at"] == datetime.fromisoformat(record["scanned_at"])
        # rejected no longer holds them; the others stay as they were.
        kept = kinds["filtered"] + kinds["invalid"] + kinds["truncated"]
        assert sorted(d["key"] for d in left.values()) == sorted(kept)
        assert all(left[i] == before[1][i] for i in left)

        again = replay(settings, {"topic": name, "dry_run": False})
        assert snapshot(db, collection, name) == after
        assert again["selected"] == len(kept)
        assert again["outcomes"]["would_store"] == 0
        assert again["stored"] == {} and again["removed_from_rejected"] == 0
    finally:
        if was_paused:
            requests.patch(dag_url, json={"is_paused": True}, headers=headers, timeout=10)
        forget(local_sources, db, settings, name)
        delete_topics(admin_client(settings), [name])
        db.drop_collection(collection)
        db[Collections.REJECTED].delete_many({"topic": name})


def test_thousands_of_rejects_replay_in_chunks_on_one_cursor_while_their_rejects_are_deleted(
    live_stack: Settings, unique_name: str
) -> None:
    """The MongoDB adapter on the real server: the cursor keeps streaming (getMore after getMore)
    while each chunk's rejects are deleted behind it, and every record lands exactly once."""
    strict, relaxed = scans_entry("parcels", 10), scans_entry("parcels", 100)
    contexts = [
        replay_context(build_catalog([("test", {"sources": {"parcels": e}})]))
        for e in (strict, relaxed)
    ]
    records = [
        {
            "scan_id": f"S{i:05d}",
            "hub": "AMS",
            "scanned_at": "2026-05-02T10:00:00Z",
            "weight_kg": 11 + i % 40,
        }
        for i in range(2600)
    ]
    rejects = []
    for i, record in enumerate(records):
        message = InboundMessage(
            "parcels",
            i % 3,
            i,
            record["scan_id"].encode(),
            json.dumps(record).encode(),
            (("schema_version", b"1"),),
        )
        outcome = process_message(message, contexts[0], datetime.now(UTC))
        assert isinstance(outcome, Rejected)
        rejects.append({"_id": outcome.doc_id, **outcome.document})
    with mongo_client(live_stack) as client:
        scratch = client[unique_name]
        try:
            scratch[Collections.REJECTED].insert_many(rejects)
            store = MongoReplayStore(scratch)
            tally = replay_rejects(store, contexts[1], Selection(), dry_run=False, chunk_size=500)
            assert tally.selected == len(records) and tally.removed == len(records)
            assert tally.stored == {relaxed["collection"]: len(records)}
            collection = scratch[relaxed["collection"]]
            assert collection.count_documents({}) == len(records)
            assert sorted(collection.distinct("_id")) == [r["scan_id"] for r in records]
            assert scratch[Collections.REJECTED].count_documents({}) == 0
            again = replay_rejects(store, contexts[1], Selection(), dry_run=False)
            assert again.selected == 0
        finally:
            client.drop_database(unique_name)
