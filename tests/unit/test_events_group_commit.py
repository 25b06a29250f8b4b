"""Group commit of the events store: concurrent writes share one transaction, each answered only
after it committed; a failed commit fails all of its writes; idempotency and id order unchanged.

The pure coordinator (producer/events/groupcommit.py) is tested with a fake commit; the store
with real SQLite files, writers on threads, and the other process's writer played by a flock on
the store's lock file so that writes queue deterministically.
"""

from __future__ import annotations

import fcntl
import itertools
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from producer.events.groupcommit import GroupCommit, copy_error, take_batch
from producer.events.offload import Outcome
from producer.events.store import (
    EventStore,
    IdempotencyClaim,
    IdempotencyConflict,
    Saved,
)
from producer.events.validation import NewEvent
from producer.events.writelock import LockTimeout

NOW_MS = 1_800_000_000_000
WAIT_S = 30.0


def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Poll `condition` until it holds (a bounded wait for another thread's progress)."""
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.001)


# ---- which writes a commit takes (pure) ---------------------------------------------------------


def test_a_batch_takes_queued_writes_in_order_up_to_the_limit() -> None:
    assert take_batch([1, 1, 1], 2) == 2
    assert take_batch([1, 3, 1], 4) == 2  # in order: a small one behind a large one waits too
    assert take_batch([5, 1], 10) == 2
    assert take_batch([], 10) == 0


def test_a_write_larger_than_the_limit_is_committed_alone() -> None:
    assert take_batch([600, 1], 500) == 1
    assert take_batch([1, 600], 500) == 1


def test_each_caller_of_a_failed_commit_raises_its_own_copy_of_the_error() -> None:
    error = sqlite3.OperationalError("disk I/O error")
    duplicate = copy_error(error)
    assert duplicate is not error
    assert (type(duplicate), duplicate.args) == (sqlite3.OperationalError, error.args)


# ---- the coordinator, with a fake commit --------------------------------------------------------


