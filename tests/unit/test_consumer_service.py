"""The consumer loop with in-memory fakes: write before commit, pause and retry, stop, rebalance."""

from __future__ import annotations

import itertools
import json
import threading
from datetime import UTC, datetime
from typing import Any

import pytest

from consumer.config import ConsumerConfig
from consumer.kafka_source import CommitError, RebalanceListener
from consumer.messages import InboundMessage, TopicPartition
from consumer.metrics import ConsumerMetrics
from consumer.mongo_store import StoreUnavailable
from consumer.pipeline import PipelineContext, WritePlan, sources_by_topic
from consumer.service import ConsumerService
from consumer.status import ConsumerState
from headwater.kafka_admin import OFFSET_INVALID, PartitionOffsets
from headwater.sources import load_sources

NOW = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)
HEADERS = (("schema_version", b"1"), ("run_id", b"r-1"))


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class FakeSource:
    """A group member holding `partitions`, delivering scripted batches."""

    def __init__(self, clock: FakeClock, partitions: list[TopicPartition]) -> None:
        self.clock = clock
        self.partitions = list(partitions)
        self.queue: list[InboundMessage] = []
        self.log: list[tuple[str, Any]] = []
        self.paused: set[TopicPartition] = set()
        self.committed: dict[TopicPartition, int] = {}
        self.commit_errors: list[CommitError] = []
        self.listener: RebalanceListener | None = None
        self.polls: list[tuple[int, float]] = []
        self.on_poll: list[Any] = []  # callables run at the start of a poll, one per poll
        # (condition, action): at the start of a poll, the first whose condition holds runs once.
        self.when: list[tuple[Any, Any]] = []
        self.closed = False

    def subscribe(self, topics: list[str], listener: RebalanceListener) -> None:
        self.listener = listener
        listener.on_assigned(self.partitions)

    def poll_batch(self, max_messages: int, timeout_s: float) -> list[InboundMessage]:
        self.polls.append((max_messages, timeout_s))
        if self.on_poll:
            self.on_poll.pop(0)()
        for i, (condition, action) in enumerate(self.when):
            if condition():
                del self.when[i]
                action()
                break
        ready = [m for m in self.queue if m.tp not in self.paused and m.tp in self.partitions]
        batch = ready[:max_messages]
        for m in batch:
            self.queue.remove(m)
        if not batch:
            self.clock.t += timeout_s
        return batch

    def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.log.append(("commit", dict(offsets)))
        if self.commit_errors:
            raise self.commit_errors.pop(0)
        self.committed.update(offsets)

    def assignment(self) -> list[TopicPartition]:
        return list(self.partitions)

    def pause(self, partitions: list[TopicPartition]) -> None:
        self.log.append(("pause", sorted(partitions)))
        self.paused |= set(partitions)

    def resume(self, partitions: list[TopicPartition]) -> None:
        self.log.append(("resume", sorted(partitions)))
        self.paused -= set(partitions)

    def member_id(self) -> str | None:
        return "member-1"

    def partition_offsets(
        self, partitions: list[TopicPartition], timeout_s: float
    ) -> list[PartitionOffsets]:
        high = {tp: 0 for tp in partitions}
        for m in self.queue:
            high[m.tp] = max(high.get(m.tp, 0), m.offset + 1)
        return [
            PartitionOffsets(t, p, self.committed.get((t, p), OFFSET_INVALID), 0, high[(t, p)])
            for t, p in partitions
        ]

    def revoke(self, partitions: list[TopicPartition]) -> None:
        assert self.listener is not None
        self.listener.on_revoked(partitions)
        self.partitions = [tp for tp in self.partitions if tp not in partitions]
        self.paused -= set(partitions)

    def close(self) -> None:
        self.revoke(list(self.partitions))
        self.closed = True


