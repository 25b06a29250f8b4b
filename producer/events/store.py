"""The events database (SQLite, WAL, fsync on commit): ids and receive times assigned in order.

Why ids are made inside `BEGIN IMMEDIATE`: that lock is held by one writer at a time across every
thread and gunicorn worker, and the transaction commits before the lock is released. Taking the
largest stored id and the clock under it makes id order equal commit order, so a reader paging by
`event_id > cursor` can never miss an event that commits later with a smaller id. `received_at` is
the millisecond the id carries, so it never runs backwards either, even when the clock does.

Writes are group-committed (producer/events/groupcommit.py): the writes of a process that arrive
while one of its transactions commits queue, and the next transaction takes them all, one
savepoint each, with one fsync for the lot; each request is answered only after the transaction
holding its events committed. One leader per process holds a transaction at a time on the
process's one writer connection, and the file lock takes turns between the processes, so while
one worker commits the other's queue fills: with two workers each fsync still covers about half
of the writes in flight, without handing writes from one process to another.

Every call into SQLite (and the wait for the other processes' writers) goes through the store's
`Offload` (producer/events/offload.py): inline by default, on a native thread under the gevent
worker, so that an fsync never stalls the other connections. A connection is used by one request
(or one leader) at a time, from whichever thread the offload picks.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from producer.events.groupcommit import GroupCommit
from producer.events.ids import id_time_ms, next_event_id
from producer.events.offload import Offload, Outcome, run_inline
from producer.events.query import PageRequest
from producer.events.times import format_ms, format_utc
from producer.events.validation import NewEvent, dump_properties
from producer.events.writelock import WriteLock

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    event_id        TEXT PRIMARY KEY,
    user_id         TEXT NOT NULL,
    event_type      TEXT NOT NULL,
    occurred_at     TEXT,
    properties      TEXT NOT NULL,
    received_at     TEXT NOT NULL,
    idempotency_key TEXT
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS events_by_idempotency_key
    ON events (idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE TABLE IF NOT EXISTS idempotency_keys (
    key         TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    created_at  TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS commit_counter (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    commits INTEGER NOT NULL
);
INSERT OR IGNORE INTO commit_counter (id, commits) VALUES (1, 0);
"""
# Each write transaction counts itself in commit_counter, so fsyncs per event can be read off
# the database (GET /healthz) across workers and restarts; a rolled-back one leaves it as it was.
# Its default: at most this many events in one shared transaction (setting
# events_group_commit_max_events; 1 = one transaction per request, as before group commit).
GROUP_MAX_EVENTS = 2000
_COLUMNS = "event_id, user_id, event_type, occurred_at, properties, received_at"


class IdempotencyConflict(ValueError):
    """An Idempotency-Key already stored with a different request."""


@dataclass(frozen=True)
class StoredEvent:
    """An event as stored and served."""

    event_id: str
    user_id: str
    event_type: str
    occurred_at: str | None
    properties: dict[str, Any]
    received_at: str

    def as_json(self) -> dict[str, Any]:
        """The JSON shape of a stored event."""
        return {
            "event_id": self.event_id,
            "user_id": self.user_id,
            "event_type": self.event_type,
            "occurred_at": self.occurred_at,
            "properties": self.properties,
            "received_at": self.received_at,
        }


@dataclass(frozen=True)
class IdempotencyClaim:
    """An Idempotency-Key and the fingerprint of the request that carries it."""

    key: str
    fingerprint: str


@dataclass(frozen=True)
class Saved:
    """The events a write stored, or, for a replayed Idempotency-Key, the ones stored before."""

    events: list[StoredEvent]
    replayed: bool


def _row_to_event(row: sqlite3.Row) -> StoredEvent:
    return StoredEvent(
        event_id=row["event_id"],
        user_id=row["user_id"],
        event_type=row["event_type"],
        occurred_at=row["occurred_at"],
        properties=json.loads(row["properties"]),
        received_at=row["received_at"],
    )


@dataclass(frozen=True)
class PendingSave:
    """One request's write, queued for a shared transaction."""

    events: Sequence[NewEvent]
    now_ms: Callable[[], int]
    claim: IdempotencyClaim | None


