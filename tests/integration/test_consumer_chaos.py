"""The consumer through crashes: killed mid-stream, MongoDB down, a group member leaving."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from headwater.settings import Settings
from infra import stack
from producer.simulator import malformed_kind, readings
from tests.integration.test_consumer_support import (
    ConsumerProcess,
    counts,
    db_name,
    heartbeat,
    kafka_topics,
    mongo_database,
    offsets_committed_to_the_end,
    produce_records,
    require_kafka_and_mongo,
    restart_mongo,
    running_consumers,
    user_event,
    wait_for,
)

pytestmark = pytest.mark.chaos

SINCE = datetime(2026, 11, 21, 0, 0, tzinfo=UTC)
DEVICES = 8


@pytest.fixture
def stack_settings(settings: Settings) -> Settings:
    return require_kafka_and_mongo(settings)


def device_records(start_s: int, seconds: int) -> list[dict]:
    since = SINCE + timedelta(seconds=start_s)
    return list(readings(since, since + timedelta(seconds=seconds), DEVICES))


def expected_split(records: list[dict]) -> tuple[set[str], int]:
    """The reading ids that must be stored, and how many records must be rejected."""
    valid = {
        f"{r['device_id']}|{r['ts']}"
        for r in records
        if not malformed_kind(r["device_id"], r["ts"])
    }
    return valid, len(records) - len(valid)


def quick_total(db: object) -> int:
    # Metadata counts: cheap enough to poll while 50,000 documents arrive.
    return sum(db[c].estimated_document_count() for c in ("readings", "user_events", "rejected"))  # type: ignore[index]


def test_consumer_killed_mid_stream_of_50000_messages_loses_nothing_and_doubles_nothing(
    stack_settings: Settings, unique_name: str, tmp_path: Path
) -> None:
    topic = f"{unique_name}-dev"
    records = device_records(0, 6250)
    assert len(records) == 50_000
    valid, invalid = expected_split(records)
    with (
        kafka_topics(stack_settings, [topic]),
        mongo_database(stack_settings, db_name(unique_name)) as db,
    ):
        produce_records(stack_settings, "devices", topic, records, run_id="fifty-k")
        first = ConsumerProcess(
            stack_settings, {topic: "devices"}, unique_name, db.name, tmp_path / "first.log"
        )
        with running_consumers(first):
            wait_for(lambda: quick_total(db) >= 10_000, 240, "10,000 documents before the kill")
            first.kill()
        at_kill = quick_total(db)
        assert at_kill < len(records), "the kill must land mid-stream"

        second = ConsumerProcess(
            stack_settings,
            {topic: "devices"},
            unique_name,
            db.name,
            tmp_path / "second.log",
            instance="member-2",
        )
        with running_consumers(second):
            wait_for(lambda: quick_total(db) >= len(records), 300, "all 50,000 messages")
            wait_for(
                lambda: offsets_committed_to_the_end(stack_settings, unique_name, [topic]),
                60,
                "offsets committed to the end",
            )
            restarted = wait_for(lambda: heartbeat(db, unique_name, "member-2"), 30, "heartbeat")

        assert counts(db) == {
            "readings": len(valid),
            "user_events": 0,
            "work_orders": 0,
            "matches": 0,
            "rejected": invalid,
        }
        assert {d["_id"] for d in db.readings.find({}, {"_id": 1})} == valid
        # The restarted member resumed from the committed offsets: it did not re-read everything.
        assert restarted["counters"]["consumed"] < len(records)


def test_mongo_stopped_for_10s_mid_stream_the_consumer_recovers_with_exact_counts(
    stack_settings: Settings, unique_name: str, tmp_path: Path
) -> None:
    if not stack_settings.mongo.embedded:
        pytest.fail("this test stops the stack's own MongoDB; MONGO_URI points elsewhere")
    topic = f"{unique_name}-dev"
    before, during = device_records(0, 2500), device_records(2500, 625)
    valid, invalid = expected_split(before + during)
    with (
        kafka_topics(stack_settings, [topic]),
        mongo_database(stack_settings, db_name(unique_name)) as db,
    ):
        produce_records(stack_settings, "devices", topic, before, run_id="before")
        consumer = ConsumerProcess(
            stack_settings, {topic: "devices"}, unique_name, db.name, tmp_path / "consumer.log"
        )
        with running_consumers(consumer):
            wait_for(lambda: quick_total(db) >= 3_000, 180, "3,000 documents before the outage")
            killed_at = datetime.now(UTC)
            stack.kill_program(stack_settings, "mongo")  # held down until restart_mongo
            health_codes: list[int] = []
            try:
                # The stream goes on while MongoDB is away.
                producing = threading.Thread(
                    target=produce_records,
                    args=(stack_settings, "devices", topic, during, "during"),
                )
                producing.start()
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    health_codes.append(consumer.healthz()[0])
                    time.sleep(0.5)
                producing.join(120)
            finally:
                restart_mongo(stack_settings)
            back_at = datetime.now(UTC)
            wait_for(lambda: quick_total(db) >= len(before) + len(during), 240, "every message")
            wait_for(
                lambda: offsets_committed_to_the_end(stack_settings, unique_name, [topic]),
                60,
                "offsets committed to the end",
            )
            status = wait_for(
                lambda: (hb := heartbeat(db, unique_name, "member-1")) and hb["store_ok"] and hb,
                30,
                "a heartbeat after the outage",
            )
            recovered_code = wait_for(lambda: consumer.healthz()[0] == 200, 30, "/healthz 200")
            assert consumer.alive(), "the consumer must recover by itself, not restart"

        assert 503 in health_codes, f"/healthz during the outage answered {health_codes}"
        assert recovered_code
        assert status["last_error"].startswith("MongoDB unavailable"), status["last_error"]
        error_at = status["last_error_at"]  # aware UTC, as headwater.clients reads dates
        assert killed_at <= error_at <= back_at + timedelta(seconds=5)
        assert status["counters"]["store_retries"] >= 1
        assert counts(db) == {
            "readings": len(valid),
            "user_events": 0,
            "work_orders": 0,
            "matches": 0,
            "rejected": invalid,
        }
        assert {d["_id"] for d in db.readings.find({}, {"_id": 1})} == valid


def test_two_consumers_split_the_partitions_and_one_takes_over_when_the_other_stops(
    stack_settings: Settings, unique_name: str, tmp_path: Path
) -> None:
    dev, ev = f"{unique_name}-dev", f"{unique_name}-ev"
    topics = {dev: "devices", ev: "user-events"}
    everything = {f"{t}[{p}]" for t in topics for p in range(stack_settings.kafka.partitions)}
    ms = int(SINCE.timestamp() * 1000)
    first_events = [user_event(ms + i, i, f"user-{i % 7}") for i in range(2000)]
    second_events = [user_event(ms + i, i, f"user-{i % 7}") for i in range(2000, 4000)]
    first_readings, second_readings = device_records(0, 1000), device_records(1000, 1000)
    with (
        kafka_topics(stack_settings, [dev, ev]),
        mongo_database(stack_settings, db_name(unique_name)) as db,
    ):
        a = ConsumerProcess(
            stack_settings, topics, unique_name, db.name, tmp_path / "a.log", "member-a"
        )
        b = ConsumerProcess(
            stack_settings, topics, unique_name, db.name, tmp_path / "b.log", "member-b"
        )
        with running_consumers(a, b):

            def split() -> bool:
                ha, hb = (
                    heartbeat(db, unique_name, "member-a"),
                    heartbeat(db, unique_name, "member-b"),
                )
                if not ha or not hb or not ha["assigned"] or not hb["assigned"]:
                    return False
                return set(ha["assigned"]) | set(hb["assigned"]) == everything and not (
                    set(ha["assigned"]) & set(hb["assigned"])
                )

            wait_for(split, 90, "both members to hold a share of the partitions")
            produce_records(stack_settings, "devices", dev, first_readings, run_id="one")
            produce_records(stack_settings, "user-events", ev, first_events, run_id="one")
            half = len(first_readings) + len(first_events)
            wait_for(lambda: quick_total(db) >= half, 180, "the first half")
            wait_for(
                lambda: heartbeat(db, unique_name, "member-a")["counters"]["consumed"] > 0,
                30,
                "a's work",
            )
            wait_for(
                lambda: heartbeat(db, unique_name, "member-b")["counters"]["consumed"] > 0,
                30,
                "b's work",
            )

            assert a.stop() == 0  # SIGTERM: finish, commit, leave the group
            wait_for(
                lambda: set(heartbeat(db, unique_name, "member-b")["assigned"]) == everything,
                90,
                "member-b to take over every partition",
            )
            produce_records(stack_settings, "devices", dev, second_readings, run_id="two")
            produce_records(stack_settings, "user-events", ev, second_events, run_id="two")
            total = half + len(second_readings) + len(second_events)
            wait_for(lambda: quick_total(db) >= total, 180, "the second half")
            wait_for(
                lambda: offsets_committed_to_the_end(stack_settings, unique_name, [dev, ev]),
                60,
                "offsets committed to the end",
            )
            stopped_a = heartbeat(db, unique_name, "member-a")

        valid, invalid = expected_split(first_readings + second_readings)
        assert counts(db) == {
            "readings": len(valid),
            "user_events": len(first_events) + len(second_events),
            "work_orders": 0,
            "matches": 0,
            "rejected": invalid,
        }
        assert {d["_id"] for d in db.readings.find({}, {"_id": 1})} == valid
        assert stopped_a is not None and stopped_a["phase"] == "stopped"