class FakeStore:
    """Collections as dicts; upserts replace, rejections insert once; can be 'down'."""

    def __init__(self, log: list[tuple[str, Any]]) -> None:
        self.log = log
        self.collections: dict[str, dict[str, dict[str, Any]]] = {}
        self.down_for = 0  # the next N writes fail
        self.status: dict[str, dict[str, Any]] = {}
        self.refuse: set[str] = set()  # _ids refused for good
        self.status_attempts_while_down = 0

    def write(self, plan: WritePlan) -> dict[tuple[str, str], str]:
        if self.down_for:
            self.down_for -= 1
            self.log.append(("write-failed", plan.messages))
            raise StoreUnavailable("ServerSelectionTimeoutError: connection refused")
        refused = {}
        for collection, docs in plan.upserts.items():
            for doc_id, doc in docs.items():
                if doc_id in self.refuse:
                    refused[(collection, doc_id)] = "Document failed validation (code 121)"
                else:
                    self.collections.setdefault(collection, {})[doc_id] = doc
        for doc_id, doc in plan.rejections.items():
            self.collections.setdefault("rejected", {})[doc_id] = doc
        self.log.append(("write", plan.documents))
        return refused

    def write_status(self, doc_id: str, document: dict[str, Any]) -> None:
        if self.down_for:
            self.status_attempts_while_down += 1
            raise StoreUnavailable("down")
        self.status[doc_id] = document

    def count(self, collection: str) -> int:
        return len(self.collections.get(collection, {}))


PARTITIONS = [("devices", 0), ("devices", 1)]


def reading_message(i: int, partition: int = 0, value: Any = 20.0) -> InboundMessage:
    record = {
        "device_id": f"thermostat-{i % 4:03d}",
        "sensor": "temperature",
        "value": value,
        "unit": "C",
        "ts": f"2026-11-23T09:{i // 60 % 60:02d}:{i % 60:02d}Z",
    }
    return InboundMessage("devices", partition, i, b"k", json.dumps(record).encode(), HEADERS)


class Harness:
    def __init__(self, overlap: bool = True, **config: Any) -> None:
        self.clock = FakeClock()
        self.source = FakeSource(self.clock, PARTITIONS)
        self.store = FakeStore(self.source.log)
        defaults: dict[str, Any] = {
            "topic_map": {"devices": "devices"},
            "group_id": "g",
            "bootstrap_servers": "unused:9092",
            "mongo_uri": "mongodb://unused",
            "mongo_db": "unused",
            "instance": "test-1",
            "batch_max_messages": 100,
            "batch_max_wait_s": 0.5,
            "heartbeat_interval_s": 5.0,
            "write_overlap": overlap,
        }
        defaults.update(config)
        self.config = ConsumerConfig(**defaults)
        ctx = PipelineContext(
            topic_map=self.config.topic_map,
            sources=sources_by_topic(load_sources().values()),
        )
        self.state = ConsumerState("test-1", "g", "host", 1, NOW)
        self.service = ConsumerService(
            self.config,
            ctx,
            self.source,
            self.store,
            self.state,
            ConsumerMetrics(),
            clock=self.clock,
            now=lambda: NOW,
        )

    def run_until_drained(self, max_steps: int = 1000) -> int:
        """Run the real loop until the queue is empty, then stop it."""

        def stop_when_idle() -> None:
            if not self.source.queue and not self.service.poller.buffered:
                self.service.request_stop("test")

        for _ in range(max_steps):
            self.source.on_poll.append(stop_when_idle)
        return self.service.run()

    def ops(self) -> list[str]:
        return [op for op, _ in self.source.log]

    def commits(self) -> list[dict[TopicPartition, int]]:
        return [offsets for op, offsets in self.source.log if op == "commit"]


@pytest.fixture(params=[True, False], ids=["overlap", "sequential"])
def make(request: pytest.FixtureRequest) -> Any:
    """Harness factory: every loop test runs with the write overlap on and off."""
    return lambda **config: Harness(overlap=request.param, **config)


def test_each_batch_is_written_before_its_offsets_are_committed(make: Any) -> None:
    h = make(batch_max_messages=3)
    h.source.queue = [reading_message(i, partition=i % 2) for i in range(5)]
    assert h.run_until_drained() == 0
    assert h.ops()[:4] == ["write", "commit", "write", "commit"]
    assert h.source.log[1] == ("commit", {("devices", 0): 3, ("devices", 1): 2})
    assert h.source.committed == {("devices", 0): 5, ("devices", 1): 4}
    assert h.store.count("readings") == 5
    assert h.state.counters.consumed == 5
    assert h.source.closed


