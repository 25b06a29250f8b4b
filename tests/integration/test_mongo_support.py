"""What the embedded MongoDB-wire server supports and what it does not, as the README's MongoDB
section states it: every row of that table is one of these assertions."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psutil
import pytest
from pymongo.database import Database
from pymongo.errors import ConfigurationError, OperationFailure

from headwater.clients import mongo_client
from headwater.settings import Settings
from infra import stack

# Aware: headwater.clients reads dates back as aware UTC instants.
START = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture
def scratch(live_stack: Settings, unique_name: str) -> Iterator[Database]:
    if not live_stack.mongo.embedded:
        pytest.fail("these tests describe the stack's own Mongo server; MONGO_URI points elsewhere")
    client = mongo_client(live_stack)
    db = client[unique_name.replace("-", "_")]
    db.t.insert_many(
        [{"_id": i, "ts": START + timedelta(minutes=7 * i), "v": i, "k": i % 3} for i in range(30)]
    )
    yield db
    client.drop_database(db.name)
    client.close()


def test_date_trunc_minute_hour_day_and_the_count_accumulator(scratch: Database) -> None:
    def buckets(unit: str) -> list[dict]:
        return list(
            scratch.t.aggregate(
                [
                    {
                        "$group": {
                            "_id": {"$dateTrunc": {"date": "$ts", "unit": unit}},
                            "n": {"$count": {}},
                        }
                    },
                    {"$sort": {"_id": 1}},
                ]
            )
        )

    assert buckets("day") == [{"_id": START, "n": 30}]
    hours = buckets("hour")
    assert hours[0] == {"_id": START, "n": 9} and sum(h["n"] for h in hours) == 30
    assert buckets("minute")[1] == {"_id": START + timedelta(minutes=7), "n": 1}
    binned = scratch.t.aggregate(
        [
            {
                "$group": {
                    "_id": {"$dateTrunc": {"date": "$ts", "unit": "minute", "binSize": 15}},
                    "n": {"$sum": 1},
                }
            },
            {"$sort": {"_id": 1}},
            {"$limit": 1},
        ]
    )
    assert list(binned) == [{"_id": START, "n": 3}]


def test_date_trunc_by_month_says_what_to_type_instead(scratch: Database) -> None:
    with pytest.raises(OperationFailure) as err:
        list(
            scratch.t.aggregate(
                [{"$group": {"_id": {"$dateTrunc": {"date": "$ts", "unit": "month"}}}}]
            )
        )
    assert "$year" in str(err.value) and "$month" in str(err.value)
    by_month = list(
        scratch.t.aggregate(
            [{"$group": {"_id": {"y": {"$year": "$ts"}, "m": {"$month": "$ts"}}, "n": {"$sum": 1}}}]
        )
    )
    assert by_month == [{"_id": {"y": 2026, "m": 11}, "n": 30}]


def test_group_accumulators(scratch: Database) -> None:
    rows = list(
        scratch.t.aggregate(
            [
                {"$match": {"v": {"$gte": 0}}},
                {
                    "$group": {
                        "_id": "$k",
                        "avg": {"$avg": "$v"},
                        "min": {"$min": "$v"},
                        "max": {"$max": "$v"},
                        "first": {"$first": "$v"},
                        "last": {"$last": "$v"},
                        "sum": {"$sum": "$v"},
                        "n": {"$count": {}},
                    }
                },
                {"$sort": {"_id": 1}},
            ]
        )
    )
    assert rows[0] == {
        "_id": 0,
        "avg": 13.5,
        "min": 0,
        "max": 27,
        "first": 0,
        "last": 27,
        "sum": 135,
        "n": 10,
    }
    assert [r["n"] for r in rows] == [10, 10, 10]


def test_no_authentication_and_no_validators_or_sessions(
    live_stack: Settings, scratch: Database
) -> None:
    host, port = live_stack.mongo.host, live_stack.mongo.port
    with mongo_client(f"mongodb://someone:secret@{host}:{port}/", 5000) as c:
        with pytest.raises(OperationFailure, match="saslStart"):
            c.admin.command("ping")
    scratch.create_collection("v", validator={"$jsonSchema": {"required": ["x"]}})
    scratch.v.insert_one({"y": 1})  # accepted: validators are not enforced
    assert scratch.v.count_documents({}) == 1
    with pytest.raises(OperationFailure, match="collMod"):
        scratch.command("collMod", "v")
    with scratch.client.start_session() as session, pytest.raises(ConfigurationError):
        scratch.t.find_one({}, session=session)


def test_the_server_listens_on_loopback_only(live_stack: Settings) -> None:
    pid = stack.program_pid(live_stack, "mongo")
    listening = [
        c.laddr
        for c in psutil.Process(pid).net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN
    ]
    assert listening, "the server should be listening"
    for addr in listening:
        ip = ipaddress.ip_address(addr.ip)
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped  # Java's dual-stack socket bound to 127.0.0.1
        assert ip == ipaddress.ip_address("127.0.0.1"), listening
    assert {a.port for a in listening} == {live_stack.mongo.port}
