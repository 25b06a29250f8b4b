"""The stack's consumer group survives losing a member: one of its supervised members is SIGKILLed
(by the PID supervisord reports) while a stream of simulator readings flows through the pipeline;
the survivor ends up owning every partition within a bound, and every offered record is stored
exactly once.

The bound follows from the consumer's session timeout (HEADWATER_CONSUMER_SESSION_TIMEOUT_MS,
10 s): the coordinator evicts the dead member after it, and the survivor joins the rebalance at its
next heartbeat (a third of it). The time it took is printed (run with -s to see it).
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from pymongo.database import Database

from headwater.clients import mongo_client
from headwater.contracts import Collections
from headwater.kafka_admin import admin_client, group_members
from headwater.settings import ConsumerMember, Settings
from headwater.sources import get_source, record_key
from infra import stack
from producer.service import ingest_window
from producer.simulator import malformed_kind, readings
from tests.integration.test_consumer_support import offsets_committed_to_the_end, wait_for

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(900)]

DEVICES = get_source("devices")
# Two hours of the simulator in 5-minute windows (57,600 readings with 8 devices): a stream long
# enough that the kill lands while both members are writing.
CHUNK = timedelta(minutes=5)
CHUNKS = 24
KILL_AFTER_STORED = 6_000


def _client_id(member: ConsumerMember) -> str:
    # consumer/bootstrap.py names each member's Kafka client after its instance.
    return f"headwater-consumer-{member.name}"


def _names(partitions: set[tuple[str, int]]) -> set[str]:
    return {f"{t}[{p}]" for t, p in partitions}


@dataclass
class Stream:
    """The ingest task's work for consecutive windows of [since, since + CHUNKS * CHUNK), in a
    thread: pull each from the stand-in and produce it (acks=all), retried until it lands."""

    settings: Settings
    since: datetime
    run_prefix: str
    produced: int = 0
    failed_attempts: int = 0
    chunks_done: int = 0
    error: BaseException | None = None
    _thread: threading.Thread | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    @property
    def until(self) -> datetime:
        return self.since + CHUNKS * CHUNK

    @property
    def run_ids(self) -> list[str]:
        return [f"{self.run_prefix}-{i}" for i in range(CHUNKS)]

    def start(self) -> Stream:
        self._thread = threading.Thread(target=self._run, name="group-stream", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            for i, run_id in enumerate(self.run_ids):
                start = self.since + i * CHUNK
                while not self._stop.is_set():
                    try:
                        result = ingest_window(
                            DEVICES, start, start + CHUNK, self.settings, run_id=run_id
                        )
                    except Exception:  # noqa: BLE001 - a failed window is retried, like a task
                        self.failed_attempts += 1
                        self._stop.wait(1.0)
                        continue
                    self.produced += result.produced
                    self.chunks_done += 1
                    break
        except BaseException as exc:  # noqa: BLE001 - reported by join()
            self.error = exc

    def join(self, timeout_s: float = 300) -> None:
        assert self._thread is not None
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            self._stop.set()
            self._thread.join(60)
            raise AssertionError(f"stream not done in {timeout_s:.0f}s ({self.chunks_done} chunks)")
        assert self.error is None, self.error
        assert self.chunks_done == CHUNKS


def offered(settings: Settings, since: datetime, until: datetime) -> tuple[set[str], set[str]]:
    """Keys of the readings that must be stored and of those that must be rejected."""
    valid, invalid = set(), set()
    for record in readings(since, until, settings.services.simulator_devices):
        bad = malformed_kind(record["device_id"], record["ts"]) is not None
        (invalid if bad else valid).add(record_key(DEVICES, record))
    return valid, invalid


def _window(since: datetime, until: datetime) -> dict[str, Any]:
    return {"source": DEVICES.name, DEVICES.stored_time_field: {"$gte": since, "$lt": until}}


def stored_count(db: Database, since: datetime, until: datetime) -> int:
    """Stored devices readings in [since, until) (answered from an index: cheap to poll)."""
    return db[Collections.READINGS].count_documents(_window(since, until))


def stored_ids(db: Database, since: datetime, until: datetime) -> list[str]:
    """_id of every stored devices reading in [since, until), duplicates (if any) included."""
    return [d["_id"] for d in db[Collections.READINGS].find(_window(since, until), {"_id": 1})]


def rejected_keys(db: Database, run_ids: list[str]) -> list[str]:
    """Key of every rejected message of the stream's runs, duplicates (if any) included."""
    query = {"topic": DEVICES.topic, "run_id": {"$in": run_ids}}
    return [d["key"] for d in db[Collections.REJECTED].find(query, {"key": 1})]


def fresh_window(db: Database) -> datetime:
    """The start of two past hours nothing has stored yet (so every count is this test's)."""
    for _ in range(10):
        since = datetime(2019, 1, 1, tzinfo=UTC) + timedelta(hours=2 * random.randrange(4000))
        if not stored_count(db, since, since + CHUNKS * CHUNK):
            return since
    raise AssertionError("no unused two-hour window found")


def assignment(settings: Settings) -> tuple[str, dict[str, set[tuple[str, int]]]]:
    """The group's state and each member's partitions (by client id), from its coordinator."""
    group = settings.consumer.group or settings.kafka.consumer_group
    state, members = group_members(admin_client(settings, log_level="0"), group)
    return state, {m.client_id: set(m.partitions) for m in members}