def test_polls_are_bounded_by_the_configured_size_and_wait(make: Any) -> None:
    h = make(batch_max_messages=7, batch_max_wait_s=0.25)
    h.source.queue = [reading_message(i) for i in range(3)]
    h.run_until_drained()
    # Never more than a batch, never longer than the wait; an idle loop waits the whole wait.
    assert all(n <= 7 and 0 <= t <= 0.25 for n, t in h.source.polls)
    assert (7, 0.25) in h.source.polls


def test_bad_messages_are_quarantined_and_everything_is_committed(make: Any) -> None:
    h = make()
    bad = InboundMessage("devices", 0, 3, None, b"\x00binary", HEADERS)
    h.source.queue = [reading_message(1), filtered := reading_message(2, value=999.0), bad]
    h.run_until_drained()
    assert h.store.count("readings") == 1
    assert sorted(h.store.collections["rejected"]) == sorted([filtered.content_id, bad.content_id])
    assert h.source.committed == {("devices", 0): 4}
    c = h.state.counters
    assert (c.consumed, c.stored, c.rejected, c.filtered) == (3, 1, 1, 1)


def test_mongo_down_pauses_retries_with_backoff_and_commits_only_after_the_write(make: Any) -> None:
    h = make(backoff_initial_s=0.5, backoff_max_s=1.0)
    h.source.queue = [reading_message(i) for i in range(4)]
    h.store.down_for = 3
    h.run_until_drained()
    ops = h.ops()
    assert ops[:2] == ["write-failed", "pause"]
    first_commit = ops.index("commit")
    assert ops.index("write") < first_commit
    assert ops.count("write-failed") == 3
    assert ops.index("resume") < first_commit
    assert h.source.committed == {("devices", 0): 4}
    assert h.store.count("readings") == 4
    assert h.state.counters.store_retries == 3
    assert h.state.store_ok is True
    assert "MongoDB unavailable" in (h.state.last_error.message or "")


def test_backoff_waits_grow_and_stay_capped(make: Any) -> None:
    h = make(backoff_initial_s=0.5, backoff_max_s=1.0)
    h.source.queue = [reading_message(0)]
    h.store.down_for = 4
    start = h.clock.t
    h.run_until_drained()
    # 0.5 + 1.0 + 1.0 + 1.0 of paused waiting before the fifth attempt succeeds.
    assert 3.5 <= h.clock.t - start < 5


def test_no_heartbeat_write_while_the_batch_write_is_retrying_but_lag_still_refreshes(
    make: Any,
) -> None:
    h = make(heartbeat_interval_s=0.1, backoff_initial_s=2, backoff_max_s=2)
    h.source.queue = [reading_message(0)]
    h.store.down_for = 2
    refreshes: list[int] = []
    real_offsets = h.source.partition_offsets

    def counting_offsets(partitions: list[TopicPartition], timeout_s: float) -> list:
        refreshes.append(h.store.down_for)
        return real_offsets(partitions, timeout_s)

    h.source.partition_offsets = counting_offsets  # type: ignore[method-assign]
    h.run_until_drained()
    assert h.store.status_attempts_while_down == 0
    assert len([r for r in refreshes if r > 0]) >= 3  # lag kept refreshing during the outage
    doc = h.store.status["consumer|g|test-1"]
    assert doc["last_error"].startswith("MongoDB unavailable")
    assert doc["last_error_at"] == NOW


def test_stop_with_mongo_down_gives_up_after_the_grace_period_without_committing(make: Any) -> None:
    h = make(shutdown_grace_s=3, backoff_initial_s=0.5, backoff_max_s=1)
    h.source.queue = [reading_message(0)]
    h.store.down_for = 10_000
    h.source.when.append((lambda: "write-failed" in h.ops(), lambda: h.service.request_stop("x")))
    assert h.service.run() == 1
    assert "commit" not in h.ops()
    assert h.service.abandoned
    assert h.store.count("readings") == 0


def test_sigterm_finishes_the_current_batch_and_commits_it(make: Any) -> None:
    h = make()
    h.source.queue = [reading_message(i) for i in range(3)]
    h.source.on_poll.append(lambda: h.service.request_stop("SIGTERM"))
    assert h.service.run() == 0
    assert h.ops()[:2] == ["write", "commit"]
    assert h.source.committed == {("devices", 0): 3}
    assert h.state.phase == "stopped"


