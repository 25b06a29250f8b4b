"""db/sql/*.sql in DuckDB give the numbers their mongosh twins in db/queries give, on one window.

Three past days are seeded in a database of the test's own (readings of both readings sources,
user events, rejects) and their rollups recomputed. Two days are then archived (archive_day, as
the DAG does) and the rest reaches DuckDB through the hot export (export_hot, as `make duckdb`
does), so every window below spans archived and hot days. mongosh runs each script on MongoDB,
which still holds everything; DuckDB runs each SQL twin over the views; results must be equal
(floats within 1e-9 relative: the two engines add in different orders).
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest
from pymongo.database import Database

from consumer.documents import IngestMeta, to_document
from db.bootstrap import bootstrap
from db.duckdb_shell import SQL_DIR, open_views, rows_of, variable_statements
from headwater.archive_store import ArchiveFiles, archive_day, export_hot, sources_by_collection
from headwater.rollups import recompute_rollups
from headwater.settings import REPO_ROOT, Settings
from headwater.sources import load_sources, record_key
from tests.integration.test_consumer_support import db_name, mongo_database, require_kafka_and_mongo
from tests.integration.test_db_queries import run_query

DAYS = [date(2021, 6, 1), date(2021, 6, 2), date(2021, 6, 3)]
ARCHIVED = DAYS[:2]
READINGS_PER_DAY = 1200
EVENTS_PER_DAY = 300
REJECTS = 90


def _at(day: date, ms: int) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(milliseconds=ms)


def _readings(rng: random.Random, sources: dict[str, Any], day: date) -> list[dict[str, Any]]:
    docs: dict[str, dict[str, Any]] = {}
    devices = [("thermostat", "temperature", "C"), ("barometer", "pressure", "hPa")]
    for _ in range(READINGS_PER_DAY):
        ts = _at(day, rng.randrange(86_400_000))
        meta = IngestMeta("t", 0, len(docs), ts + timedelta(seconds=1), "twins", 1)
        if rng.random() < 0.75:
            kind, sensor, unit = rng.choice(devices)
            device = f"{kind}-{rng.randrange(6):03d}"
            body = {
                "device_id": device,
                # A few readings without a declared type (the contract allows null).
                "device_type": None if rng.random() < 0.05 else kind,
                "sensor": sensor,
                "value": round(rng.uniform(-20, 1050), 3),
                "unit": unit,
                "ts": ts,
            }
            key = record_key(sources["devices"], {"device_id": device, "ts": ts.isoformat()})
            docs[key] = {"_id": key, **to_document(body, "devices", meta)}
        else:
            param = rng.randrange(4)
            body = {
                "device_id": f"machine-param-{param}",
                "device_type": "machine",
                "sensor": f"param_{param}",
                "value": rng.uniform(0, 9000),
                "unit": "unknown",
                "ts": ts,
            }
            key = f"{param}|{int(ts.timestamp() * 1000)}"
            docs[key] = {"_id": key, **to_document(body, "machine-metrics", meta)}
    return list(docs.values())


def _events(rng: random.Random, day: date, start: int) -> list[dict[str, Any]]:
    docs = []
    for n in range(start, start + EVENTS_PER_DAY):
        received = _at(day, rng.randrange(86_400_000))
        event_id = f"0{n:025d}"
        body = {
            "event_id": event_id,
            "user_id": f"user-{rng.randrange(5)}",
            "event_type": rng.choice(["click", "view", "purchase"]),
            "occurred_at": None if n % 3 else received - timedelta(seconds=rng.randrange(60)),
            "properties": {"page": rng.choice(["/", "/cart"]), "n": n},
            "received_at": received,
        }
        meta = IngestMeta("user-events", 0, n, received, "twins", 1)
        docs.append({"_id": event_id, **to_document(body, "user-events", meta)})
    return docs


def _rejects(rng: random.Random) -> list[dict[str, Any]]:
    reasons = [
        ("filter", "temperature outside [-50, 60] C", "devices"),
        ("validate", "value: Field required", "devices"),
        ("decode", "value is not JSON: Expecting value", "user-events"),
        ("validate", "missing schema_version header", "machine-metrics"),
    ]
    docs = []
    for n in range(REJECTS):
        stage, reason, topic = reasons[min(int(rng.expovariate(1.0)), 3)]
        docs.append(
            {
                "_id": f"{topic}|0|{n}",
                "stage": stage,
                "reason": reason,
                "topic": topic,
                "partition": 0,
                "offset": n,
                "rejected_at": _at(rng.choice(DAYS), rng.randrange(86_400_000)),
                "raw": {"value": "x" * (n % 5)},
            }
        )
    return docs


@pytest.fixture(scope="module")
def twins(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Settings, Database, Path, ArchiveFiles, dict[str, Any]]]:
    require_kafka_and_mongo(settings)
    sources = load_sources(REPO_ROOT / "sources.yaml")
    rng = random.Random(20210601)
    with mongo_database(settings, db_name(f"twins_{uuid.uuid4().hex[:10]}")) as db:
        bootstrap(db)
        for i, day in enumerate(DAYS):
            db.readings.insert_many(_readings(rng, sources, day), ordered=False)
            db.user_events.insert_many(_events(rng, day, i * EVENTS_PER_DAY), ordered=False)
        db.rejected.insert_many(_rejects(rng))
        since = datetime(2021, 6, 1, tzinfo=UTC)
        recompute_rollups(db, since, since + timedelta(days=len(DAYS)))

        root = tmp_path_factory.mktemp("twins")
        files = ArchiveFiles(str(root / "archive"))
        for collection, members in sources_by_collection(sources).items():
            if collection not in {"readings", "user_events"}:
                continue
            for source in members:
                for day in ARCHIVED:
                    archive_day(db, files, members, source, day, run_id="twins")
        export = root / "hot-export"
        export_hot(db, files, sources, export)
        yield settings, db, export, files, sources


def sql(twins, name: str, **env: str) -> list[dict[str, Any]]:
    _, _, export, files, sources = twins
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        for statement in variable_statements(env):
            con.execute(statement)
        views = open_views(con, files, sources, export)
        # Every twin below reads archived days and hot days both.
        for view in ("readings", "user_events"):
            assert views[view].archived and views[view].exported, (view, views[view])
        con.execute((SQL_DIR / f"{name}.sql").read_text())
        return rows_of(con)
    finally:
        con.close()


def mongosh(twins, name: str, **env: str) -> Any:
    settings, db, *_ = twins
    return run_query(settings, db, name, **env)


def assert_same_rows(duck: list[dict[str, Any]], mongo: list[dict[str, Any]]) -> None:
    assert mongo, "the window holds no data: the comparison would prove nothing"
    assert [sorted(r) for r in duck] == [sorted(r) for r in mongo]
    for got, want in zip(duck, mongo, strict=True):
        assert got == pytest.approx(want, rel=1e-9), (got, want)


WINDOW = {"FROM": "2021-06-01T13:00:00Z", "UNTIL": "2021-06-03T07:30:00Z"}


def test_device_type_stats_twin(twins) -> None:
    assert_same_rows(
        sql(twins, "device_type_stats", **WINDOW), mongosh(twins, "device_type_stats", **WINDOW)
    )


@pytest.mark.parametrize("window", ["1m", "10s"])
def test_sensor_stats_twin_from_raw_readings_equals_the_rollups(twins, window: str) -> None:
    env = {**WINDOW, "WINDOW": window}
    assert_same_rows(
        sql(twins, "sensor_stats", **env), mongosh(twins, "sensor_stats", **env)["sensors"]
    )


def test_events_per_user_hour_twin(twins) -> None:
    env = {"FROM": "2021-06-01T00:00:00Z", "UNTIL": "2021-06-04T00:00:00Z"}
    assert_same_rows(
        sql(twins, "events_per_user_hour", **env), mongosh(twins, "events_per_user_hour", **env)
    )
    one = {**env, "USER_ID": "user-3"}
    assert_same_rows(
        sql(twins, "events_per_user_hour", **one), mongosh(twins, "events_per_user_hour", **one)
    )


@pytest.mark.parametrize("prefix", ["", "thermo"])
def test_latest_reading_per_device_twin(twins, prefix: str) -> None:
    env = {"DEVICE_PREFIX": prefix} if prefix else {}
    assert_same_rows(
        sql(twins, "latest_reading_per_device", **env),
        mongosh(twins, "latest_reading_per_device", **env),
    )


@pytest.mark.parametrize(
    "env", [{}, {"FROM": "2021-06-02T00:00:00Z", "TOPIC": "devices"}, {"LIMIT": "2"}]
)
def test_reject_reasons_twin(twins, env: dict[str, str]) -> None:
    duck = sql(twins, "reject_reasons", **env)
    mongo = mongosh(twins, "reject_reasons", **env)
    assert_same_rows([{k: v for k, v in r.items() if k != "total"} for r in duck], mongo["reasons"])
    assert {r["total"] for r in duck} == {mongo["total"]}
