"""The stack's MongoDB: the operations the pipeline relies on, and durability across a crash."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import pytest
from pymongo import ASCENDING, ReturnDocument, UpdateOne
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from headwater.clients import mongo_client
from headwater.settings import REPO_ROOT, Settings
from infra import stack
from tests.integration.mongo_helpers import wait_for_ping


@pytest.fixture
def mongo_db(live_stack: Settings, unique_name: str) -> Iterator[Database]:
    client = mongo_client(live_stack)
    db = client[unique_name.replace("-", "_")]
    yield db
    client.drop_database(db.name)
    client.close()


def test_insert_and_find_round_trip(mongo_db: Database) -> None:
    mongo_db.docs.insert_one({"_id": "a", "value": 1.5, "tags": ["x", "y"]})
    assert mongo_db.docs.find_one({"_id": "a"}) == {"_id": "a", "value": 1.5, "tags": ["x", "y"]}


def test_unique_index_rejects_a_duplicate(mongo_db: Database) -> None:
    mongo_db.events.create_index([("user", ASCENDING), ("seq", ASCENDING)], unique=True)
    mongo_db.events.insert_one({"user": "u1", "seq": 1})
    with pytest.raises(DuplicateKeyError):
        mongo_db.events.insert_one({"user": "u1", "seq": 1})
    assert mongo_db.events.count_documents({}) == 1


def test_bulk_upserts_twice_leave_one_document_per_key(mongo_db: Database) -> None:
    ops = [
        UpdateOne({"_id": f"dev-{i % 50}"}, {"$set": {"value": i % 50}}, upsert=True)
        for i in range(200)
    ]
    first = mongo_db.readings.bulk_write(ops, ordered=False)
    assert first.upserted_count == 50
    mongo_db.readings.bulk_write(ops, ordered=False)
    assert mongo_db.readings.count_documents({}) == 50
    assert mongo_db.readings.find_one({"_id": "dev-7"})["value"] == 7


def test_aggregation_match_group_sum_sort(mongo_db: Database) -> None:
    mongo_db.readings.insert_many(
        [{"sensor": s, "device": d, "v": 1} for s in ("temp", "hum") for d in range(3)]
        + [{"sensor": "temp", "device": 9, "v": 5}, {"sensor": "noise", "device": 1, "v": 1}]
    )
    rows = list(
        mongo_db.readings.aggregate(
            [
                {"$match": {"sensor": {"$in": ["temp", "hum"]}}},
                {"$group": {"_id": "$sensor", "total": {"$sum": "$v"}, "n": {"$sum": 1}}},
                {"$sort": {"total": -1}},
            ]
        )
    )
    assert rows == [{"_id": "temp", "total": 8, "n": 4}, {"_id": "hum", "total": 3, "n": 3}]


def test_acknowledged_writes_survive_sigkill_of_the_server(
    live_stack: Settings, mongo_db: Database
) -> None:
    if not live_stack.mongo.embedded:
        pytest.fail("this test kills the stack's own Mongo server; MONGO_URI points elsewhere")
    mongo_db.durable.insert_many([{"_id": i, "payload": "x" * 100} for i in range(1000)])
    mongo_db.durable.bulk_write(
        [UpdateOne({"_id": i}, {"$set": {"updated": True}}) for i in range(0, 1000, 2)]
    )
    mongo_db.durable.insert_one({"_id": "last"})

    killed = stack.kill_program(live_stack, "mongo", hold_down=False)  # crash; supervisor restarts
    assert not stack.alive(killed)
    client = wait_for_ping(live_stack)
    try:
        assert stack.program_pid(live_stack, "mongo") != killed
        coll = client[mongo_db.name].durable
        assert coll.count_documents({}) == 1001
        assert coll.count_documents({"updated": True}) == 500
        assert coll.find_one({"_id": "last"}) == {"_id": "last"}
    finally:
        client.close()


def test_mongosh_runs_a_script_against_the_stack(live_stack: Settings, mongo_db: Database) -> None:
    mongo_db.shell.insert_many([{"_id": 1, "n": 2}, {"_id": 2, "n": 3}])
    mongosh = REPO_ROOT / "infra" / "mongosh" / "node_modules" / ".bin" / "mongosh"
    uri = live_stack.mongo.uri.rstrip("/") + "/" + mongo_db.name
    script = (
        "const r = db.shell.aggregate([{$group: {_id: null, total: {$sum: '$n'}}}]).toArray();"
        "print(JSON.stringify({total: r[0].total}))"
    )
    result = subprocess.run(
        [str(mongosh), uri, "--quiet", "--norc", "--eval", script],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"total": 5}


def test_find_one_and_update_finds_the_document_it_upserted(mongo_db: Database) -> None:
    for n in range(1, 4):
        doc = mongo_db.checks.find_one_and_update(
            {"_id": "c|run|1"},
            {"$set": {"ok": n % 2 == 0}, "$inc": {"failures": 1}},
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        assert doc == {"_id": "c|run|1", "ok": n % 2 == 0, "failures": n}
    latest = mongo_db.checks.find_one_and_update(
        {"failures": {"$gte": 1}}, {"$set": {"seen": True}}, sort=[("failures", -1)]
    )
    assert latest is not None and latest["failures"] == 3
    assert mongo_db.checks.count_documents({}) == 1
