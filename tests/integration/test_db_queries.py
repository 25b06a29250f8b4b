"""db/queries/*.js under mongosh against seeded data: each prints the expected JSON."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo.database import Database

from db.bootstrap import bootstrap
from headwater.settings import REPO_ROOT, Settings
from tests.integration.test_consumer_support import db_name, mongo_database, require_kafka_and_mongo

QUERIES = REPO_ROOT / "db" / "queries"
MONGOSH = REPO_ROOT / "infra" / "mongosh" / "node_modules" / ".bin" / "mongosh"
T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
# What FerretDB v1, the embedded server and MongoDB all run (and the query operators used).
# What MongoDB 5.0+ and the embedded server (tests/integration/test_mongo_support.py) both run.
PORTABLE = {
    "$match", "$group", "$sum", "$sort", "$project", "$limit", "$skip", "$unwind", "$count",
    "$addFields", "$gte", "$gt", "$lt", "$lte", "$in", "$eq", "$min", "$max", "$avg",
    "$dateTrunc",
}  # fmt: skip


@pytest.fixture
def seeded(settings: Settings, unique_name: str) -> Iterator[Database]:
    require_kafka_and_mongo(settings)
    with mongo_database(settings, db_name(unique_name)) as db:
        bootstrap(db)
        yield db


def run_query(settings: Settings, db: Database, name: str, **env: str) -> Any:
    assert MONGOSH.exists(), (
        "mongosh is missing: run `make install` (npm ci --prefix infra/mongosh)"
    )
    uri = settings.mongo.uri.rstrip("/") + "/" + db.name
    result = subprocess.run(
        [str(MONGOSH), uri, str(QUERIES / f"{name}.js")],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def test_every_query_script_uses_only_portable_operators() -> None:
    scripts = sorted(QUERIES.glob("*.js"))
    assert {p.stem for p in scripts} == {
        "latest_reading_per_device",
        "sensor_stats",
        "reject_reasons",
        "events_per_user_hour",
        "device_type_stats",
    }
    for path in scripts:
        # Operators are keys ($name followed by a colon); "$field" strings are field paths.
        operators = set(re.findall(r"(\$[A-Za-z]+)\s*:", path.read_text()))
        assert operators <= PORTABLE, (path.name, operators - PORTABLE)


def reading(device: str, sensor: str, value: float, unit: str, minutes: int) -> dict[str, Any]:
    ts = T0 + timedelta(minutes=minutes)
    kind = "machine" if device.startswith("machine") else device.split("-")[0]
    return {
        "_id": f"{device}|{ts.isoformat()}",
        "device_id": device,
        "device_type": kind,
        "sensor": sensor,
        "value": value,
        "unit": unit,
        "ts": ts,
        "source": "machine-metrics" if device.startswith("machine") else "devices",
        "ingest": {"topic": "t", "partition": 0, "offset": minutes, "ingested_at": T0},
    }


def test_latest_reading_per_device(settings: Settings, seeded: Database) -> None:
    seeded.readings.insert_many(
        [
            reading("thermostat-000", "temperature", 20.0, "C", 0),
            reading("thermostat-000", "temperature", 22.5, "C", 5),
            reading("thermostat-000", "temperature", 21.0, "C", 3),
            reading("barometer-001", "pressure", 1001.0, "hPa", 7),
            reading("barometer-001", "pressure", 999.5, "hPa", 1),
            reading("machine-param-19", "param_19", 8073.41, "unknown", 2),
        ]
    )
    assert run_query(settings, seeded, "latest_reading_per_device") == [
        {
            "device_id": "barometer-001",
            "sensor": "pressure",
            "value": 1001.0,
            "unit": "hPa",
            "ts": iso(T0 + timedelta(minutes=7)),
            "source": "devices",
            "readings": 2,
        },
        {
            "device_id": "machine-param-19",
            "sensor": "param_19",
            "value": 8073.41,
            "unit": "unknown",
            "ts": iso(T0 + timedelta(minutes=2)),
            "source": "machine-metrics",
            "readings": 1,
        },
        {
            "device_id": "thermostat-000",
            "sensor": "temperature",
            "value": 22.5,
            "unit": "C",
            "ts": iso(T0 + timedelta(minutes=5)),
            "source": "devices",
            "readings": 3,
        },
    ]
    only = run_query(settings, seeded, "latest_reading_per_device", DEVICE_PREFIX="thermo")
    assert [r["device_id"] for r in only] == ["thermostat-000"]


def test_average_per_device_type_from_the_raw_readings(
    settings: Settings, seeded: Database
) -> None:
    seeded.readings.insert_many(
        [
            reading("thermostat-000", "temperature", 20.0, "C", 0),
            reading("thermostat-001", "temperature", 23.0, "C", 1),
            reading("thermostat-000", "temperature", 26.0, "C", 2),
            reading("barometer-001", "pressure", 1001.0, "hPa", 3),
            reading("machine-param-19", "param_19", 8073.41, "unknown", 4),
            reading("thermostat-000", "temperature", -40.0, "C", 90),  # outside the range
        ]
    )
    window = {"FROM": iso(T0), "UNTIL": iso(T0 + timedelta(hours=1))}
    assert run_query(settings, seeded, "device_type_stats", **window) == [
        {
            "device_type": "barometer",
            "sensor": "pressure",
            "unit": "hPa",
            "devices": 1,
            "count": 1,
            "avg": 1001.0,
            "min": 1001.0,
            "max": 1001.0,
        },
        {
            "device_type": "machine",
            "sensor": "param_19",
            "unit": "unknown",
            "devices": 1,
            "count": 1,
            "avg": 8073.41,
            "min": 8073.41,
            "max": 8073.41,
        },
        {
            "device_type": "thermostat",
            "sensor": "temperature",
            "unit": "C",
            "devices": 2,
            "count": 3,
            "avg": 23.0,
            "min": 20.0,
            "max": 26.0,
        },
    ]


def rollup(device: str, sensor: str, window: str, minute: int, values: list[float]) -> dict:
    start = T0 + timedelta(minutes=minute)
    size = timedelta(minutes=1) if window == "1m" else timedelta(seconds=10)
    return {
        "_id": f"{device}|{sensor}|{window}|{start.isoformat()}",
        "device_id": device,
        "sensor": sensor,
        "window": window,
        "start": start,
        "end": start + size,
        "count": len(values),
        "sum": sum(values),
        "min": min(values),
        "max": max(values),
    }


def test_sensor_stats_for_a_time_range_from_the_rollups(
    settings: Settings, seeded: Database
) -> None:
    seeded.readings_rollup.insert_many(
        [
            rollup("thermostat-000", "temperature", "1m", 0, [20.0, 21.0, 22.0]),
            rollup("thermostat-000", "temperature", "1m", 1, [23.0]),
            rollup("thermostat-004", "temperature", "1m", 0, [10.0, 30.0]),
            rollup("barometer-001", "pressure", "1m", 1, [1000.0, 1010.0]),
            rollup("thermostat-000", "temperature", "1m", 5, [99.0]),  # after UNTIL
            rollup("thermostat-000", "temperature", "10s", 0, [-40.0]),  # other window size
        ]
    )
    env = {"FROM": "2026-11-23T09:00:00Z", "UNTIL": "2026-11-23T09:05:00Z"}
    result = run_query(settings, seeded, "sensor_stats", **env)
    assert (result["from"], result["until"], result["window"]) == (
        "2026-11-23T09:00:00.000Z",
        "2026-11-23T09:05:00.000Z",
        "1m",
    )
    assert result["sensors"] == [
        {"sensor": "pressure", "devices": 1, "windows": 1, "count": 2, "avg": 1005.0,
         "min": 1000.0, "max": 1010.0},
        {"sensor": "temperature", "devices": 2, "windows": 3, "count": 6,
         "avg": pytest.approx(126.0 / 6), "min": 10.0, "max": 30.0},
    ]  # fmt: skip
    ten = run_query(settings, seeded, "sensor_stats", WINDOW="10s", **env)
    assert [(s["sensor"], s["count"], s["min"]) for s in ten["sensors"]] == [
        ("temperature", 1, -40.0)
    ]


def test_reject_reasons_by_count(settings: Settings, seeded: Database) -> None:
    docs = []
    spec = [
        ("filter", "temperature outside [-50, 60] C", "devices", 5),
        ("validate", "value: Field required", "devices", 3),
        ("decode", "value is not JSON: Expecting value", "user-events", 3),
        ("validate", "missing schema_version header", "devices", 1),
    ]
    n = 0
    for stage, reason, topic, count in spec:
        for _ in range(count):
            docs.append(
                {
                    "_id": f"{topic}|0|{n}",
                    "stage": stage,
                    "reason": reason,
                    "topic": topic,
                    "partition": 0,
                    "offset": n,
                    "rejected_at": T0 + timedelta(minutes=n),
                }
            )
            n += 1
    seeded.rejected.insert_many(docs)
    assert run_query(settings, seeded, "reject_reasons") == {
        "total": 12,
        "reasons": [
            {"stage": "filter", "reason": "temperature outside [-50, 60] C", "count": 5},
            {"stage": "decode", "reason": "value is not JSON: Expecting value", "count": 3},
            {"stage": "validate", "reason": "value: Field required", "count": 3},
            {"stage": "validate", "reason": "missing schema_version header", "count": 1},
        ],
    }
    later = run_query(settings, seeded, "reject_reasons", FROM="2026-11-23T09:08:00Z")
    assert later == {
        "total": 4,
        "reasons": [
            {"stage": "decode", "reason": "value is not JSON: Expecting value", "count": 3},
            {"stage": "validate", "reason": "missing schema_version header", "count": 1},
        ],
    }
    only = run_query(settings, seeded, "reject_reasons", TOPIC="user-events", LIMIT="1")
    assert only["total"] == 3 and len(only["reasons"]) == 1


def test_events_per_user_per_hour(settings: Settings, seeded: Database) -> None:
    def event(n: int, user: str, received: datetime) -> dict[str, Any]:
        return {
            "_id": f"E{n:025d}",
            "event_id": f"E{n:025d}",
            "user_id": user,
            "event_type": "click",
            "occurred_at": None,
            "properties": {},
            "received_at": received,
            "source": "user-events",
        }

    seeded.user_events.insert_many(
        [
            event(1, "u1", T0 + timedelta(minutes=5)),
            event(2, "u1", T0 + timedelta(minutes=55)),
            event(3, "u1", T0 + timedelta(minutes=70)),
            event(4, "u2", T0 + timedelta(minutes=30)),
            event(5, "u2", T0 - timedelta(seconds=1)),  # before FROM
            event(6, "u0", T0 + timedelta(hours=3)),  # at UNTIL: excluded
        ]
    )
    env = {"FROM": "2026-11-23T09:00:00Z", "UNTIL": "2026-11-23T12:00:00Z"}
    assert run_query(settings, seeded, "events_per_user_hour", **env) == [
        {"user_id": "u1", "hour": "2026-11-23T09:00:00Z", "events": 2},
        {"user_id": "u1", "hour": "2026-11-23T10:00:00Z", "events": 1},
        {"user_id": "u2", "hour": "2026-11-23T09:00:00Z", "events": 1},
    ]
    assert run_query(settings, seeded, "events_per_user_hour", USER_ID="u2", **env) == [
        {"user_id": "u2", "hour": "2026-11-23T09:00:00Z", "events": 1}
    ]


def test_a_bad_time_argument_fails_with_a_message(settings: Settings, seeded: Database) -> None:
    uri = settings.mongo.uri.rstrip("/") + "/" + seeded.name
    result = subprocess.run(
        [str(MONGOSH), uri, str(QUERIES / "sensor_stats.js")],
        env={**os.environ, "FROM": "yesterday"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "FROM=yesterday is not an ISO-8601 time" in result.stdout + result.stderr