class FakeCommit:
    """Records each batch; the first commit holds until released; may fail whole batches."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self.fail_with: Exception | None = None
        self.refuse: set[str] = set()

    def __call__(self, writes: list[str]) -> list[Outcome[str]]:
        self.batches.append(list(writes))
        self.entered.set()
        if not self.release.wait(WAIT_S):
            raise AssertionError("the test never released the first commit")
        if self.fail_with is not None:
            raise self.fail_with
        return [
            Outcome(error=ValueError(w)) if w in self.refuse else Outcome(value=f"done:{w}")
            for w in writes
        ]


def submit_in_order(
    group: GroupCommit[str, str], pool: ThreadPoolExecutor, writes: list[str]
) -> list[Future[str]]:
    """Submit each write from a thread of its own, each queued before the next is submitted."""
    futures = []
    for i, write in enumerate(writes):
        futures.append(pool.submit(group.submit, write))
        wait_until(lambda n=i + 1: group.pending() == n, f"{write} pending")
    return futures


def test_writes_that_arrive_during_a_commit_share_the_next_one() -> None:
    commit = FakeCommit()
    group: GroupCommit[str, str] = GroupCommit(commit, size=lambda w: 1, max_size=100, timeout_s=30)
    writes = [f"w{i}" for i in range(10)]
    with ThreadPoolExecutor(max_workers=len(writes)) as pool:
        futures = submit_in_order(group, pool, writes)
        assert commit.entered.is_set() and not any(f.done() for f in futures)
        commit.release.set()
        results = [f.result(timeout=WAIT_S) for f in futures]
    # The first found nobody committing and went alone; the nine that queued meanwhile share one.
    assert commit.batches == [["w0"], writes[1:]]
    assert results == [f"done:{w}" for w in writes]
    assert group.pending() == 0


def test_a_commit_takes_at_most_max_size_of_the_queued_writes() -> None:
    commit = FakeCommit()
    group: GroupCommit[str, str] = GroupCommit(commit, size=lambda w: 2, max_size=6, timeout_s=30)
    writes = [f"w{i}" for i in range(8)]
    with ThreadPoolExecutor(max_workers=len(writes)) as pool:
        futures = submit_in_order(group, pool, writes)
        commit.release.set()
        assert [f.result(timeout=WAIT_S) for f in futures] == [f"done:{w}" for w in writes]
    assert commit.batches == [["w0"], ["w1", "w2", "w3"], ["w4", "w5", "w6"], ["w7"]]


def test_a_failed_commit_fails_every_write_in_it_and_the_next_commit_goes_on() -> None:
    commit = FakeCommit()
    commit.fail_with = sqlite3.OperationalError("disk I/O error")
    group: GroupCommit[str, str] = GroupCommit(commit, size=lambda w: 1, max_size=100, timeout_s=30)
    with ThreadPoolExecutor(max_workers=5) as pool:
        futures = submit_in_order(group, pool, ["w0", "w1", "w2", "w3", "w4"])
        commit.release.set()
        errors = [f.exception(timeout=WAIT_S) for f in futures]
    assert commit.batches == [["w0"], ["w1", "w2", "w3", "w4"]]
    assert all(isinstance(e, sqlite3.OperationalError) for e in errors), errors
    assert {str(e) for e in errors} == {"disk I/O error"}
    commit.fail_with = None
    assert group.submit("w5") == "done:w5"


def test_a_write_refused_on_its_own_fails_alone() -> None:
    commit = FakeCommit()
    commit.refuse = {"w2"}
    group: GroupCommit[str, str] = GroupCommit(commit, size=lambda w: 1, max_size=100, timeout_s=30)
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = submit_in_order(group, pool, ["w0", "w1", "w2", "w3"])
        commit.release.set()
        outcomes = [f.exception(timeout=WAIT_S) or f.result() for f in futures]
    assert commit.batches == [["w0"], ["w1", "w2", "w3"]]
    assert outcomes[:2] == ["done:w0", "done:w1"]
    assert isinstance(outcomes[2], ValueError)
    assert outcomes[3] == "done:w3"


def test_a_write_still_queued_after_the_timeout_gives_up_and_is_never_committed() -> None:
    commit = FakeCommit()
    group: GroupCommit[str, str] = GroupCommit(
        commit, size=lambda w: 1, max_size=100, timeout_s=0.05
    )
    with ThreadPoolExecutor(max_workers=2) as pool:
        leader = pool.submit(group.submit, "w0")
        wait_until(commit.entered.is_set, "the first commit started")
        with pytest.raises(LockTimeout):
            group.submit("w1")  # queued behind a commit that does not end
        commit.release.set()
        assert leader.result(timeout=WAIT_S) == "done:w0"
    assert commit.batches == [["w0"]]
    assert group.pending() == 0
    assert group.submit("w2") == "done:w2"


# ---- the store: real SQLite ------------------------------------------------------------------


def event(user_id: str) -> NewEvent:
    return NewEvent(user_id, "page.view", None, {})


def clock_ms() -> Callable[[], int]:
    ticks = itertools.count(NOW_MS)
    return lambda: next(ticks)


@contextmanager
def other_process_writing(store: EventStore) -> Iterator[None]:
    """Hold the store's file lock as the other worker process does mid-commit."""
    with open(store.write_lock.path, "a+b") as other:
        fcntl.flock(other, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(other, fcntl.LOCK_UN)


def commits_of(store: EventStore) -> int:
    db = store.open()
    try:
        return db.commits()
    finally:
        db.close()


def stored_ids(store: EventStore) -> list[str]:
    with sqlite3.connect(store.path) as conn:
        return [row[0] for row in conn.execute("SELECT event_id FROM events ORDER BY event_id")]


def queue_saves(
    store: EventStore, pool: ThreadPoolExecutor, writes: list[tuple[list[NewEvent], Any]]
) -> list[Future[Saved]]:
    """Each save from a thread of its own, in order, each queued before the next is submitted."""
    futures = []
    now_ms = clock_ms()
    for i, (events, claim) in enumerate(writes):
        futures.append(pool.submit(store.save, events, now_ms, claim))
        wait_until(lambda n=i + 1: store.group.pending() == n, f"save {i} pending")
    return futures


@pytest.fixture
def store(tmp_path: Path) -> EventStore:
    store = EventStore(tmp_path / "events.db")
    store.open().close()  # schema made
    return store


def test_concurrent_saves_share_commits_store_each_event_once_in_commit_order(
    store: EventStore,
) -> None:
    before = commits_of(store)
    writes: list[tuple[list[NewEvent], Any]] = [([event(f"u{i}")], None) for i in range(20)]
    writes.append(([event("b0"), event("b1")], None))  # a batch request shares it too
    with ThreadPoolExecutor(max_workers=len(writes)) as pool:
        with other_process_writing(store):
            futures = queue_saves(store, pool, writes)
        saved = [f.result(timeout=WAIT_S) for f in futures]
    # 21 requests, 2 transactions: the first alone, the 20 queued behind it together.
    assert commits_of(store) - before == 2
    ids = [e.event_id for s in saved for e in s.events]
    assert [e.user_id for s in saved for e in s.events] == [f"u{i}" for i in range(20)] + [
        "b0",
        "b1",
    ]
    # In commit order (and within one commit in queue order), ids strictly increase...
    assert all(a < b for a, b in itertools.pairwise(ids))
    # ...and every event answered is stored, exactly once, and readable.
    assert stored_ids(store) == ids
    db = store.open()
    try:
        assert [db.get(i) for i in ids] == [e for s in saved for e in s.events]
    finally:
        db.close()


class FailingCommit(sqlite3.Connection):
    """A connection whose COMMIT fails while `failing` is set, as a full or broken disk does."""

    failing = threading.Event()

    def commit(self) -> None:
        if FailingCommit.failing.is_set():
            raise sqlite3.OperationalError("disk I/O error")
        super().commit()


def test_a_failed_shared_commit_fails_every_write_in_it_and_stores_none(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "events.db", connection_factory=FailingCommit)
    store.open().close()
    before = commits_of(store)
    FailingCommit.failing.set()
    try:
        writes: list[tuple[list[NewEvent], Any]] = [([event(f"u{i}")], None) for i in range(6)]
        with ThreadPoolExecutor(max_workers=len(writes)) as pool:
            with other_process_writing(store):
                futures = queue_saves(store, pool, writes)
            errors = [f.exception(timeout=WAIT_S) for f in futures]
    finally:
        FailingCommit.failing.clear()
    assert all(isinstance(e, sqlite3.OperationalError) for e in errors), errors
    assert stored_ids(store) == []
    assert commits_of(store) == before
    # The writer connection was rolled back, not left in a broken transaction: the next commits.
    saved = store.save([event("after")], clock_ms())
    assert stored_ids(store) == [saved.events[0].event_id]
    assert commits_of(store) == before + 1


def test_a_transaction_ended_by_one_write_fails_every_write_in_it(store: EventStore) -> None:
    with sqlite3.connect(store.path) as conn:
        conn.execute(
            "CREATE TRIGGER poison BEFORE INSERT ON events WHEN NEW.user_id = 'poison' "
            "BEGIN SELECT RAISE(ROLLBACK, 'poisoned'); END"
        )
    writes: list[tuple[list[NewEvent], Any]] = [
        ([event("first")], None),
        ([event("u1")], None),
        ([event("poison")], None),
        ([event("u3")], None),
    ]
    with ThreadPoolExecutor(max_workers=len(writes)) as pool:
        with other_process_writing(store):
            futures = queue_saves(store, pool, writes)
        first = futures[0].result(timeout=WAIT_S)
        errors = [f.exception(timeout=WAIT_S) for f in futures[1:]]
    # u1 was written before the poison ended the transaction: it fails with it, as does u3.
    assert all(isinstance(e, sqlite3.IntegrityError) for e in errors), errors
    assert stored_ids(store) == [first.events[0].event_id]


def test_idempotent_copies_in_one_shared_transaction_store_once_and_replay_the_first_answer(
    store: EventStore,
) -> None:
    claim = IdempotencyClaim("checkout-42", "fingerprint-a")
    other_body = IdempotencyClaim("checkout-42", "fingerprint-b")
    writes: list[tuple[list[NewEvent], Any]] = [
        ([event("first")], None),
        ([event("u-42")], claim),
        ([event("u-42")], claim),
        ([event("u-other")], other_body),
        ([event("u-42")], claim),
        ([event("u-last")], None),
    ]
    before = commits_of(store)
    with ThreadPoolExecutor(max_workers=len(writes)) as pool:
        with other_process_writing(store):
            futures = queue_saves(store, pool, writes)
        outcomes = [f.exception(timeout=WAIT_S) or f.result() for f in futures]
    assert commits_of(store) - before == 2
    original, replay_1, conflict, replay_2 = outcomes[1:5]
    assert isinstance(original, Saved) and not original.replayed
    assert isinstance(replay_1, Saved) and isinstance(replay_2, Saved)
    assert replay_1 == replay_2 == Saved(original.events, replayed=True)
    assert isinstance(conflict, IdempotencyConflict)  # refused alone: the others committed
    last = outcomes[5]
    assert isinstance(last, Saved)
    first = outcomes[0]
    assert isinstance(first, Saved)
    expected = [first.events[0].event_id, original.events[0].event_id, last.events[0].event_id]
    assert stored_ids(store) == expected
    # ...and a retry after the commit still gets the first answer.
    assert store.save([event("u-42")], clock_ms(), claim) == replay_1


def test_one_transaction_per_request_when_the_group_holds_one_event(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "events.db", max_group_events=1)
    store.open().close()
    before = commits_of(store)
    writes: list[tuple[list[NewEvent], Any]] = [([event(f"u{i}")], None) for i in range(4)]
    with ThreadPoolExecutor(max_workers=len(writes)) as pool:
        with other_process_writing(store):
            futures = queue_saves(store, pool, writes)
        ids = [f.result(timeout=WAIT_S).events[0].event_id for f in futures]
    assert commits_of(store) - before == 4
    assert stored_ids(store) == ids
