"""db bootstrap on the stack's MongoDB: every collection and index, idempotently."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from db.bootstrap import bootstrap
from db.schema import current_schema
from headwater.settings import REPO_ROOT, Settings
from tests.integration.test_consumer_support import db_name, mongo_database, require_kafka_and_mongo

SCHEMA = current_schema()


@pytest.fixture
def fresh_db(settings: Settings, unique_name: str) -> Iterator[Database]:
    require_kafka_and_mongo(settings)
    with mongo_database(settings, db_name(unique_name)) as db:
        yield db


def index_names(db: Database, collection: str) -> set[str]:
    return {i["name"] for i in db[collection].list_indexes()}


def test_bootstrap_creates_every_collection_and_index(fresh_db: Database) -> None:
    report = bootstrap(fresh_db)
    assert sorted(report.created) == sorted(SCHEMA.collections)
    assert set(SCHEMA.collections) <= set(fresh_db.list_collection_names())
    for index in SCHEMA.indexes:
        assert index.name in index_names(fresh_db, index.collection)


def test_bootstrap_twice_changes_nothing_and_keeps_data(fresh_db: Database) -> None:
    bootstrap(fresh_db)
    fresh_db.readings.insert_one({"_id": "d|t", "device_id": "d"})
    before = {c: index_names(fresh_db, c) for c in SCHEMA.collections}
    second = bootstrap(fresh_db)
    assert second.created == []
    assert {c: index_names(fresh_db, c) for c in SCHEMA.collections} == before
    assert fresh_db.readings.count_documents({}) == 1


def test_bootstrap_completes_a_database_the_consumer_wrote_to_first(fresh_db: Database) -> None:
    fresh_db.readings.insert_one({"_id": "d|t"})  # created implicitly, without a validator
    report = bootstrap(fresh_db)
    assert "readings" not in report.created
    # Real MongoDB takes the validator via collMod; the embedded server cannot and says so.
    assert "readings" in report.validators_updated + report.validators_unsupported


def test_one_rollup_per_device_sensor_window_and_start(fresh_db: Database) -> None:
    bootstrap(fresh_db)
    start = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    key = {"device_id": "d", "sensor": "temperature", "window": "1m", "start": start}
    fresh_db.readings_rollup.insert_one({"_id": "a", **key})
    with pytest.raises(DuplicateKeyError):
        fresh_db.readings_rollup.insert_one({"_id": "b", **key})
    fresh_db.readings_rollup.insert_one({"_id": "c", **key, "window": "10s"})


def test_bootstrap_command_line(settings: Settings, fresh_db: Database) -> None:
    env = dict(os.environ, MONGO_DB=fresh_db.name)
    result = subprocess.run(
        [sys.executable, "-m", "db.bootstrap"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert (
        f"database {fresh_db.name}: created {len(SCHEMA.collections)} collections" in result.stdout
    )
    assert set(SCHEMA.collections) <= set(fresh_db.list_collection_names())
