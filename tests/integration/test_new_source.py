"""A source of a shape never seen before is one entry and a data file, picked up live; an invalid
entry pauses only its own topic.

Both tests write to the test stack's local declarations file (HEADWATER_SOURCES_EXTRA_FILE) and
the stand-in's extra data folder (HEADWATER_STANDIN_EXTRA_DATA_DIR), never to the repo's, and
restore them afterwards. Nothing is restarted: the consumer, the stand-in and Airflow each follow
the files by themselves.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
import yaml
from pymongo.database import Database

from headwater.clients import mongo_client
from headwater.contracts import Collections
from headwater.kafka_access import create_topics
from headwater.kafka_admin import admin_client, delete_topics
from headwater.reconcile import reconcile
from headwater.settings import REPO_ROOT, Settings
from headwater.sources import get_source
from infra.airflow import airflow_token
from producer.service import ingest_window
from producer.simulator import malformed_kind, readings
from tests.integration.kafka_helpers import produce_all

WINDOW_START = datetime(2026, 5, 1, 10, 0, tzinfo=UTC)
WINDOW_END = WINDOW_START + timedelta(hours=1)


def wait_for(what: str, check: Callable[[], Any], timeout_s: float, poll_s: float = 2.0) -> Any:
    """check()'s first truthy answer, polled until timeout_s; fails naming `what` otherwise."""
    deadline = time.monotonic() + timeout_s
    while True:
        answer = check()
        if answer:
            return answer
        assert time.monotonic() < deadline, f"{what}: not within {timeout_s:.0f}s"
        time.sleep(poll_s)


@pytest.fixture
def db(live_stack: Settings) -> Iterator[Database]:
    with mongo_client(live_stack) as client:
        yield client[live_stack.mongo.db]


@pytest.fixture
def local_sources(live_stack: Settings) -> Iterator[Callable[[dict[str, Any]], None]]:
    """Write entries to the stack's local declarations file; the file is restored afterwards."""
    path = live_stack.services.sources_extra_file
    assert path is not None, "the test stack sets HEADWATER_SOURCES_EXTRA_FILE (tests/stack.env)"
    path.parent.mkdir(parents=True, exist_ok=True)
    before = path.read_text() if path.exists() else None
    entries: dict[str, Any] = dict((yaml.safe_load(before or "") or {}).get("sources") or {})

    def declare(more: dict[str, Any]) -> None:
        """Add or replace entries; an entry given as None is removed."""
        for key, value in more.items():
            if value is None:
                entries.pop(key, None)
            else:
                entries[key] = value
        aside = path.with_suffix(".tmp")
        aside.write_text(yaml.safe_dump({"sources": entries}, sort_keys=False))
        aside.replace(path)  # whole, never half-written

    yield declare
    if before is None:
        path.unlink(missing_ok=True)
    else:
        path.write_text(before)


def assigned(db: Database, settings: Settings, topic: str) -> bool:
    """Whether a running consumer reports partitions of `topic` assigned."""
    return any(a.startswith(f"{topic}[") for hb in heartbeats(db, settings) for a in hb["assigned"])


def forget(
    declare: Callable[[dict[str, Any]], None], db: Database, settings: Settings, name: str
) -> None:
    """Remove a test's entry and wait until the consumer let go of its topic."""
    declare({name: None})
    wait_for(f"consumer left {name}", lambda: not assigned(db, settings, name), timeout_s=60)


def heartbeats(db: Database, settings: Settings) -> list[dict[str, Any]]:
    group = settings.consumer.group or settings.kafka.consumer_group
    return list(
        db[Collections.PIPELINE_STATUS].find(
            {"kind": "consumer", "group": group, "phase": "running"}
        )
    )


def airflow(settings: Settings) -> tuple[str, dict[str, str]]:
    return settings.airflow.base_url, {"Authorization": f"Bearer {airflow_token(settings)}"}


def parcel_entry(name: str) -> dict[str, Any]:
    suffix = name.split("-")[-1]
    return {
        "description": "parcel scans at sorting hubs (a test's never-seen shape)",
        "base_url": "{external_api_url}",
        "route": f"/{name}",
        "window": {"since_param": "since", "until_param": "until", "format": "iso8601"},
        "pagination": {"style": "cursor", "page_size": 100},
        "records_path": "records",
        "key_fields": ["scan_id"],
        "event_time_field": "scanned_at",
        "topic": name,
        "schema_version": 1,
        "interval_s": 3600,
        "collection": f"parcels_{suffix}",
        "contracts": {
            1: {
                "fields": {
                    "scan_id": {"type": "string", "pattern": "^S[0-9]{5}$"},
                    "parcel_id": {"type": "string", "min_length": 1, "max_length": 32},
                    "hub": {"type": "string", "enum": ["AMS", "BER", "CDG"]},
                    "scanned_at": {"type": "timestamp", "format": "iso8601"},
                    "weight_kg": {"type": "number", "min": 0},
                }
            }
        },
        "plausibility": {"max_future_s": 3600},
        "filters": [{"rule": "bounds", "field": "weight_kg", "max": 50}],
        "indexes": [{"name": "hub_scanned", "keys": {"hub": 1, "scanned_at": -1}}],
    }