def _save_locked(conn: sqlite3.Connection, write: PendingSave) -> Saved:
    # Within the shared transaction: ids continue from the largest one stored, this one included.
    claim = write.claim
    if claim is not None:
        row = conn.execute(
            "SELECT fingerprint FROM idempotency_keys WHERE key = ?", (claim.key,)
        ).fetchone()
        if row is not None:
            if row["fingerprint"] != claim.fingerprint:
                raise IdempotencyConflict(claim.key)
            # Stored by an earlier transaction, or earlier in this one: replied to only after
            # this one commits either way.
            return Saved(_events_of_key(conn, claim.key), replayed=True)
    (last_id,) = conn.execute("SELECT MAX(event_id) FROM events").fetchone()
    ms = write.now_ms()
    stored = []
    for event in write.events:
        last_id = next_event_id(ms, last_id)
        stored.append(
            StoredEvent(
                event_id=last_id,
                user_id=event.user_id,
                event_type=event.event_type,
                occurred_at=format_utc(event.occurred_at) if event.occurred_at else None,
                properties=event.properties,
                received_at=format_ms(id_time_ms(last_id)),
            )
        )
    key = claim.key if claim is not None else None
    conn.executemany(
        f"INSERT INTO events ({_COLUMNS}, idempotency_key) VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            (
                e.event_id,
                e.user_id,
                e.event_type,
                e.occurred_at,
                dump_properties(e.properties),
                e.received_at,
                key,
            )
            for e in stored
        ],
    )
    if claim is not None:
        conn.execute(
            "INSERT INTO idempotency_keys (key, fingerprint, created_at) VALUES (?, ?, ?)",
            (claim.key, claim.fingerprint, format_ms(ms)),
        )
    return Saved(stored, replayed=False)


def _save_in_savepoint(conn: sqlite3.Connection, write: PendingSave) -> Outcome[Saved]:
    # A write refused on its own (an Idempotency-Key conflict) is undone alone and fails alone;
    # an error that ended the whole transaction is raised: it fails every write of the batch.
    conn.execute("SAVEPOINT request")
    try:
        saved = _save_locked(conn, write)
    except Exception as exc:  # the outcome of this request, raised in its caller
        if not conn.in_transaction:
            raise
        conn.execute("ROLLBACK TO request")
        conn.execute("RELEASE request")
        return Outcome(error=exc)
    conn.execute("RELEASE request")
    return Outcome(value=saved)


def _events_of_key(conn: sqlite3.Connection, key: str) -> list[StoredEvent]:
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM events WHERE idempotency_key = ? ORDER BY event_id", (key,)
    )
    return [_row_to_event(row) for row in rows]


class EventsDb:
    """One connection to the events database (one per request); writes go to the store's group."""

    def __init__(self, conn: sqlite3.Connection, store: EventStore) -> None:
        self._conn = conn
        self._store = store
        self._write_lock = store.write_lock
        self._offload = store.offload

    def close(self) -> None:
        """Close the connection."""
        # The last connection of a process to close checkpoints the WAL: an fsync.
        self._offload(self._conn.close)

    def save(
        self,
        events: Sequence[NewEvent],
        now_ms: Callable[[], int],
        claim: IdempotencyClaim | None = None,
    ) -> Saved:
        """Store `events` in a committed transaction, or replay what `claim`'s key stored."""
        return self._store.save(events, now_ms, claim)

    def wait_for_writers(self) -> None:
        """Return once the writes in flight have committed (or rolled back)."""
        with self._write_lock.turn():
            self._offload(self._wait_for_other_processes)

    def _wait_for_other_processes(self) -> None:
        with self._write_lock.across_processes():
            pass

    def page(self, request: PageRequest) -> tuple[list[StoredEvent], bool]:
        """The events of one page in id order, and whether more follow in the window."""
        return self._offload(lambda: self._page(request))

    def _page(self, request: PageRequest) -> tuple[list[StoredEvent], bool]:
        if request.empty:
            return [], False
        where, params = [], []
        for column_test, value in (
            ("event_id >= ?", request.lower),
            ("event_id < ?", request.upper),
            ("event_id > ?", request.after),
        ):
            if value is not None:
                where.append(column_test)
                params.append(value)
        sql = f"SELECT {_COLUMNS} FROM events"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY event_id LIMIT ?"
        rows = self._conn.execute(sql, [*params, request.limit + 1]).fetchall()
        events = [_row_to_event(row) for row in rows[: request.limit]]
        return events, len(rows) > request.limit

    def get(self, event_id: str) -> StoredEvent | None:
        """One event by id."""
        return self._offload(lambda: self._get(event_id))

    def _get(self, event_id: str) -> StoredEvent | None:
        row = self._conn.execute(
            f"SELECT {_COLUMNS} FROM events WHERE event_id = ?", (event_id,)
        ).fetchone()
        return _row_to_event(row) if row is not None else None

    def count(self) -> int:
        """How many events are stored."""
        return self._offload(self._count)

    def _count(self) -> int:
        (count,) = self._conn.execute("SELECT COUNT(*) FROM events").fetchone()
        return int(count)

    def commits(self) -> int:
        """How many write transactions have committed, by every process, since the file was made."""
        return self._offload(self._commits)

    def _commits(self) -> int:
        (commits,) = self._conn.execute("SELECT commits FROM commit_counter").fetchone()
        return int(commits)


