"""The embedded MongoDB's per-operation memory budget: an operation that would hold more than the
budget fails with MongoDB's error 292 and a message that says how to narrow it, while the server
stays up (same PID, answers ping) and the consumer keeps landing a steady stream exactly.

The test stack runs the server with a small heap and budget (tests/stack.env: MONGO_HEAP,
MONGO_OP_MEMORY_MIB), so a few tens of MB of documents are enough to exceed it.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from pymongo.database import Database
from pymongo.errors import ExecutionTimeout, OperationFailure

from headwater.clients import mongo_client
from headwater.settings import Settings
from infra import stack
from tests.integration.test_chaos import Stream, assert_stream_exact, warm_up

pytestmark = pytest.mark.timeout(600)

PAYLOAD = 4096
# Enough documents that their payloads are at least twice the budget.


@pytest.fixture
def db(live_stack: Settings) -> Iterator[Database]:
    # pymongo's default 30 s of server selection: a server busy with over-budget work is waited for.
    with mongo_client(live_stack, 30_000) as client:
        yield client[live_stack.mongo.db]


@pytest.fixture
def big(live_stack: Settings) -> Iterator[Database]:
    """A scratch database whose `blobs` hold about twice the per-operation budget."""
    if not live_stack.mongo.embedded:
        pytest.fail("this test is about the stack's own Mongo server; MONGO_URI points elsewhere")
    client = mongo_client(live_stack, 30_000, socket_timeout_ms=300_000)
    scratch = client[f"limits_{random.randrange(16**8):08x}"]
    n = 2 * (live_stack.mongo.op_memory_mib << 20) // PAYLOAD
    for start in range(0, n, 500):
        scratch.blobs.insert_many(
            [
                {"_id": i, "group": i % 10, "payload": f"{i:08d}" + "x" * (PAYLOAD - 8)}
                for i in range(start, min(n, start + 500))
            ]
        )
    yield scratch
    client.drop_database(scratch.name)
    client.close()


def test_over_budget_operations_fail_cleanly_while_the_consumer_keeps_landing(
    live_stack: Settings, db: Database, big: Database
) -> None:
    pid = stack.program_pid(live_stack, "mongo")
    n = big.blobs.estimated_document_count()
    stream = Stream(live_stack)
    warm_up(stream)

    limit = f"per-operation memory limit of {live_stack.mongo.op_memory_mib} MiB"
    # Over-budget operations, again and again while the stream covers at least 25 s.
    deadline = time.monotonic() + 240
    rounds = 0
    while rounds == 0 or stream.covered() < timedelta(seconds=25):
        assert time.monotonic() < deadline, f"stream covered only {stream.covered()}"
        rounds += 1
        _over_budget_operations(big, n, limit)
    # A time limit too (the client's maxTimeMS, or MONGO_OP_TIME_LIMIT_S): MaxTimeMSExpired.
    with pytest.raises(ExecutionTimeout) as timed_out:
        list(big.blobs.aggregate([{"$group": {"_id": "$group", "n": {"$sum": 1}}}], maxTimeMS=1))
    assert timed_out.value.code == 50 and "narrow the query" in str(timed_out.value)
    assert big.client.admin.command("ping")["ok"] == 1.0
    assert stack.program_pid(live_stack, "mongo") == pid, "the server must not have restarted"
    assert_stream_exact(live_stack, db, stream)


def _over_budget_operations(big: Database, n: int, limit: str) -> None:
    with pytest.raises(OperationFailure) as grouped:
        list(big.blobs.aggregate([{"$group": {"_id": "$_id", "p": {"$push": "$payload"}}}]))
    assert grouped.value.code == 292, grouped.value.details
    assert limit in str(grouped.value) and "narrow the query" in str(grouped.value)

    with pytest.raises(OperationFailure) as sorted_:
        list(big.blobs.find({}, {"payload": 1}).sort("payload", -1))
    assert sorted_.value.code == 292
    assert "no index provides this order" in str(sorted_.value)

    # What streams is not charged: every document comes back, batch by batch.
    assert sum(1 for _ in big.blobs.find({}, {"payload": 1})) == n
    # A $group with few groups over the same documents fits, and so does a top-k sort.
    totals = list(big.blobs.aggregate([{"$group": {"_id": "$group", "n": {"$count": {}}}}]))
    assert sum(t["n"] for t in totals) == n and len(totals) == 10
    top = list(big.blobs.find({}, {"_id": 1}).sort("payload", -1).limit(3))
    assert [d["_id"] for d in top] == [n - 1, n - 2, n - 3]
