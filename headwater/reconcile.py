"""Did an ingest run land? pulled vs produced vs stored + rejected, counted by the run's own keys.

A run's records carry its run_id (a message header the consumer keeps in `ingest.run_id`, and in
a reject's `run_id`), so reconcile counts exactly what this run produced: not whatever else lies in
its time window (another client's records, another source sharing the collection). Both counts are
served by indexes ((source, ingest.run_id) on the collection, (topic, run_id) on `rejected`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from pymongo.database import Database

from headwater.contracts import Collections
from headwater.sources import Source

log = logging.getLogger(__name__)


class ReconcileError(RuntimeError):
    """What was produced for a window did not all arrive in MongoDB; `tally` holds the numbers."""

    def __init__(self, message: str, tally: Tally | None = None) -> None:
        super().__init__(message)
        self.tally = tally


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


def count_run(db: Database, source: Source, run_id: str) -> tuple[int, int]:
    """(stored, rejected) of one run: documents of `source` whose latest write came from the run,
    and distinct keys of the run's messages that were quarantined."""
    stored = count(db, source.collection, {"source": source.name, "ingest.run_id": run_id})
    # A retried task produces the same keys again at new offsets: count each key once.
    keys = db[Collections.REJECTED].distinct("key", {"topic": source.topic, "run_id": run_id})
    return stored, len(keys)


def behind(
    targets: Mapping[tuple[str, int], int], committed: Mapping[tuple[str, int], int]
) -> dict[tuple[str, int], int]:
    """Partitions whose committed offset has not reached its target: (topic, partition) -> gap."""
    # Nothing committed yet (Kafka's -1001 "no offset" sentinel, or absent) counts from 0.
    return {
        tp: target - max(committed.get(tp, 0), 0)
        for tp, target in targets.items()
        if target > 0 and max(committed.get(tp, 0), 0) < target
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
    run_id: str,
    pulled: int,
    produced: int,
    *,
    timeout_s: float = 180.0,
    poll_s: float = 2.0,
    sleep: Callable[[float], None] = time.sleep,
) -> Tally:
    """Wait (bounded) until the run's records have landed; ReconcileError with the numbers
    if not."""
    deadline = time.monotonic() + timeout_s
    while True:
        stored, rejected = count_run(db, source, run_id)
        tally = Tally(pulled, produced, stored, rejected)
        problem = mismatch(tally)
        if problem is None:
            log.info("reconciled source=%s run_id=%s %s", source.name, run_id, tally.as_dict())
            return tally
        if tally.landed > produced or time.monotonic() >= deadline:
            log.error(
                "reconcile failed source=%s run_id=%s %s: %s",
                source.name,
                run_id,
                tally.as_dict(),
                problem,
            )
            raise ReconcileError(f"source {source.name} run {run_id}: {problem}", tally)
        sleep(poll_s)


def reconciled_extra(
    source: Source, ingested: Mapping[str, Any], tally: Mapping[str, Any]
) -> dict[str, Any]:
    """The extra of the asset event a reconciled window emits: which window of which source
    landed, by which run, with its counts (what rollup_readings recomputes from)."""
    return {
        "source": source.name,
        "topic": source.topic,
        "collection": source.collection,
        "since": ingested["since"],
        "until": ingested["until"],
        "run_id": ingested["run_id"],
        **{k: tally[k] for k in ("pulled", "produced", "stored", "rejected") if k in tally},
    }
