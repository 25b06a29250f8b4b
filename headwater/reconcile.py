"""Did an ingest run's window land? pulled vs produced vs stored + rejected, from MongoDB."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from pymongo.database import Database

from headwater.contracts import Collections
from headwater.sources import Source, ensure_utc, format_time

log = logging.getLogger(__name__)

# Where the consumer stores each source, and the stored field that holds its event time.
STORED_IN: dict[str, tuple[str, str]] = {
    "devices": (Collections.READINGS, "ts"),
    "machine-metrics": (Collections.READINGS, "ts"),
    "work-orders": (Collections.WORK_ORDERS, "ts"),
    "user-events": (Collections.USER_EVENTS, "received_at"),
    "matches": (Collections.MATCHES, "utcDate"),
}


class ReconcileError(RuntimeError):
    """What was produced for a window did not all arrive in MongoDB."""


@dataclass(frozen=True)
class Tally:
    """The four numbers of one window."""

    pulled: int
    produced: int
    stored: int
    rejected: int

    @property
    def landed(self) -> int:
        return self.stored + self.rejected

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "landed": self.landed}


def mismatch(tally: Tally) -> str | None:
    """Why the numbers do not add up, or None when pulled == produced == stored + rejected."""
    if tally.pulled != tally.produced:
        return f"pulled {tally.pulled} but produced {tally.produced}"
    if tally.landed != tally.produced:
        return (
            f"produced {tally.produced} but MongoDB holds {tally.stored} stored + "
            f"{tally.rejected} rejected = {tally.landed}"
        )
    return None


def count(db: Database, collection: str, query: dict[str, Any]) -> int:
    """Documents matching `query` (count_documents: exact on MongoDB and on the embedded server,
    which answers a count over an index's bounds from the index keys alone)."""
    return db[collection].count_documents(query)


def count_window(db: Database, source: Source, since: datetime, until: datetime) -> tuple[int, int]:
    """(stored, rejected) for one source's window: stored documents whose event time is in it,
    and distinct keys quarantined from messages produced for exactly this window."""
    collection, time_field = STORED_IN[source.name]
    # pymongo hands back naive UTC datetimes; query with the same.
    bounds = {
        "$gte": ensure_utc(since).replace(tzinfo=None),
        "$lt": ensure_utc(until).replace(tzinfo=None),
    }
    stored = count(db, collection, {"source": source.name, time_field: bounds})
    start, end = format_time(since, "iso8601"), format_time(until, "iso8601")
    keys: set[Any] = set()
    # Re-running a window produces the same keys at new offsets: count each key once.
    for doc in db[Collections.REJECTED].find(
        {"topic": source.topic, "headers.value": start}, {"key": 1, "headers": 1}
    ):
        headers = {h.get("name"): h.get("value") for h in doc.get("headers") or []}
        if headers.get("window_start") == start and headers.get("window_end") == end:
            keys.add(doc.get("key"))
    return stored, len(keys)


def behind(
    targets: Mapping[tuple[str, int], int], committed: Mapping[tuple[str, int], int]
) -> dict[tuple[str, int], int]:
    """Partitions whose committed offset has not reached its target: (topic, partition) -> gap."""
    return {
        tp: target - committed.get(tp, -1)
        for tp, target in targets.items()
        if target > 0 and committed.get(tp, -1) < target
    }


def wait_for_commits(
    fetch: Callable[[], tuple[dict[tuple[str, int], int], dict[tuple[str, int], int]]],
    *,
    timeout_s: float,
    poll_s: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[tuple[str, int], int]:
    """Wait (bounded) until the consumer group has committed past the topic's end offsets as
    they were when the wait began; returns what is still behind ({} = caught up).

    `fetch` answers (high watermarks, committed offsets). The consumer commits a batch only after
    MongoDB acknowledged it, so once it is past the offsets our records got, they are all stored:
    counting in MongoDB once then beats counting again and again (each count scans the window on
    servers without secondary indexes).
    """
    targets, committed = fetch()
    deadline = time.monotonic() + timeout_s
    while True:
        gaps = behind(targets, committed)
        if not gaps or time.monotonic() >= deadline:
            return gaps
        sleep(poll_s)
        committed = fetch()[1]


def reconcile(
    db: Database,
    source: Source,
    since: datetime,
    until: datetime,
    pulled: int,
    produced: int,
    *,
    timeout_s: float = 180.0,
    poll_s: float = 2.0,
    sleep: Callable[[float], None] = time.sleep,
) -> Tally:
    """Wait (bounded) until the window has landed; raise ReconcileError with the numbers if not."""
    deadline = time.monotonic() + timeout_s
    while True:
        stored, rejected = count_window(db, source, since, until)
        tally = Tally(pulled, produced, stored, rejected)
        problem = mismatch(tally)
        if problem is None:
            log.info("reconciled source=%s %s", source.name, tally.as_dict())
            return tally
        if tally.landed > produced or time.monotonic() >= deadline:
            log.error("reconcile failed source=%s %s: %s", source.name, tally.as_dict(), problem)
            raise ReconcileError(f"source {source.name} [{since} .. {until}): {problem}")
        sleep(poll_s)
