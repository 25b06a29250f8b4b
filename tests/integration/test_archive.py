"""Parquet archives on the real MongoDB server and filesystem, and the archive DAG's backfill.

- A day archived holds exactly MongoDB's documents for it, field by field after the type
  mapping (headwater.archive), and nothing of the neighbouring days; a re-run leaves the same rows.
- Prune deletes only days past the retention whose archive verifies; a missing archive or a
  corrupted file blocks its day (and leaves its documents); a pruned day re-archived merges the
  late documents MongoDB got since.
- `airflow backfill create` of archive_readings over three past days archives each exactly once.
"""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pyarrow.parquet as pq
import pytest
import requests
from pymongo.database import Database

from consumer.documents import IngestMeta, to_document
from headwater.archive import ArchiveError, archive_schema, row_document, schema_kinds
from headwater.archive_store import ArchiveFiles, archive_day, day_keys, prune
from headwater.clients import mongo_client
from headwater.settings import REPO_ROOT, Settings
from headwater.sources import Source, load_sources, record_key
from tests.integration.airflow_helpers import api, unpaused, wait_for_backfill

PER_DAY = 1500


def _sources(collection: str) -> list[Source]:
    """The declared readings sources (devices, machine-metrics), stored in a collection of the
    test's own, so nothing another test stores is archived or pruned here."""
    declared = load_sources(REPO_ROOT / "sources.yaml")
    return [
        declared[name].model_copy(update={"collection": collection})
        for name in ("devices", "machine-metrics")
    ]


def _reading(source: Source, prefix: str, i: int, ts: datetime, run_id: str) -> dict[str, Any]:
    if source.name == "devices":
        body = {
            "device_id": f"{prefix}-dev-{i % 40}",
            "device_type": None if i % 7 == 0 else "thermostat",
            "sensor": "temperature",
            "value": (i % 50) + (0.25 if i % 2 else 0),  # ints and floats, as JSON gives them
            "unit": "C",
            "ts": ts,
        }
        key = record_key(source, {"device_id": body["device_id"], "ts": ts.isoformat()})
    else:
        param = i % 20
        body = {
            "device_id": f"{prefix}-machine-param-{param}",
            "device_type": "machine",
            "sensor": f"param_{param}",
            "value": float(i),
            "unit": "unknown",
            "ts": ts,
        }
        key = f"{prefix}-{param}|{int(ts.timestamp() * 1000)}"
    meta = IngestMeta(source.topic, i % 2, i, ts + timedelta(seconds=2), run_id, 1)
    return {"_id": key, **to_document(body, source.name, meta)}


def _seed(db: Database, source: Source, prefix: str, day: date, n: int, run_id: str) -> None:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    step = timedelta(days=1) / n
    docs = [_reading(source, prefix, i, start + step * i, run_id) for i in range(n)]
    db[source.collection].insert_many(docs, ordered=False)


@pytest.fixture
def scratch(live_stack: Settings, tmp_path) -> Iterator[tuple[Database, ArchiveFiles, str]]:
    collection = f"archive_test_{uuid.uuid4().hex[:8]}"
    client = mongo_client(live_stack)
    db = client[live_stack.mongo.db]
    yield db, ArchiveFiles(str(tmp_path / "archive")), collection
    db.drop_collection(collection)
    client.close()


def _archived_docs(files: ArchiveFiles, source: Source, day: date, schema) -> list[dict]:
    manifest = files.manifest(source.collection, source.name, day)
    assert manifest is not None
    table = pq.read_table(files.data_path(manifest), filesystem=files.fs)
    kinds = schema_kinds(schema)
    return [row_document(row, source.name, kinds) for row in table.to_pylist()]


def _as_archived(doc: dict[str, Any]) -> dict[str, Any]:
    """A MongoDB document after the archive's type mapping (number -> float)."""
    return {**doc, "value": float(doc["value"])}


def test_a_day_is_archived_exactly_and_a_rerun_leaves_the_same_rows(scratch) -> None:
    db, files, collection = scratch
    sources = _sources(collection)
    day = date(2022, 3, 10)
    for source in sources:
        for d in (day - timedelta(days=1), day, day + timedelta(days=1)):
            _seed(db, source, "arch", d, PER_DAY, f"run-{d}")
    schema = archive_schema(sources)

    for source in sources:
        result = archive_day(db, files, sources, source, day, run_id="first")
        assert result.rows == result.mongo_rows == PER_DAY
        mongo = {
            d["_id"]: _as_archived(d)
            for d in db[collection].find(
                {
                    "source": source.name,
                    "ts": {
                        "$gte": datetime(2022, 3, 10, tzinfo=UTC),
                        "$lt": datetime(2022, 3, 11, tzinfo=UTC),
                    },
                }
            )
        }
        archived = {d["_id"]: d for d in _archived_docs(files, source, day, schema)}
        assert archived == mongo
        manifest = files.manifest(collection, source.name, day)
        assert manifest is not None and manifest.rows == PER_DAY
        assert 0 < manifest.file_bytes < manifest.bson_bytes

    first = {
        s.name: pq.read_table(
            files.data_path(files.manifest(collection, s.name, day)), filesystem=files.fs
        )
        for s in sources
    }
    for source in sources:
        archive_day(db, files, sources, source, day, run_id="again")
        again = pq.read_table(
            files.data_path(files.manifest(collection, source.name, day)), filesystem=files.fs
        )
        assert again.equals(first[source.name])
        manifest = files.manifest(collection, source.name, day)
        assert [h["run_id"] for h in manifest.history] == ["first", "again"]


