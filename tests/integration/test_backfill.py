"""`airflow backfill create` of an ingest DAG on the running stack fills MongoDB exactly, rollups
included (rollup_readings runs on the reconciles' asset events, nothing else is triggered); again
changes nothing."""

from __future__ import annotations

import collections
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from headwater.clients import mongo_client
from headwater.reconcile import count
from headwater.rollups import rollup_readings
from headwater.settings import REPO_ROOT, Settings
from infra.airflow import airflow_token
from producer.simulator import malformed_kind, readings
from tests.integration.airflow_helpers import (
    asset_event_ids,
    consumed_event_ids,
    dag_runs,
    wait_for_backfill,
)

# A past hour of its own per run, so a reused test stack's earlier backfills never mix in.
HOUR = datetime(2024, 1, 1, tzinfo=UTC) + timedelta(hours=random.randrange(24 * 360))
DAGS = ("ingest_devices", "rollup_readings")


def _api(settings: Settings) -> tuple[str, dict[str, str]]:
    return settings.airflow.base_url, {"Authorization": f"Bearer {airflow_token(settings)}"}


@pytest.fixture
def unpaused(live_stack: Settings) -> Iterator[Settings]:
    """Backfill runs of a paused DAG stay queued: unpause both for the test, pause them again."""
    base, headers = _api(live_stack)
    for dag_id in DAGS:
        resp = requests.patch(
            f"{base}/api/v2/dags/{dag_id}", json={"is_paused": False}, headers=headers, timeout=10
        )
        assert resp.status_code == 200, resp.text
    yield live_stack
    base, headers = _api(live_stack)
    for dag_id in DAGS:
        # A backfill this test left unfinished would block the next one (one per DAG at a time).
        backfills = requests.get(
            f"{base}/api/v2/backfills", params={"dag_id": dag_id}, headers=headers, timeout=10
        ).json()["backfills"]
        for unfinished in (b for b in backfills if not b["completed_at"]):
            requests.put(
                f"{base}/api/v2/backfills/{unfinished['id']}/cancel", headers=headers, timeout=10
            )
        requests.patch(
            f"{base}/api/v2/dags/{dag_id}", json={"is_paused": True}, headers=headers, timeout=10
        )


def backfill(settings: Settings, dag_id: str, last_logical: datetime, reprocess: str) -> None:
    """Create a backfill of HOUR with the real CLI and wait until every run of it has ended."""
    cmd = [
        sys.executable,
        "-m",
        "infra.stack",
        "airflow",
        "backfill",
        "create",
        "--dag-id",
        dag_id,
        "--from-date",
        HOUR.isoformat(),
        "--to-date",
        last_logical.isoformat(),
        "--max-active-runs",
        "3",
        "--reprocess-behavior",
        reprocess,
    ]
    result = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    base, headers = _api(settings)
    wait_for_backfill(settings, dag_id)
    runs = requests.get(
        f"{base}/api/v2/dags/{dag_id}/dagRuns",
        params={"limit": 200, "run_type": "backfill", "logical_date_gte": HOUR.isoformat()},
        headers=headers,
        timeout=10,
    ).json()["dag_runs"]
    in_hour = [r for r in runs if r["logical_date"] < (HOUR + timedelta(hours=1)).isoformat()]
    states = collections.Counter(r["state"] for r in in_hour)
    assert set(states) == {"success"}, states


def expected_readings(settings: Settings) -> list[dict[str, Any]]:
    n = settings.services.simulator_devices
    return [
        r
        for r in readings(HOUR, HOUR + timedelta(hours=1), n)
        if malformed_kind(r["device_id"], r["ts"]) is None
    ]


def invalid_keys(settings: Settings) -> list[str]:
    """The natural keys of the hour's records the consumer must reject (the simulator's defects)."""
    n = settings.services.simulator_devices
    return [
        f"{r['device_id']}|{r['ts']}"
        for r in readings(HOUR, HOUR + timedelta(hours=1), n)
        if malformed_kind(r["device_id"], r["ts"]) is not None
    ]


