"""Rollups against the stack's MongoDB: recompute is idempotent; /stats equals the raw readings."""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from pymongo.database import Database

from headwater.clients import mongo_client
from headwater.contracts import Collections
from headwater.rollups import recompute_rollups
from headwater.settings import REPO_ROOT, Settings
from infra import stack
from producer.events.app import create_app

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
SINCE, UNTIL = T0, T0 + timedelta(minutes=5)
DEVICES = ["d1", "d2", "d3"]
SENSORS = ["temp", "hum"]


@pytest.fixture
def mongo_db(live_stack: Settings, unique_name: str) -> Iterator[Database]:
    client = mongo_client(live_stack)
    db = client[unique_name.replace("-", "_")]
    yield db
    client.drop_database(db.name)
    client.close()


@pytest.fixture
def seeded(mongo_db: Database) -> Database:
    """Readings over 5 minutes plus one just before and one at the end (both outside)."""
    rng = random.Random(7)
    docs: list[dict[str, Any]] = []
    for i in range(600):
        # Millisecond times (what Mongo keeps), including exact window boundaries.
        offset_ms = 0 if i == 0 else rng.randrange(0, 300_000)
        if i % 50 == 1:
            offset_ms = (i // 50) * 10_000
        docs.append(
            {
                "_id": f"r{i}",
                "device_id": rng.choice(DEVICES),
                "sensor": rng.choice(SENSORS),
                "value": rng.uniform(-50, 150),
                "unit": "x",
                "ts": T0 + timedelta(milliseconds=offset_ms),
                "source": "test",
            }
        )
    docs.append(docs[0] | {"_id": "before", "ts": T0 - timedelta(milliseconds=1), "value": 1e6})
    docs.append(docs[0] | {"_id": "at-end", "ts": UNTIL, "value": -1e6})
    mongo_db[Collections.READINGS].insert_many(docs)
    return mongo_db


@pytest.fixture
def stats_client(live_stack: Settings, seeded: Database, tmp_path: Path) -> FlaskClient:
    app = create_app(
        {
            "TESTING": True,
            "DATABASE": tmp_path / "events.db",
            "MONGO_URI": live_stack.mongo.uri,
            "MONGO_DB": seeded.name,
        }
    )
    return app.test_client()


def snapshot(db: Database) -> list[dict[str, Any]]:
    return list(db[Collections.READINGS_ROLLUP].find({}, sort=[("_id", 1)]))


def test_recompute_twice_leaves_rollups_unchanged(seeded: Database) -> None:
    first = recompute_rollups(seeded, SINCE, UNTIL, batch_size=50, chunk_size=40)
    before = snapshot(seeded)
    second = recompute_rollups(seeded, SINCE, UNTIL, batch_size=50, chunk_size=40)
    assert first["readings"] == second["readings"] == 600
    assert first["rollups"] == second["rollups"] == len(before)
    assert first["upserted"] == len(before)
    assert second["upserted"] == 0
    assert snapshot(seeded) == before
    assert sum(d["count"] for d in before if d["window"] == "1m") == 600
    assert sum(d["count"] for d in before if d["window"] == "10s") == 600


def expected(db: Database, agg: str, sensor: str, devices: list[str] | None) -> Any:
    query: dict[str, Any] = {"sensor": sensor, "ts": {"$gte": SINCE, "$lt": UNTIL}}
    if devices is not None:
        query["device_id"] = {"$in": devices}
    values = [doc["value"] for doc in db[Collections.READINGS].find(query)]
    return {
        "avg": math.fsum(values) / len(values),
        "min": min(values),
        "max": max(values),
        "count": len(values),
    }[agg], len(values)


@pytest.mark.parametrize("devices", [["d2"], ["d1", "d3"], None])
def test_stats_equal_the_figures_of_the_raw_readings(
    seeded: Database, stats_client: FlaskClient, devices: list[str] | None
) -> None:
    recompute_rollups(seeded, SINCE, UNTIL)
    for agg in ("avg", "min", "max", "count"):
        query: dict[str, Any] = {"agg": agg, "sensor": "temp", "from": "2026-11-23T09:00:00Z"}
        query |= {"to": "2026-11-23T09:05:00Z"}
        if devices is not None:
            query["device_id"] = devices
        response = stats_client.get("/stats", query_string=query)
        assert response.status_code == 200, response.get_json()
        body = response.get_json()
        value, count = expected(seeded, agg, "temp", devices)
        assert count > 0
        assert body["count"] == count
        assert body["value"] == pytest.approx(value, rel=1e-9, abs=0), agg
        assert body["device_ids"] == devices


def test_stats_of_a_range_without_rollups_is_null(
    seeded: Database, stats_client: FlaskClient
) -> None:
    recompute_rollups(seeded, SINCE, UNTIL)
    response = stats_client.get(
        "/stats",
        query_string={"agg": "max", "sensor": "temp", "from": "2026-11-23T10:00:00Z"}
        | {"to": "2026-11-23T10:05:00Z"},
    )
    assert (response.status_code, response.get_json()["value"]) == (200, None)
    assert response.get_json()["count"] == 0


_DAG_TEST = """
import json, sys
from airflow.dag_processing.dagbag import DagBag
dag = DagBag(dag_folder="dags").dags["rollup_readings"]
run = dag.test(run_conf={"since": sys.argv[1], "until": sys.argv[2]})
print(json.dumps({"state": str(run.state)}))
"""


def test_rollup_dag_run_fills_its_window_and_rerun_changes_nothing(
    live_stack: Settings, seeded: Database
) -> None:
    # The task reads MONGO_DB from its environment: point it at this test's database.
    env = stack.stack_env(live_stack) | {"MONGO_DB": seeded.name}
    snapshots = []
    for attempt in (1, 2):
        result = subprocess.run(
            [sys.executable, "-c", _DAG_TEST, SINCE.isoformat(), UNTIL.isoformat()],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        run = json.loads(result.stdout.strip().splitlines()[-1])
        assert run["state"].endswith("success"), (attempt, run)
        snapshots.append(snapshot(seeded))
    assert snapshots[0] == snapshots[1]
    assert sum(d["count"] for d in snapshots[0] if d["window"] == "1m") == 600