def test_failed_commit_is_retried_with_the_next_batch(make: Any) -> None:
    h = make(batch_max_messages=2)
    h.source.queue = [reading_message(i) for i in range(4)]
    h.source.commit_errors = [CommitError("coordinator not available", retriable=True)]
    h.run_until_drained()
    commits = [offsets for op, offsets in h.source.log if op == "commit"]
    assert commits[0] == {("devices", 0): 2}
    assert commits[1] == {("devices", 0): 4}
    assert h.source.committed == {("devices", 0): 4}
    assert h.state.counters.commit_failures == 1


def test_revocation_commits_what_is_written_and_uncommitted(make: Any) -> None:
    h = make()
    h.source.queue = [reading_message(0), reading_message(1, partition=1)]
    h.source.commit_errors = [CommitError("timed out", retriable=True)]
    # Once the batch's commit has failed: revoke partition 1, then stop.
    h.source.when.append((lambda: "commit" in h.ops(), lambda: h.source.revoke([("devices", 1)])))
    h.source.when.append((lambda: len(h.commits()) > 1, lambda: h.service.request_stop("test")))
    h.service.run()
    commits = h.commits()
    assert commits[0] == {("devices", 0): 1, ("devices", 1): 2}  # the failed one
    assert commits[1] == {("devices", 1): 2}  # on revocation, only the revoked partition
    assert h.source.committed == {("devices", 0): 1, ("devices", 1): 2}


def test_revoked_partitions_unwritten_messages_are_dropped_not_committed(make: Any) -> None:
    h = make(backoff_initial_s=1, backoff_max_s=1)
    h.source.queue = [reading_message(0, partition=0), reading_message(1, partition=1)]
    h.store.down_for = 1
    # During the retry wait, once the write has failed:
    h.source.when.append(
        (lambda: "write-failed" in h.ops(), lambda: h.source.revoke([("devices", 1)]))
    )
    h.run_until_drained()
    assert set(h.store.collections["readings"]) == {"thermostat-000|2026-11-23T09:00:00Z"}
    assert ("devices", 1) not in h.source.committed
    assert h.source.committed == {("devices", 0): 1}


def test_documents_the_store_refuses_are_quarantined_and_committed(make: Any) -> None:
    h = make()
    h.source.queue = [reading_message(0), refused := reading_message(1)]
    h.store.refuse = {"thermostat-001|2026-11-23T09:00:01Z"}
    h.run_until_drained()
    assert h.store.count("readings") == 1
    rejection = h.store.collections["rejected"][refused.content_id]
    assert (rejection["stage"], rejection["reason"]) == (
        "store",
        "readings: Document failed validation (code 121)",
    )
    assert h.source.committed == {("devices", 0): 2}
    c = h.state.counters
    assert (c.stored, c.rejected) == (1, 1)


def test_redelivery_of_the_same_messages_changes_no_count(make: Any) -> None:
    h = make()
    msgs = [reading_message(i) for i in range(10)] + [
        InboundMessage("devices", 0, 10, None, b"nope", HEADERS)
    ]
    h.source.queue = list(msgs)
    h.run_until_drained()
    before = {c: dict(d) for c, d in h.store.collections.items()}
    again = make()
    again.store = h.store
    again.service.store = h.store
    again.source.queue = list(msgs)
    again.run_until_drained()
    assert {c: len(d) for c, d in h.store.collections.items()} == {"readings": 10, "rejected": 1}
    assert h.store.collections["rejected"] == before["rejected"]


def test_heartbeat_is_written_every_interval_with_lag(make: Any) -> None:
    h = make(heartbeat_interval_s=1.0)
    h.source.queue = [reading_message(0)]
    h.source.on_poll += [lambda: None] * 6 + [lambda: h.service.request_stop("test")]
    h.service.run()
    doc = h.store.status["consumer|g|test-1"]
    assert doc["phase"] == "stopped"
    assert doc["counters"]["stored"] == 1
    assert doc["member_id"] == "member-1"


@pytest.mark.parametrize(("since_tick", "ok"), [(1.0, True), (31.0, False)])
def test_healthz_turns_503_when_the_loop_stalls(make: Any, since_tick: float, ok: bool) -> None:
    h = make(stale_after_s=30)
    h.service.step()
    h.clock.t += since_tick
    verdict, body = h.service.health()
    assert verdict is ok
    assert body["phase"] == "starting"


