"""The embedded MongoDB's secondary indexes give exactly what a full scan gives: for generated
documents (mixed types, missing fields, arrays) and generated queries (equality, ranges, `$in`,
sort + limit), after a restart, and after a SIGKILL in the middle of writes.

The oracle is the same collection read without an index: a query wrapped in a one-branch `$or`
means the same on any MongoDB, and the embedded server's planner never uses an index for it (the
test checks that with `explain`). A twin collection without secondary indexes is compared too.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymongo import ASCENDING, DESCENDING
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import PyMongoError

from headwater.clients import mongo_client
from headwater.settings import Settings
from infra import stack, supervisor
from tests.integration.mongo_helpers import wait_for_ping

pytestmark = pytest.mark.timeout(900)

BASE = datetime(2026, 11, 1)
N_DOCS = 1500
INDEXES = [
    ("a_1", [("a", ASCENDING)]),
    ("b_1_t_-1", [("b", ASCENDING), ("t", DESCENDING)]),
    ("t_1", [("t", ASCENDING)]),
    ("s_1_a_1", [("s", ASCENDING), ("a", ASCENDING)]),
    ("tags_1", [("tags", ASCENDING)]),
]


def _scalar(rng: random.Random) -> Any:
    kind = rng.randrange(7)
    if kind == 0:
        return rng.randrange(-5, 6)
    if kind == 1:
        return rng.randrange(-10, 11) / 2
    if kind == 2:
        return rng.choice(["", "a", "b", "ba", "c", "z"])
    if kind == 3:
        return None
    if kind == 4:
        return BASE + timedelta(minutes=rng.randrange(0, 50))
    if kind == 5:
        return rng.choice([True, False])
    return rng.randrange(2**40, 2**40 + 3)  # a long


def _document(rng: random.Random, i: int) -> dict[str, Any]:
    doc: dict[str, Any] = {"_id": f"doc-{i:05d}"}
    if rng.random() < 0.85:
        doc["a"] = _scalar(rng)
    if rng.random() < 0.9:
        doc["b"] = rng.choice(["x", "y", "z", 1, None])
    if rng.random() < 0.9:
        doc["t"] = BASE + timedelta(minutes=rng.randrange(0, 50))
    if rng.random() < 0.8:
        doc["s"] = rng.choice(["p", "q", "r"])
    if rng.random() < 0.5:
        doc["tags"] = [rng.choice(["u", "v", "w"]) for _ in range(rng.randrange(0, 3))]
    return doc


scalars = st.one_of(
    st.integers(-5, 5),
    st.sampled_from([-2.5, 0.0, 0.5, 3.5]),
    st.sampled_from(["", "a", "b", "ba", "c", "z"]),
    st.none(),
    st.integers(0, 50).map(lambda m: BASE + timedelta(minutes=m)),
    st.booleans(),
)
times = st.integers(0, 50).map(lambda m: BASE + timedelta(minutes=m))
field_values = {
    "a": scalars,
    "b": st.sampled_from(["x", "y", "z", 1, None, "w"]),
    "t": times,
    "s": st.sampled_from(["p", "q", "r", "none"]),
    "tags": st.sampled_from(["u", "v", "w"]),
}


@st.composite
def conditions(draw: st.DrawFn, field: str) -> Any:
    values = field_values[field]
    kind = draw(st.sampled_from(["eq", "in", "range", "range2", "ne"]))
    if kind == "eq":
        return draw(values)
    if kind == "in":
        return {"$in": draw(st.lists(values, min_size=0, max_size=4))}
    if kind == "ne":
        return {"$ne": draw(values)}
    lo, hi = draw(values), draw(values)
    ops = draw(
        st.sampled_from([("$gte", "$lt"), ("$gt", "$lte"), ("$gte", "$lte"), ("$gt", "$lt")])
    )
    if kind == "range":
        return {draw(st.sampled_from(list(ops))): lo}
    return {ops[0]: lo, ops[1]: hi}


@st.composite
def queries(draw: st.DrawFn) -> dict[str, Any]:
    fields = draw(
        st.lists(st.sampled_from(list(field_values)), min_size=1, max_size=3, unique=True)
    )
    return {f: draw(conditions(f)) for f in fields}


sorts = st.one_of(
    st.none(),
    st.tuples(st.sampled_from(["a", "b", "t", "s"]), st.sampled_from([1, -1])),
)


def _find(coll: Collection, query: dict[str, Any], sort: Any, limit: int) -> list[dict[str, Any]]:
    cursor = coll.find(query)
    if sort is not None:
        field, direction = sort
        # _id last: ties in the sort field would otherwise make two correct answers differ
        cursor = cursor.sort([(field, direction), ("_id", direction)])
    if limit:
        cursor = cursor.limit(limit)
    docs = list(cursor)
    return docs if sort is not None else sorted(docs, key=lambda d: d["_id"])


def _assert_same(
    coll: Collection, twin: Collection | None, query: dict, sort: Any, limit: int
) -> None:
    got = _find(coll, query, sort, limit)
    if sort is None and limit:
        # no order asked for: any `limit` of the matches is right
        everything = _find(coll, {"$or": [query]}, None, 0)
        assert len(got) == min(limit, len(everything)), (query, limit)
        assert all(doc in everything for doc in got), (query, limit)
        return
    scanned = _find(coll, {"$or": [query]}, sort, limit)
    assert got == scanned, (query, sort, limit)
    if twin is not None:
        assert got == _find(twin, query, sort, limit), (query, sort, limit)
    if sort is None:
        assert coll.count_documents(query) == len(scanned), query


@pytest.fixture(scope="module")
def indexed(live_stack: Settings) -> Iterator[tuple[Settings, str]]:
    """A database with `docs` (every index) and `twin` (only _id), holding the same documents."""
    if not live_stack.mongo.embedded:
        pytest.fail("these tests restart the stack's own Mongo server; MONGO_URI points elsewhere")
    name = f"idx_{random.randrange(16**8):08x}"
    client = mongo_client(live_stack)
    db = client[name]
    for index_name, keys in INDEXES:
        db.docs.create_index(keys, name=index_name)
    rng = random.Random(20261201)
    docs = [_document(rng, i) for i in range(N_DOCS)]
    db.docs.insert_many(docs)
    db.twin.insert_many(docs)
    yield live_stack, name
    with wait_for_ping(live_stack) as c:
        c.drop_database(name)
    client.close()


def _db(settings_: Settings, name: str) -> Database:
    return mongo_client(settings_)[name]


def test_queries_name_the_index_that_serves_them(indexed: tuple[Settings, str]) -> None:
    settings_, name = indexed
    db = _db(settings_, name)
    plan = db.docs.find({"b": "x", "t": {"$gte": BASE}}).explain()["queryPlanner"]["winningPlan"]
    assert plan["inputStage"]["indexName"] == "b_1_t_-1"
    plan = db.docs.find({"t": {"$gte": BASE}}).sort("t", -1).limit(3).explain()["queryPlanner"]
    assert plan["winningPlan"]["inputStage"]["indexName"] == "t_1"
    assert plan["winningPlan"]["inputStage"]["direction"] == "backward"
    scan = db.docs.find({"$or": [{"b": "x"}]}).explain()["queryPlanner"]["winningPlan"]
    assert scan["stage"] == "COLLSCAN"
    agg = db.command(
        "explain",
        {"aggregate": "docs", "pipeline": [{"$match": {"s": "p", "a": 1}}], "cursor": {}},
    )
    assert agg["queryPlanner"]["winningPlan"]["inputStage"]["indexName"] == "s_1_a_1"


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(query=queries(), sort=sorts, limit=st.sampled_from([0, 0, 1, 5, 40]))
def test_indexed_results_equal_full_scan_results(
    indexed: tuple[Settings, str], query: dict, sort: Any, limit: int
) -> None:
    settings_, name = indexed
    db = _db(settings_, name)
    _assert_same(db.docs, db.twin, query, sort, limit)


def _sample_queries(n: int, seed: int) -> list[tuple[dict, Any, int]]:
    rng = random.Random(seed)
    out: list[tuple[dict, Any, int]] = []
    for _ in range(n):
        field = rng.choice(["a", "b", "t", "s", "tags"])
        lo = _scalar(rng) if field == "a" else BASE + timedelta(minutes=rng.randrange(50))
        query: dict[str, Any]
        if field in ("a", "t"):
            query = {field: {"$gte": lo}}
        else:
            query = {field: rng.choice(["x", "y", "p", "q", "u", 1])}
        if rng.random() < 0.5:
            query["t"] = {"$lt": BASE + timedelta(minutes=rng.randrange(50))}
        sort = rng.choice([None, ("t", -1), ("a", 1), ("b", 1)])
        out.append((query, sort, rng.choice([0, 3])))
    return out


def test_indexes_still_agree_after_a_restart_and_after_sigkill_mid_write(
    indexed: tuple[Settings, str],
) -> None:
    settings_, name = indexed
    checks = _sample_queries(60, seed=7)

    # 1. Clean restart: the indexes reopen from disk.
    supervisor.rpc(settings_, timeout_s=120).supervisor.stopProcess("mongo", True)
    stack.start_program(settings_, "mongo")
    with wait_for_ping(settings_) as client:
        db = client[name]
        for query, sort, limit in checks:
            _assert_same(db.docs, db.twin, query, sort, limit)

    # 2. Writers change indexed fields, delete and insert while the server is SIGKILLed.
    stop = threading.Event()
    errors: list[str] = []

    def write(worker: int) -> None:
        rng = random.Random(worker)
        with mongo_client(settings_, 2000) as c:
            coll = c[name].docs
            i = 0
            while not stop.is_set():
                i += 1
                try:
                    target = f"doc-{rng.randrange(N_DOCS):05d}"
                    op = rng.randrange(4)
                    if op == 0:
                        coll.update_one({"_id": target}, {"$set": {"a": _scalar(rng), "b": "y"}})
                    elif op == 1:
                        coll.delete_one({"_id": target})
                    elif op == 2:
                        coll.insert_one(_document(rng, 100_000 + worker * 100_000 + i))
                    else:
                        coll.update_many({"s": "q", "a": {"$gte": 3}}, {"$set": {"t": BASE}})
                except PyMongoError as exc:
                    errors.append(type(exc).__name__)
                    return

    writers = [threading.Thread(target=write, args=(w,), daemon=True) for w in range(3)]
    for w in writers:
        w.start()
    deadline = time.monotonic() + 60
    with wait_for_ping(settings_) as c:
        before = c[name].docs.estimated_document_count()
        while c[name].docs.estimated_document_count() < before + 20 and time.monotonic() < deadline:
            time.sleep(0.2)  # let the writers get going: the kill must land mid-write
    stack.kill_program(settings_, "mongo", hold_down=False)  # SIGKILL; the supervisor restarts it
    stop.set()
    for w in writers:
        w.join(timeout=60)
    assert errors, "the writers should have seen the server go away"
    with wait_for_ping(settings_) as client:
        db = client[name]
        for query, sort, limit in checks:
            _assert_same(db.docs, None, query, sort, limit)
        # every document is reachable through each index exactly once
        total = db.docs.count_documents({})
        assert total == len(list(db.docs.find({"$or": [{}]}, {"_id": 1})))
        assert db.docs.count_documents({"t": {"$gte": BASE - timedelta(days=1)}}) == len(
            list(db.docs.find({"$or": [{"t": {"$gte": BASE - timedelta(days=1)}}]}, {"_id": 1}))
        )