def test_prune_removes_only_verified_days_past_retention(scratch) -> None:
    db, files, collection = scratch
    sources = _sources(collection)
    devices = sources[0]
    old = [date(2022, 5, 1) + timedelta(days=n) for n in range(4)]  # past retention
    recent = date(2022, 5, 20)  # within it
    now = datetime(2022, 5, 25, 12, tzinfo=UTC)  # retention 7: days before 2022-05-18 go
    for day in [*old, recent]:
        for source in sources:
            _seed(db, source, "prune", day, 300, f"run-{day}")
    archived_ok, unarchived, corrupted, late = old
    for day in (archived_ok, corrupted, late, recent):
        for source in sources:
            archive_day(db, files, sources, source, day, run_id="r")
    manifest = files.manifest(collection, devices.name, corrupted)
    path = files.data_path(manifest)
    data = bytearray(files.read_bytes(path))
    data[len(data) // 3] ^= 0x55
    files.write_atomic(path, bytes(data))
    # A record stored after its day was archived: the archive lacks it.
    _seed(db, devices, "late", late, 1, "late-run")

    report = prune(db, files, sources, 7, now)

    def count(source: Source, day: date) -> int:
        return len(day_keys(db, source, day))

    pruned = {(p["source"], p["date"]) for p in report.pruned}
    blocked = {(b["source"], b["date"]): b["reason"] for b in report.blocked}
    assert (devices.name, archived_ok.isoformat()) in pruned
    assert all(count(s, archived_ok) == 0 for s in sources)
    assert all(count(s, recent) == 300 for s in sources)  # within retention: kept
    assert "not archived" in blocked[(devices.name, unarchived.isoformat())]
    assert count(devices, unarchived) == 300
    assert "changed since it was verified" in blocked[(devices.name, corrupted.isoformat())]
    assert count(devices, corrupted) == 300
    assert (sources[1].name, corrupted.isoformat()) in pruned  # its file is intact
    assert "not in the archive" in blocked[(devices.name, late.isoformat())]
    assert count(devices, late) == 301

    # The late record is archived by a re-run; the next prune then removes the day.
    archive_day(db, files, sources, devices, late, run_id="r2")
    assert files.manifest(collection, devices.name, late).rows == 301
    prune(db, files, sources, 7, now)
    assert count(devices, late) == 0

    # A day already pruned, re-archived with a late record: the archive keeps its rows and
    # merges the new one (MongoDB now holds only that one).
    _seed(db, devices, "later", archived_ok, 1, "later-run")
    result = archive_day(db, files, sources, devices, archived_ok, run_id="r3")
    assert result.merged and result.rows == 301 and result.kept_from_archive == 300
    with pytest.raises(ArchiveError, match="changed since it was verified"):
        files.verified_keys(files.manifest(collection, devices.name, corrupted))


# ---- the DAG, backfilled with the real CLI ----------------------------------------------------

DAG_ID = "archive_readings"


def _backfill(settings: Settings, first: date, last: date) -> list[dict[str, Any]]:
    cmd = [
        sys.executable, "-m", "infra.stack", "airflow", "backfill", "create",
        "--dag-id", DAG_ID,
        "--from-date", datetime(first.year, first.month, first.day, tzinfo=UTC).isoformat(),
        "--to-date", datetime(last.year, last.month, last.day, tzinfo=UTC).isoformat(),
        "--max-active-runs", "1",
        "--reprocess-behavior", "none",
    ]  # fmt: skip
    result = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    base, headers = api(settings)
    wait_for_backfill(settings, DAG_ID)
    runs = requests.get(
        f"{base}/api/v2/dags/{DAG_ID}/dagRuns",
        params={
            "limit": 50,
            "run_type": "backfill",
            "logical_date_gte": datetime(
                first.year, first.month, first.day, tzinfo=UTC
            ).isoformat(),
            "logical_date_lte": datetime(last.year, last.month, last.day, tzinfo=UTC).isoformat(),
        },
        headers=headers,
        timeout=10,
    ).json()["dag_runs"]
    return runs


@pytest.mark.timeout(1500)
def test_backfill_of_three_past_days_archives_each_exactly_once(live_stack: Settings) -> None:
    settings = live_stack
    declared = load_sources()
    sources = [declared["devices"], declared["machine-metrics"]]
    # Three days of their own per run, years before any other test's data.
    first = date(2021, 1, 1) + timedelta(days=random.randrange(360))
    days = [first + timedelta(days=n) for n in range(3)]
    prefix = f"bf-{uuid.uuid4().hex[:6]}"
    files = ArchiveFiles(settings.archive_root)
    client = mongo_client(settings)
    db = client[settings.mongo.db]
    try:
        for day in days:
            for source in sources:
                _seed(db, source, prefix, day, 400, f"seed-{day}")
        with unpaused(settings, DAG_ID):
            runs = _backfill(settings, days[0], days[-1])
        assert sorted(r["state"] for r in runs) == ["success"] * 3, runs
        run_of_day = {r["data_interval_start"][:10]: r["dag_run_id"] for r in runs}
        assert sorted(run_of_day) == [d.isoformat() for d in days]
        for day in days:
            for source in sources:
                manifest = files.manifest("readings", source.name, day)
                assert manifest is not None, (source.name, day)
                # Written once, by that day's run, and equal to what MongoDB holds.
                assert [h["run_id"] for h in manifest.history] == [run_of_day[day.isoformat()]]
                assert manifest.rows == len(day_keys(db, source, day)) == 400
    finally:
        for day in days:
            start = datetime(day.year, day.month, day.day, tzinfo=UTC)
            db.readings.delete_many({"ts": {"$gte": start, "$lt": start + timedelta(days=1)}})
            for source in sources:
                folder = files.day_dir("readings", source.name, day)
                shutil.rmtree(folder, ignore_errors=True)
        client.close()