def snapshot(settings: Settings) -> dict[str, Any]:
    with mongo_client(settings) as client:
        db = client[settings.mongo.db]
        # Every rejection of the hour's records, in full: a re-run must leave them as they were
        # (one document per record, not one per delivery), apart from where it was last seen.
        keys = invalid_keys(settings)
        rejects = {
            d["_id"]: (d["key"], d["stage"], d["reason"])
            for d in db.rejected.find({"topic": "devices", "key": {"$in": keys}})
        }
        hour = {"$gte": HOUR, "$lt": HOUR + timedelta(hours=1)}
        stored = count(db, "readings", {"source": "devices", "ts": hour})
        rollups = list(
            db.readings_rollup.find({"start": hour}, {"window": 1, "count": 1, "sum": 1})
        )
    per_window: dict[str, dict[str, float]] = {}
    for doc in rollups:
        agg = per_window.setdefault(doc["window"], {"docs": 0, "count": 0, "sum": 0.0})
        agg["docs"] += 1
        agg["count"] += doc["count"]
        agg["sum"] += doc["sum"]
    return {"stored": stored, "rollups": per_window, "rejected": rejects}


def rollups_from_scratch(settings: Settings) -> dict[str, dict[str, Any]]:
    """The hour's rollups recomputed in memory from the readings MongoDB holds now, in the order
    recompute_rollups reads them (so the float sums are bit-identical)."""
    hour = {"$gte": HOUR, "$lt": HOUR + timedelta(hours=1)}
    with mongo_client(settings) as client:
        cursor = client[settings.mongo.db].readings.find(
            {"ts": hour},
            {"device_id": 1, "sensor": 1, "value": 1, "unit": 1, "ts": 1},
            sort=[("ts", 1), ("_id", 1)],
        )
        return {doc["_id"]: doc for doc in rollup_readings(cursor)}


def stored_rollups(settings: Settings) -> dict[str, dict[str, Any]]:
    with mongo_client(settings) as client:
        docs = client[settings.mongo.db].readings_rollup.find(
            {"start": {"$gte": HOUR, "$lt": HOUR + timedelta(hours=1)}}
        )
        return {doc["_id"]: doc for doc in docs}


def wait_rollups_settled(settings: Settings, after: datetime, timeout_s: float = 600) -> None:
    """Wait (bounded) until every asset event the ingest runs emitted since `after` has been
    consumed by a rollup_readings run that succeeded, and no rollup run is queued or running."""
    deadline = time.monotonic() + timeout_s
    while True:
        emitted = asset_event_ids(settings, "ingest_devices", after.isoformat())
        runs = dag_runs(settings, "rollup_readings", run_after_gte=after.isoformat())
        assert not [r for r in runs if r["state"] == "failed"], runs
        busy = [r["dag_run_id"] for r in runs if r["state"] != "success"]
        consumed: set[int] = set()
        for run in runs:
            if run["state"] == "success":
                consumed |= consumed_event_ids(settings, "rollup_readings", run["dag_run_id"])
        if emitted and emitted <= consumed and not busy:
            return
        assert time.monotonic() < deadline, (
            f"rollup_readings not settled: {len(emitted - consumed)} of {len(emitted)} events "
            f"unconsumed, busy runs {busy}"
        )
        time.sleep(3)


@pytest.mark.timeout(1800)
def test_backfilling_an_hour_twice_fills_mongo_exactly_once(unpaused: Settings) -> None:
    settings = unpaused
    valid = expected_readings(settings)
    started = datetime.now(UTC)

    # Only the ingest DAG is backfilled: its reconciles emit readings asset events, on which
    # rollup_readings recomputes exactly the reconciled windows.
    backfill(settings, "ingest_devices", HOUR + timedelta(minutes=59), "none")
    wait_rollups_settled(settings, started)
    assert stored_rollups(settings) == rollups_from_scratch(settings)
    first = snapshot(settings)
    assert first["stored"] == len(valid)
    minutes = {(r["device_id"], r["ts"][:16]) for r in valid}
    assert first["rollups"]["1m"]["docs"] == len(minutes)
    assert first["rollups"]["1m"]["count"] == len(valid)
    assert first["rollups"]["10s"]["count"] == len(valid)
    assert first["rollups"]["1m"]["sum"] == pytest.approx(sum(r["value"] for r in valid), rel=1e-9)
    # one rejection per defective record of the hour, each with its reason
    assert sorted(k for k, _, _ in first["rejected"].values()) == sorted(invalid_keys(settings))

    again = datetime.now(UTC)
    backfill(settings, "ingest_devices", HOUR + timedelta(minutes=59), "completed")
    wait_rollups_settled(settings, again)
    assert snapshot(settings) == first
    assert stored_rollups(settings) == rollups_from_scratch(settings)