class EventStore:
    """The events database at one path: opens connections, group-commits this process's writes."""

    def __init__(
        self,
        path: Path,
        timeout_s: float = 10.0,
        offload: Offload = run_inline,
        max_group_events: int = GROUP_MAX_EVENTS,
        connection_factory: type[sqlite3.Connection] = sqlite3.Connection,
    ) -> None:
        self.path = path
        self.timeout_s = timeout_s
        self.offload = offload
        self.connection_factory = connection_factory
        self.write_lock = WriteLock(path.with_name(path.name + ".lock"), timeout_s)
        self._schema_lock = threading.Lock()
        self._schema_ready = False
        self._writer: sqlite3.Connection | None = None
        self._writer_pid = 0
        self.group: GroupCommit[PendingSave, Saved] = GroupCommit(
            self._commit_batch,
            size=lambda write: len(write.events),
            max_size=max_group_events,
            timeout_s=timeout_s,
        )

    def open(self) -> EventsDb:
        """A new connection, set up for durability; creates the schema on first use."""
        conn = self.offload(self._connect)
        try:
            if not self._schema_ready:
                with self._schema_lock, self.write_lock.turn():
                    if not self._schema_ready:
                        self.offload(lambda: self._create_schema(conn))
                        self._schema_ready = True
        except BaseException:
            self.offload(conn.close)
            raise
        return EventsDb(conn, self)

    def save(
        self,
        events: Sequence[NewEvent],
        now_ms: Callable[[], int],
        claim: IdempotencyClaim | None = None,
    ) -> Saved:
        """Store `events` in a committed transaction shared with the writes queued with it, or
        replay what `claim`'s key stored; returns once that transaction committed."""
        return self.group.submit(PendingSave(events, now_ms, claim))

    def _commit_batch(self, writes: list[PendingSave]) -> list[Outcome[Saved]]:
        # The leader's turn: readers waiting for the writers in flight wait for this batch too.
        with self.write_lock.turn():
            return self.offload(lambda: self._commit_exclusive(writes))

    def _commit_exclusive(self, writes: list[PendingSave]) -> list[Outcome[Saved]]:
        conn = self._writer_connection()
        with self.write_lock.across_processes():
            conn.execute("BEGIN IMMEDIATE")
            try:
                outcomes = [_save_in_savepoint(conn, write) for write in writes]
                conn.execute("UPDATE commit_counter SET commits = commits + 1")
                conn.commit()
            except BaseException:
                self._roll_back_writer(conn)
                raise
        log.debug("events committed writes=%d", len(writes))
        return outcomes

    def _roll_back_writer(self, conn: sqlite3.Connection) -> None:
        # A writer left inside a transaction would refuse every later BEGIN: if it cannot be
        # rolled back, it is dropped and the next batch opens a fresh one.
        try:
            if conn.in_transaction:
                conn.rollback()
        except sqlite3.Error as exc:
            log.warning("events writer connection dropped path=%s problem=%r", self.path, exc)
            self._writer = None
            try:
                conn.close()
            except sqlite3.Error:
                pass

    def _writer_connection(self) -> sqlite3.Connection:
        # One per process (a fork must not share it), kept open: used by one leader at a time.
        if self._writer is None or self._writer_pid != os.getpid():
            conn = self._connect()
            try:
                self._create_schema(conn)
            except BaseException:
                conn.close()
                raise
            self._writer, self._writer_pid = conn, os.getpid()
            self._schema_ready = True
        return self._writer

    def _connect(self) -> sqlite3.Connection:
        # check_same_thread off: the offload may run each call of a request on another thread.
        conn = sqlite3.connect(
            self.path,
            timeout=self.timeout_s,
            isolation_level=None,
            check_same_thread=False,
            factory=self.connection_factory,
        )
        try:
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {int(self.timeout_s * 1000)}")
            # FULL: a commit is fsynced before it returns, so a 201 survives power loss too.
            conn.execute("PRAGMA synchronous = FULL")
        except BaseException:
            conn.close()
            raise
        return conn

    def _create_schema(self, conn: sqlite3.Connection) -> None:
        with self.write_lock.across_processes():
            (mode,) = conn.execute("PRAGMA journal_mode = WAL").fetchone()
            if mode != "wal":
                raise sqlite3.OperationalError(f"could not switch {self.path} to WAL: {mode}")
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
            except BaseException:
                conn.rollback()
                raise
            conn.commit()
            log.info("events store ready path=%s", self.path)