def healthz(member: ConsumerMember) -> dict[str, Any]:
    return requests.get(f"{member.url}/healthz", timeout=5).json()


def test_a_member_sigkilled_mid_stream_hands_every_partition_to_the_survivor_exactly_once(
    live_stack: Settings, unique_name: str
) -> None:
    settings = live_stack
    members = settings.consumer_members()
    assert len(members) >= 2, "HEADWATER_CONSUMER_PROCESSES must be at least 2 for this test"
    session_s = settings.consumer.session_timeout_ms / 1000
    # Eviction after the session timeout, the survivor's next heartbeat, a rebalance: about
    # 1.3 x the session timeout on a quiet machine. Generous for a busy shared 2-core box.
    move_bound_s = 3 * session_s + 30
    by_client = {_client_id(m): m for m in members}

    def split() -> dict[str, set[tuple[str, int]]] | None:
        state, owned = assignment(settings)
        everyone = set(owned) == set(by_client) and all(owned.values())
        return owned if state == "STABLE" and everyone else None

    owned = wait_for(split, 120, "every member of the group to own a share of the partitions")
    everything = set().union(*owned.values())
    assert {p for t, p in everything if t == DEVICES.topic} == set(
        range(settings.kafka.partitions)
    ), everything

    with mongo_client(settings, 30_000) as client:
        db = client[settings.mongo.db]
        since = fresh_window(db)
        stream = Stream(settings, since, unique_name).start()
        valid, invalid = offered(settings, since, stream.until)
        assert len(valid) + len(invalid) == CHUNKS * 300 * settings.services.simulator_devices

        # The member owning the most devices partitions dies while both are writing the stream.
        victim = by_client[
            max(owned, key=lambda c: sum(1 for t, _ in owned[c] if t == DEVICES.topic))
        ]
        survivors = [m for m in members if m != victim]
        wait_for(
            lambda: stored_count(db, since, stream.until) >= KILL_AFTER_STORED,
            240,
            f"{KILL_AFTER_STORED} readings of the stream stored before the kill",
            interval_s=0.2,
        )
        victim_state = healthz(victim)
        killed_at = time.monotonic()
        pid = stack.kill_program(settings, victim.name)  # held down until released below
        try:
            at_kill = stored_count(db, since, stream.until)
            assert at_kill < len(valid), "the kill must land mid-stream"
            assert victim_state["counters"]["stored"] > 0, "the victim was writing"

            def taken_over() -> bool:
                state, now_owned = assignment(settings)
                if state != "STABLE" or set(now_owned) != {_client_id(m) for m in survivors}:
                    return False
                if set().union(*now_owned.values()) != everything:
                    return False
                # ... and the survivors themselves report it (what they actually consume).
                try:
                    reported = set().union(*(set(healthz(m)["assigned"]) for m in survivors))
                except requests.RequestException:
                    return False  # a survivor busy for a moment: asked again
                return reported == _names(everything)

            wait_for(
                taken_over,
                move_bound_s,
                f"the survivors to own all {len(everything)} partitions after {victim.name} died",
                interval_s=0.25,
            )
            moved_s = time.monotonic() - killed_at

            stream.join()
            assert stream.produced == len(valid) + len(invalid)
            wait_for(
                lambda: (
                    stored_count(db, since, stream.until) >= len(valid)
                    and len(set(rejected_keys(db, stream.run_ids))) >= len(invalid)
                ),
                300,
                f"all {len(valid)} valid readings stored and {len(invalid)} rejected",
                interval_s=1,
            )
            wait_for(
                lambda: offsets_committed_to_the_end(
                    settings,
                    settings.consumer.group or settings.kafka.consumer_group,
                    [DEVICES.topic],
                ),
                60,
                "the group's offsets committed to the end of the devices topic",
            )
            ids, keys = stored_ids(db, since, stream.until), rejected_keys(db, stream.run_ids)
            survivor_counters = [healthz(m)["counters"] for m in survivors]
        finally:
            stack.start_programs(settings, [victim.name])

        # N offered = N stored: every valid reading once (total and distinct), every bad one
        # quarantined once.
        assert len(ids) == len(set(ids)) == len(valid)
        assert set(ids) == valid
        assert len(keys) == len(set(keys)) == len(invalid)
        assert set(keys) == invalid
        assert sum(c["consumed"] for c in survivor_counters) > 0

    # The member comes back into the group and gets a share again.
    wait_for(split, 120, f"{victim.name} back in the group with a share of the partitions")
    print(
        f"\nconsumer group: {victim.name} (pid {pid}) SIGKILLed with {at_kill} of {len(valid)} "
        f"readings stored; {', '.join(m.name for m in survivors)} owned all "
        f"{len(everything)} partitions {moved_s:.1f}s later (session timeout {session_s:.0f}s, "
        f"bound {move_bound_s:.0f}s); offered {stream.produced}, stored {len(ids)} distinct "
        f"{len(set(ids))}, rejected {len(keys)} distinct {len(set(keys))}; "
        f"{stream.failed_attempts} failed produce attempts"
    )
