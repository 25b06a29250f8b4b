"""The consumer on the real stack: exact counts, right reasons, offsets, re-delivery, poison."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pymongo.database import Database

from headwater.settings import Settings
from producer.simulator import malformed_kind, readings
from tests.integration.test_consumer_support import (
    ConsumerProcess,
    counts,
    db_name,
    heartbeat,
    kafka_topics,
    landed,
    mongo_database,
    offsets_committed_to_the_end,
    pipeline_headers,
    produce_raw,
    produce_records,
    require_kafka_and_mongo,
    running_consumers,
    user_event,
    wait_for,
)

SINCE = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
OUT_OF_RANGE = {
    "temperature": "temperature outside [-50, 60] C",
    "pressure": "pressure outside [800, 1200] hPa",
    "humidity": "humidity outside [0, 100] %RH",
    "heart_rate": "heart_rate outside [25, 250] bpm",
}
MALFORMED_REASON = {
    "missing_value": ("validate", "value: Field required"),
    "wrong_type": ("validate", "value: Input should be a valid number"),
    "null_value": ("validate", "value: Input should be a valid number"),
}


@pytest.fixture
def stack_settings(settings: Settings) -> Settings:
    return require_kafka_and_mongo(settings)


@dataclass
class Seeded:
    """What was produced and what the store must end up holding."""

    readings: set[str] = field(default_factory=set)
    events: set[str] = field(default_factory=set)
    reasons: Counter[tuple[str, str]] = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return len(self.readings) + len(self.events) + sum(self.reasons.values())


def seed_two_topics(settings: Settings, dev_topic: str, ev_topic: str) -> Seeded:
    """Simulator readings (with its ~1% faults) and user events, plus hand-made bad messages."""
    seeded = Seeded()
    records = list(readings(SINCE, SINCE + timedelta(minutes=2), 8))
    for r in records:
        kind = malformed_kind(r["device_id"], r["ts"])
        if kind is None:
            seeded.readings.add(f"{r['device_id']}|{r['ts']}")
        elif kind == "impossible_value":
            seeded.reasons[("filter", OUT_OF_RANGE[r["sensor"]])] += 1
        else:
            seeded.reasons[MALFORMED_REASON[kind]] += 1
    produce_records(settings, "devices", dev_topic, records, run_id="run-a")
    produce_raw(
        settings,
        dev_topic,
        [
            (b"k1", b"not json at all", pipeline_headers("devices")),
            (b"k2", b'{"device_id": ', pipeline_headers("devices")),
            (b"k3", json.dumps(records[0]).encode(), pipeline_headers("devices", version=7)),
        ],
    )
    seeded.reasons[("decode", "value is not JSON: Expecting value")] += 1
    seeded.reasons[("decode", "value is not JSON: Expecting value")] += 1
    seeded.reasons[("validate", "unknown schema_version 7 for topic devices (known: 1)")] += 1

    ms = int(SINCE.timestamp() * 1000)
    events = [user_event(ms + i, i, f"user-{i % 10}") for i in range(300)]
    seeded.events = {e["event_id"] for e in events}
    bad_events = [user_event(ms + i, i, f"qa-{i}") for i in range(300, 320)]
    seeded.reasons[("filter", "test user (user_id starts with 'qa-')")] += 20
    bad_events += [user_event(ms + i, i, "user-1", event_type="Click") for i in range(320, 330)]
    seeded.reasons[
        # the pattern the user-events entry of sources.yaml declares
        ("validate", "event_type: String should match pattern '^[a-z][a-z0-9_.-]*$'")
    ] += 10
    for i in range(330, 335):
        event = user_event(ms + i, i, "user-2")
        del event["received_at"]
        bad_events.append(event)
    seeded.reasons[("validate", "received_at: Field required")] += 5
    produce_records(settings, "user-events", ev_topic, events + bad_events, run_id="run-b")
    return seeded


def rejected_reasons(db: Database) -> Counter[tuple[str, str]]:
    return Counter(
        (d["stage"], d["reason"]) for d in db.rejected.find({}, {"stage": 1, "reason": 1})
    )


def test_valid_and_invalid_messages_over_two_topics_land_exactly_once_with_reasons(
    stack_settings: Settings, unique_name: str, tmp_path: Path
) -> None:
    dev, ev = f"{unique_name}-dev", f"{unique_name}-ev"
    with (
        kafka_topics(stack_settings, [dev, ev]),
        mongo_database(stack_settings, db_name(unique_name)) as db,
    ):
        seeded = seed_two_topics(stack_settings, dev, ev)
        consumer = ConsumerProcess(
            stack_settings,
            {dev: "devices", ev: "user-events"},
            unique_name,
            db.name,
            tmp_path / "consumer.log",
        )
        with running_consumers(consumer):
            wait_for(lambda: landed(db) >= seeded.total, 180, f"{seeded.total} documents")
            wait_for(
                lambda: offsets_committed_to_the_end(stack_settings, unique_name, [dev, ev]),
                60,
                "offsets committed to the end",
            )
            status = wait_for(
                lambda: (
                    (hb := heartbeat(db, unique_name, "member-1")) and hb["lag_total"] == 0 and hb
                ),
                30,
                "a heartbeat with zero lag",
            )
            code, health = consumer.healthz()
            metrics = consumer.metrics()

        assert counts(db) == {
            "readings": len(seeded.readings),
            "user_events": len(seeded.events),
            "work_orders": 0,
            "matches": 0,
            "rejected": sum(seeded.reasons.values()),
        }
        assert {d["_id"] for d in db.readings.find({}, {"_id": 1})} == seeded.readings
        assert {d["_id"] for d in db.user_events.find({}, {"_id": 1})} == seeded.events
        assert rejected_reasons(db) == seeded.reasons

        assert sorted(status["assigned"]) == sorted(
            f"{t}[{p}]" for t in (dev, ev) for p in range(stack_settings.kafka.partitions)
        )
        assert status["counters"]["consumed"] == seeded.total
        assert status["counters"]["stored"] == len(seeded.readings) + len(seeded.events)
        assert all(p["lag"] == 0 for p in status["partitions"])
        assert (code, health["ok"]) == (200, True)
        assert f'headwater_consumer_messages_total{{outcome="stored",topic="{dev}"}}' in metrics

        reading = db.readings.find_one({"_id": sorted(seeded.readings)[0]})
        assert reading is not None
        assert set(reading) == {
            "_id",
            "device_id",
            "device_type",  # kept: people analyse by it
            "sensor",
            "value",
            "unit",
            "ts",
            "source",
            "ingest",
        }
        assert reading["source"] == "devices"
        assert reading["ingest"]["topic"] == dev and reading["ingest"]["run_id"] == "run-a"
        assert isinstance(reading["ts"], datetime)


def test_redelivering_every_message_leaves_the_counts_unchanged(
    stack_settings: Settings, unique_name: str, tmp_path: Path
) -> None:
    dev, ev = f"{unique_name}-dev", f"{unique_name}-ev"
    topics = {dev: "devices", ev: "user-events"}
    with (
        kafka_topics(stack_settings, [dev, ev]),
        mongo_database(stack_settings, db_name(unique_name)) as db,
    ):
        seeded = seed_two_topics(stack_settings, dev, ev)
        first = ConsumerProcess(stack_settings, topics, unique_name, db.name, tmp_path / "a.log")
        with running_consumers(first):
            wait_for(lambda: landed(db) >= seeded.total, 180, "the first delivery")
            assert first.stop() == 0
        before = counts(db)
        rejected_before = {d["_id"]: d for d in db.rejected.find()}

        # A new group starts from the beginning: every message is delivered a second time.
        again = f"{unique_name}-again"
        second = ConsumerProcess(stack_settings, topics, again, db.name, tmp_path / "b.log")
        with running_consumers(second):
            wait_for(
                lambda: offsets_committed_to_the_end(stack_settings, again, [dev, ev]),
                180,
                "the second group to read everything",
            )
            status = wait_for(
                lambda: (
                    (hb := heartbeat(db, again, "member-1"))
                    and hb["counters"]["consumed"] >= seeded.total
                    and hb
                ),
                30,
                "the second group's heartbeat",
            )

        assert status["counters"]["consumed"] == seeded.total
        assert counts(db) == before
        assert sum(before.values()) == seeded.total
        # A rejection is written once: its second delivery leaves it exactly as it was.
        assert {d["_id"]: d for d in db.rejected.find()} == rejected_before


def test_poison_messages_are_quarantined_and_consumption_continues(
    stack_settings: Settings, unique_name: str, tmp_path: Path
) -> None:
    topic = f"{unique_name}-dev"
    reading = {
        "device_id": "thermostat-000",
        "device_type": "thermostat",
        "sensor": "temperature",
        "value": 21.5,
        "unit": "C",
        "ts": "2026-11-20T12:00:00Z",
    }
    good = pipeline_headers("devices")
    huge = b'{"device_id": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    poison = [
        (b"thermostat-000|a", json.dumps(reading).encode(), good),
        (b"p1", b"\x00\x01 binary \xff garbage", good),
        (b"p2", b"<html>not json</html>", good),
        (b"p3", huge, good),
        (
            b"p4",
            json.dumps({**reading, "ts": "2026-11-20T12:00:01Z"}).encode(),
            pipeline_headers("devices", 99),
        ),
        (b"p5", None, good),
        (b"p6", json.dumps(reading).encode(), [("source", b"devices")]),
        (b"thermostat-000|b", json.dumps({**reading, "ts": "2026-11-20T12:00:02Z"}).encode(), good),
    ]
    # The 2 MiB message needs a topic and a producer that accept it (Kafka's default is 1 MB).
    with (
        kafka_topics(stack_settings, [topic], {"max.message.bytes": "3145728"}),
        mongo_database(stack_settings, db_name(unique_name)) as db,
    ):
        produce_raw(stack_settings, topic, poison, **{"message.max.bytes": 3_500_000})
        consumer = ConsumerProcess(
            stack_settings, {topic: "devices"}, unique_name, db.name, tmp_path / "consumer.log"
        )
        with running_consumers(consumer):
            wait_for(lambda: landed(db) >= len(poison), 120, "every poison message answered")
            assert consumer.alive()
            # Still consuming after the poison: a new message arrives as usual.
            later = {**reading, "ts": "2026-11-20T12:00:03Z"}
            produce_raw(stack_settings, topic, [(b"later", json.dumps(later).encode(), good)])
            wait_for(
                lambda: db.readings.find_one({"_id": "thermostat-000|2026-11-20T12:00:03Z"}),
                60,
                "the message after the poison",
            )
            code, _ = consumer.healthz()

        assert code == 200
        assert counts(db)["readings"] == 3
        assert rejected_reasons(db) == Counter(
            {
                ("decode", "value is not UTF-8"): 1,
                ("decode", "value is not JSON: Expecting value"): 1,
                ("decode", "value larger than 1048576 bytes"): 1,
                ("validate", "unknown schema_version 99 for topic devices (known: 1)"): 1,
                ("decode", "value is empty (a tombstone)"): 1,
                ("validate", "missing schema_version header"): 1,
            }
        )
        big = db.rejected.find_one({"reason": "value larger than 1048576 bytes"})
        assert big is not None
        assert big["raw"]["size"] == len(huge) and big["raw"]["truncated"] is True
        assert len(big["raw"]["text"]) == 65_536 and big["raw"]["sha256"]
        binary = db.rejected.find_one({"reason": "value is not UTF-8"})
        assert binary is not None and "base64" in binary["raw"] and binary["key"] == "p1"
        assert binary["_id"].startswith(f"{topic}|") and binary["offset"] >= 0


def test_a_record_mongodb_cannot_store_is_quarantined_and_its_batch_still_lands(
    stack_settings: Settings, unique_name: str, tmp_path: Path
) -> None:
    topic = f"{unique_name}-ev"
    ms = int(SINCE.timestamp() * 1000)
    events = [user_event(ms + i, i, "user-1") for i in range(5)]
    events[2]["properties"] = {"bad\u0000key": 1}  # valid JSON, not a BSON field name
    events[3]["properties"] = {"$where": "x", "a.b": {"$gt": 1}}  # odd, but storable
    with (
        kafka_topics(stack_settings, [topic]),
        mongo_database(stack_settings, db_name(unique_name)) as db,
    ):
        produce_records(stack_settings, "user-events", topic, events, run_id="odd")
        consumer = ConsumerProcess(
            stack_settings, {topic: "user-events"}, unique_name, db.name, tmp_path / "c.log"
        )
        with running_consumers(consumer):
            wait_for(lambda: landed(db) >= len(events), 120, "every event answered")
            wait_for(
                lambda: offsets_committed_to_the_end(stack_settings, unique_name, [topic]),
                60,
                "offsets committed to the end",
            )
            assert consumer.alive()

        stored = {d["_id"] for d in db.user_events.find({}, {"_id": 1})}
        rejected = list(db.rejected.find())
        assert len(stored) + len(rejected) == len(events)
        assert events[2]["event_id"] not in stored
        assert {e["event_id"] for e in events[:2] + events[4:]} <= stored
        nul = [r for r in rejected if r["stage"] == "store"]
        assert len(nul) >= 1
        assert nul[0]["reason"].startswith("user_events: not storable as BSON")


def test_a_record_sent_again_with_new_values_ends_as_its_latest_version(
    stack_settings: Settings, unique_name: str, tmp_path: Path
) -> None:
    topic = f"{unique_name}-dev"
    first = [
        {
            "device_id": f"thermostat-{i:03d}",
            "device_type": "thermostat",
            "sensor": "temperature",
            "value": 20.0,
            "unit": "C",
            "ts": "2026-11-20T12:00:00Z",
        }
        for i in range(40)
    ]
    # Half of the keys again with a corrected value (inserted first, found there, replaced),
    # and some new keys in the same batch (plain inserts).
    corrected = [{**r, "value": 21.5} for r in first[::2]]
    new = [{**r, "device_id": f"thermostat-{i + 100:03d}"} for i, r in enumerate(first[:10])]
    with (
        kafka_topics(stack_settings, [topic]),
        mongo_database(stack_settings, db_name(unique_name)) as db,
    ):
        produce_records(stack_settings, "devices", topic, first, run_id="run-1")
        consumer = ConsumerProcess(
            stack_settings, {topic: "devices"}, unique_name, db.name, tmp_path / "c.log"
        )
        with running_consumers(consumer):
            wait_for(lambda: landed(db) >= len(first), 120, "the first version")
            produce_records(stack_settings, "devices", topic, corrected + new, run_id="run-2")
            wait_for(
                lambda: offsets_committed_to_the_end(stack_settings, unique_name, [topic]),
                120,
                "the second version committed",
            )

        assert counts(db)["readings"] == len(first) + len(new)
        assert counts(db)["rejected"] == 0
        values = {d["_id"]: d for d in db.readings.find()}
        for record in first:
            doc = values[f"{record['device_id']}|2026-11-20T12:00:00Z"]
            expected = 21.5 if record in first[::2] else 20.0
            assert doc["value"] == expected
            assert doc["ingest"]["run_id"] == ("run-2" if expected == 21.5 else "run-1")
        assert all(values[f"{r['device_id']}|2026-11-20T12:00:00Z"]["value"] == 20.0 for r in new)