def parcel_scans() -> tuple[list[dict[str, Any]], dict[str, int]]:
    """320 scans: 300 in the window (5 too light, 2 at an unknown hub, 3 too heavy), 20 after."""
    scans = []
    for i in range(320):
        moment = WINDOW_START + timedelta(seconds=12 * i)
        scans.append(
            {
                "scan_id": f"S{i:05d}",
                "parcel_id": f"P-{i % 97}",
                "hub": "XXX" if i in (7, 8) else ("AMS", "BER", "CDG")[i % 3],
                "scanned_at": moment.isoformat().replace("+00:00", "Z"),
                "weight_kg": -1 if i < 5 else (55.0 if i in (10, 11, 12) else 1 + i % 20),
            }
        )
    return scans, {"in_window": 300, "invalid": 7, "filtered": 3}


@pytest.mark.timeout(1200)
def test_a_never_seen_source_lands_exactly_from_one_entry_and_a_data_file(
    live_stack: Settings, db: Database, local_sources: Callable[[dict[str, Any]], None]
) -> None:
    settings = live_stack
    name = f"parcels-{uuid.uuid4().hex[:6]}"
    entry = parcel_entry(name)
    dag_id = "ingest_" + name.replace("-", "_")
    data_dir = settings.services.standin_extra_data_dir
    assert data_dir is not None, "the test stack sets HEADWATER_STANDIN_EXTRA_DATA_DIR"
    data_dir.mkdir(parents=True, exist_ok=True)
    data_file = data_dir / f"{name}.jsonl"
    scans, expected = parcel_scans()
    data_file.write_text("".join(json.dumps(s) + "\n" for s in scans))
    base, headers = airflow(settings)
    try:
        local_sources({name: entry})
        # The consumer creates the topic, collection and indexes and subscribes, unasked.
        wait_for(
            f"consumer subscribed to {name}", lambda: assigned(db, settings, name), timeout_s=120
        )
        indexes = db[entry["collection"]].index_information()
        assert {"hub_scanned", "source_scanned_at", "source_run"} <= set(indexes)
        # Airflow's dag-processor re-reads the DAG file and finds the new source's DAG.
        wait_for(
            f"DAG {dag_id} registered",
            lambda: requests.get(f"{base}/api/v2/dags/{dag_id}", headers=headers, timeout=10).ok,
            timeout_s=300,
            poll_s=5,
        )
        resp = requests.patch(
            f"{base}/api/v2/dags/{dag_id}", json={"is_paused": False}, headers=headers, timeout=10
        )
        assert resp.status_code == 200, resp.text
        run_id = f"new-source-{uuid.uuid4().hex[:6]}"
        resp = requests.post(
            f"{base}/api/v2/dags/{dag_id}/dagRuns",
            json={
                "dag_run_id": run_id,
                "logical_date": None,
                "conf": {"since": WINDOW_START.isoformat(), "until": WINDOW_END.isoformat()},
            },
            headers=headers,
            timeout=10,
        )
        assert resp.status_code == 200, resp.text
        run_url = f"{base}/api/v2/dags/{dag_id}/dagRuns/{run_id}"
        state = wait_for(
            f"run {run_id} finished",
            lambda: (
                s
                if (s := requests.get(run_url, headers=headers, timeout=10).json()["state"])
                in ("success", "failed")
                else None
            ),
            timeout_s=600,
            poll_s=5,
        )
        # success includes reconcile: pulled == produced == stored + rejected, by the run's keys
        assert state == "success", requests.get(f"{run_url}/taskInstances", headers=headers).text
        stored = db[entry["collection"]].count_documents({"source": name})
        rejects = list(db[Collections.REJECTED].find({"topic": name, "run_id": run_id}))
        by_stage: dict[str, int] = {}
        for doc in rejects:
            by_stage[doc["stage"]] = by_stage.get(doc["stage"], 0) + 1
        bad = expected["invalid"] + expected["filtered"]
        assert stored == expected["in_window"] - bad
        assert by_stage == {"validate": expected["invalid"], "filter": expected["filtered"]}
        assert {d["reason"] for d in rejects if d["stage"] == "filter"} == {"weight_kg above 50"}
        doc = db[entry["collection"]].find_one({"_id": "S00100"})
        assert doc is not None
        assert doc["scanned_at"] == datetime(2026, 5, 1, 10, 20, tzinfo=UTC)
        assert (doc["hub"], doc["weight_kg"], doc["ingest"]["run_id"]) == ("BER", 1, run_id)
    finally:
        requests.patch(
            f"{base}/api/v2/dags/{dag_id}", json={"is_paused": True}, headers=headers, timeout=10
        )
        forget(local_sources, db, settings, name)
        data_file.unlink(missing_ok=True)
        delete_topics(admin_client(settings), [name])
        db.drop_collection(entry["collection"])


