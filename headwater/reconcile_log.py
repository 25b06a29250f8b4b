"""What each reconcile concluded, kept in `reconcile_runs`: one document per source and window.

Reconcile's answer used to live only in the task's XCom; the Headwater page in the Airflow UI (and
anyone with mongosh) reads it from here. `_id` is source|since|until, so a re-run, retry or backfill
of a window replaces its document: the collection says how each window stands now, not how often
it was tried. Failed reconciles are kept too, with the numbers they saw and the error.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Literal

import pymongo
from pymongo.database import Database
from pymongo.errors import PyMongoError

from headwater.contracts import Collections
from headwater.reconcile import ReconcileError, Tally
from headwater.sources import Source, ensure_utc

log = logging.getLogger(__name__)

Outcome = Literal["ok", "failed"]
# Recording is a side note to the task's real work: it never holds a task for long.
RECORD_TIMEOUT_S = 10.0
# Error text kept per document (a reconcile error names its numbers in well under this).
MAX_ERROR_CHARS = 2000


def reconcile_id(source: str, since: str, until: str) -> str:
    """_id of a window's document: re-running the window overwrites it."""
    return f"{source}|{since}|{until}"


def reconcile_document(
    source: Source,
    ingested: Mapping[str, Any],
    tally: Tally | None,
    *,
    outcome: Outcome,
    error: str | None,
    now: datetime,
) -> dict[str, Any]:
    """The reconcile_runs document of one reconcile (pure).

    `ingested` is the pull task's XCom (since, until as ISO-8601, run_id, pulled, produced); `tally`
    is None when reconcile failed before it could count (Kafka or MongoDB unreachable), and then
    only pulled and produced are known.
    """
    since, until = str(ingested["since"]), str(ingested["until"])
    counts: dict[str, int | None] = {
        "pulled": int(ingested["pulled"]),
        "produced": int(ingested["produced"]),
        "stored": None,
        "rejected": None,
    }
    if tally is not None:
        counts = {
            "pulled": tally.pulled,
            "produced": tally.produced,
            "stored": tally.stored,
            "rejected": tally.rejected,
        }
    return {
        "_id": reconcile_id(source.name, since, until),
        "source": source.name,
        "topic": source.topic,
        "collection": source.collection,
        "since": ensure_utc(datetime.fromisoformat(since)),
        "until": ensure_utc(datetime.fromisoformat(until)),
        "run_id": str(ingested["run_id"]),
        "outcome": outcome,
        **counts,
        "error": None if error is None else error[:MAX_ERROR_CHARS],
        "reconciled_at": now,
    }


def record_reconcile(db: Database, document: Mapping[str, Any]) -> bool:
    """Replace the window's document; False (logged) when MongoDB did not take it.

    Never raises for MongoDB: a reconcile that failed because MongoDB is down must fail with its
    own error, not with this one.
    """
    try:
        with pymongo.timeout(RECORD_TIMEOUT_S):
            db[Collections.RECONCILE_RUNS].replace_one(
                {"_id": document["_id"]}, dict(document), upsert=True
            )
    except PyMongoError as exc:
        log.warning(
            "reconcile not recorded id=%s outcome=%s: %s: %s",
            document["_id"],
            document["outcome"],
            type(exc).__name__,
            exc,
        )
        return False
    log.info(
        "reconcile recorded id=%s run_id=%s outcome=%s",
        document["_id"],
        document["run_id"],
        document["outcome"],
    )
    return True


def reconcile_and_record(
    source: Source,
    ingested: Mapping[str, Any],
    run: Callable[[], Tally],
    record: Callable[[dict[str, Any]], object],
    now: Callable[[], datetime],
) -> Tally:
    """`run` the reconcile and `record` its document, passed or failed; a failure is re-raised
    after it is recorded (with the numbers a ReconcileError carries)."""
    try:
        tally = run()
    except Exception as exc:
        seen = exc.tally if isinstance(exc, ReconcileError) else None
        error = f"{type(exc).__name__}: {exc}"
        record(reconcile_document(source, ingested, seen, outcome="failed", error=error, now=now()))
        raise
    record(reconcile_document(source, ingested, tally, outcome="ok", error=None, now=now()))
    return tally