def test_failed_commit_of_the_last_batch_is_retried_when_no_batch_follows(make: Any) -> None:
    h = make(heartbeat_interval_s=1.0)
    h.source.queue = [reading_message(0), reading_message(1)]
    h.source.commit_errors = [CommitError("coordinator moved", retriable=True)]
    h.source.on_poll += [lambda: None] * 8 + [lambda: h.service.request_stop("test")]
    h.service.run()
    commits = [offsets for op, offsets in h.source.log if op == "commit"]
    assert commits[:2] == [{("devices", 0): 2}, {("devices", 0): 2}]
    assert h.source.committed == {("devices", 0): 2}


class GatedStore(FakeStore):
    """A store whose writes wait at a gate until the test opens it (with a bound)."""

    def __init__(self, log: list[tuple[str, Any]]) -> None:
        super().__init__(log)
        self.started = threading.Event()
        self.gate = threading.Semaphore(0)  # one release lets one write through

    def write(self, plan: WritePlan) -> dict[tuple[str, str], str]:
        self.log.append(("write-started", plan.messages))
        self.started.set()
        assert self.gate.acquire(timeout=10), "the test never opened the gate"
        return super().write(plan)


def gated(h: Harness) -> GatedStore:
    store = GatedStore(h.source.log)
    h.store = store
    h.service.store = store
    return store


def test_the_next_batch_is_polled_while_the_previous_one_is_written() -> None:
    h = Harness(overlap=True, batch_max_messages=2)
    store = gated(h)
    h.source.queue = [reading_message(i) for i in range(2)]
    later = [reading_message(i) for i in range(2, 4)]

    def second_batch_arrives() -> None:
        # Polled while the first write waits at the gate; the gate opens only after this poll.
        h.source.queue.extend(later)
        h.source.log.append(("polled", None))
        store.gate.release(2)  # the first write, and the second when it comes

    h.source.when.append((store.started.is_set, second_batch_arrives))
    assert h.run_until_drained() == 0
    ops = [op for op in h.ops() if op in {"write-started", "polled", "write", "commit"}]
    assert ops[:6] == ["write-started", "polled", "write", "commit", "write-started", "write"]
    assert h.commits()[0] == {("devices", 0): 2}  # the first batch's offsets, after its write
    assert h.source.committed == {("devices", 0): 4}
    assert h.store.count("readings") == 4


def test_a_revocation_waits_for_the_write_in_flight_and_commits_it() -> None:
    h = Harness(overlap=True)
    store = gated(h)
    h.source.queue = [reading_message(0), reading_message(1, partition=1)]

    def revoke_mid_write() -> None:
        store.gate.release()  # the write may end now; the revocation must wait for it
        h.source.revoke([("devices", 1)])

    h.source.when.append((store.started.is_set, revoke_mid_write))
    h.run_until_drained()
    ops = h.ops()
    assert ops.index("write") < ops.index("commit")
    assert h.commits()[0] == {("devices", 1): 2}  # committed on revocation, after the write
    assert h.source.committed == {("devices", 0): 1, ("devices", 1): 2}


def test_a_failed_overlapped_write_is_retried_before_anything_newer() -> None:
    h = Harness(
        overlap=True,
        batch_max_messages=2,
        partition_buffer_messages=100,
        backoff_initial_s=0.5,
        backoff_max_s=0.5,
    )
    h.source.queue = [reading_message(i) for i in range(6)]
    h.store.down_for = 1
    ranges: list[tuple[int, int]] = []
    real_write = h.store.write

    def recording_write(plan: WritePlan) -> dict[tuple[str, str], str]:
        result = real_write(plan)  # raises while down: only written plans are recorded
        ranges.append((plan.first_offsets[("devices", 0)], plan.offsets[("devices", 0)]))
        return result

    h.store.write = recording_write  # type: ignore[method-assign]
    h.run_until_drained()
    ops = [op for op in h.ops() if op in {"write", "write-failed", "pause", "resume", "commit"}]
    assert ops[:2] == ["write-failed", "pause"]
    # Written in offset order, the failed batch first (alone or with the one polled meanwhile),
    # each range starting where the previous one ended: nothing skipped, nothing newer first.
    assert ranges[0][0] == 0
    assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))
    assert ranges[-1][1] == 6
    assert h.source.committed == {("devices", 0): 6}
    assert h.store.count("readings") == 6