@pytest.mark.timeout(600)
def test_an_invalid_entry_pauses_only_its_topic_and_its_messages_wait_until_it_is_fixed(
    live_stack: Settings,
    db: Database,
    local_sources: Callable[[dict[str, Any]], None],
    probes: Any,
) -> None:
    settings = live_stack
    name = f"broken-{uuid.uuid4().hex[:6]}"
    entry = parcel_entry(name)
    broken = {k: v for k, v in entry.items() if k != "contracts"}
    admin = admin_client(settings)
    create_topics(admin, settings, [name])
    try:
        local_sources({name: broken})
        paused = wait_for(
            f"{name} paused in the heartbeat",
            lambda: [
                p
                for hb in heartbeats(db, settings)
                for p in hb.get("paused_topics") or []
                if p["topic"] == name
            ],
            timeout_s=60,
        )
        assert "contracts: Field required" in paused[0]["problem"]
        # Every member follows the declarations on its own (each checks every few seconds).
        for member in settings.consumer_members():
            health = wait_for(
                f"{name} paused in {member.name}'s /healthz",
                lambda url=f"{member.url}/healthz": (
                    (r := requests.get(url, timeout=10)).json()["paused_topics"].get(name) and r
                ),
                timeout_s=30,
                poll_s=0.5,
            )
            assert health.status_code == 200  # the other topics flow
            assert "contracts: Field required" in health.json()["paused_topics"][name]
        result = probes.PROBES["source_declarations"](settings, db=db)
        assert not result["ok"]
        assert f"source {name}: contracts: Field required" in result["detail"]

        # A record on the paused topic waits in Kafka ...
        scan = parcel_scans()[0][50]
        headers = [("schema_version", b"1"), ("run_id", b"waiting")]
        produce_all(settings, name, [(scan["scan_id"], json.dumps(scan))], headers)
        # ... while the other topics keep landing, exactly.
        devices = get_source("devices")
        since = datetime(2024, 2, 1, tzinfo=UTC) + timedelta(minutes=uuid.uuid4().int % 500_000)
        until = since + timedelta(minutes=1)
        run_id = f"paused-neighbour-{uuid.uuid4().hex[:6]}"
        result_devices = ingest_window(devices, since, until, settings, run_id=run_id)
        n = settings.services.simulator_devices
        offered = list(readings(since, until, n))
        assert result_devices.produced == len(offered) > 0
        tally = reconcile(
            db, devices, run_id, result_devices.pulled, result_devices.produced, timeout_s=120
        )
        valid = sum(1 for r in offered if malformed_kind(r["device_id"], r["ts"]) is None)
        assert tally.stored == valid
        assert db[entry["collection"]].count_documents({}) == 0

        # Fixed: the topic is read again and the waiting record lands once.
        local_sources({name: entry})
        wait_for(
            f"the waiting record of {name} stored",
            lambda: db[entry["collection"]].count_documents({"_id": scan["scan_id"]}) == 1,
            timeout_s=120,
        )
        wait_for(
            f"{name} no longer paused",
            lambda: all(
                p["topic"] != name
                for hb in heartbeats(db, settings)
                for p in hb.get("paused_topics") or []
            ),
            timeout_s=60,
        )
        assert probes.PROBES["source_declarations"](settings, db=db)["ok"]
    finally:
        forget(local_sources, db, settings, name)
        delete_topics(admin, [name])
        db.drop_collection(entry["collection"])


def test_check_tells_what_a_sample_window_of_the_live_source_would_store_and_reject(
    live_stack: Settings,
) -> None:
    since = datetime(2025, 3, 7, 6, 40, tzinfo=UTC)
    until = since + timedelta(minutes=1)
    offered = list(readings(since, until, live_stack.services.simulator_devices))
    valid = sum(1 for r in offered if malformed_kind(r["device_id"], r["ts"]) is None)
    result = subprocess.run(
        [
            *(sys.executable, "-m", "producer", "check", "devices"),
            *("--since", since.isoformat(), "--until", until.isoformat()),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert "entry: valid" in out
    assert f"pulled {len(offered)}: would store {valid}, would reject {len(offered) - valid}" in out
    assert valid < len(offered)  # the simulator's defects are in every minute
    assert "rejected" in out and "stored  {" in out
