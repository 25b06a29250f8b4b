"""Replay of rejects, the service: stream the selected rejects, judge them by today's pipeline
(consumer/replay.py), write the passing ones and only then delete their rejects.

Chunks of CHUNK_SIZE rejects: each chunk is one lookup of what is stored under its keys, one
unordered bulk write (the consumer's MongoStore: insert, then replace what exists) and one delete.
A run interrupted anywhere is repeated safely: a reject is deleted only after its document was
acknowledged, and a document already stored from the same message is not written again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from consumer.messages import InboundMessage
from consumer.pipeline import PipelineContext, Stored, WritePlan
from consumer.replay import (
    Selection,
    Tally,
    Verdict,
    against_stored,
    context_for,
    dry_run_from_params,
    judge,
    replay_context,
    selection_from_params,
    selection_query,
)
from headwater.contracts import Collections

log = logging.getLogger(__name__)

CHUNK_SIZE = 500
PROGRESS_EVERY = 5_000


class ReplayStore(Protocol):
    """What a replay reads and writes (MongoDB in production, a fake in unit tests)."""

    def rejects(self, query: dict[str, Any], batch_size: int) -> Iterator[dict[str, Any]]:
        """The selected rejects, streamed."""
        ...

    def stored_ingest(self, collection: str, ids: list[str]) -> dict[str, dict[str, Any] | None]:
        """_id -> the `ingest` meta of the documents stored under these ids (absent: none)."""
        ...

    def write(self, plan: WritePlan) -> dict[tuple[str, str], str]:
        """Write the plan's documents; the ones refused for good, with the reason."""
        ...

    def remove_rejects(self, ids: list[str]) -> int:
        """Delete these rejects; how many were deleted."""
        ...


def chunks(items: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    """Consecutive lists of at most `size` items."""
    chunk: list[dict[str, Any]] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def apply_chunk(
    store: ReplayStore, verdicts: list[Verdict], tally: Tally, run_id: str | None = None
) -> None:
    """Write the documents of a chunk's passing rejects, then delete the rejects whose record is
    now stored (written and acknowledged, or stored already by the same or a later message)."""
    by_collection: dict[str, list[tuple[InboundMessage, Stored]]] = {}
    for verdict in verdicts:
        if verdict.message is not None and verdict.stored is not None:
            by_collection.setdefault(verdict.stored.collection, []).append(
                (verdict.message, verdict.stored)
            )
    if not by_collection:
        return
    plan = WritePlan()
    # reject _id -> (collection, document _id, what happened): the rejects to delete.
    done: dict[str, tuple[str, str, str]] = {}
    for collection, group in sorted(by_collection.items()):
        stored = store.stored_ingest(collection, sorted({s.doc_id for _, s in group}))
        for message, outcome in group:
            decision = against_stored(message, stored.get(outcome.doc_id))
            if decision == "write":
                plan.add(message, outcome)
                continue
            done[message.content_id] = (collection, outcome.doc_id, decision)
            if decision == "already_stored":
                tally.already_stored += 1
            else:
                tally.superseded += 1
    refused = store.write(plan) if plan.upserts else {}
    for key, written in sorted(plan.latest.items()):
        origins = plan.origins[key]
        if key in refused:
            # Refused for good (e.g. a stale $jsonSchema validator on real MongoDB): they stay.
            tally.store_refused[f"{key[0]}: {refused[key]}"] += len(origins)
            log.warning(
                "replay store refused run_id=%s collection=%s _id=%s rejects=%s reason=%s",
                run_id,
                key[0],
                key[1],
                ",".join(m.content_id for m in origins),
                refused[key],
            )
            continue
        tally.stored[key[0]] += 1
        for message in origins:
            # Two rejects of one key in a chunk: the later message's document was written.
            superseded = message is not written
            tally.superseded += superseded
            done[message.content_id] = (*key, "superseded" if superseded else "stored")
    if not done:
        return
    tally.removed += store.remove_rejects(sorted(done))
    for reject_id, (collection, doc_id, what) in sorted(done.items()):
        # The reject is gone from MongoDB: this line is where it went.
        log.info(
            "replayed reject=%s run_id=%s collection=%s _id=%s outcome=%s",
            reject_id,
            run_id,
            collection,
            doc_id,
            what,
        )


def replay_rejects(
    store: ReplayStore,
    ctx: PipelineContext,
    selection: Selection,
    *,
    dry_run: bool,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    chunk_size: int = CHUNK_SIZE,
    progress_every: int = PROGRESS_EVERY,
    run_id: str | None = None,
) -> Tally:
    """Judge every selected reject by today's pipeline; unless dry_run, store those that pass and
    delete their rejects (only after the write was acknowledged). Idempotent."""
    tally = Tally()
    next_progress = progress_every
    started = time.monotonic()
    for chunk in chunks(store.rejects(selection_query(selection), chunk_size), chunk_size):
        chunk_ctx = context_for(ctx, chunk)
        moment = now()
        verdicts = []
        for doc in chunk:
            verdict = judge(doc, chunk_ctx, moment)
            tally.add(verdict, str(doc.get("topic")))
            verdicts.append(verdict)
        if not dry_run:
            apply_chunk(store, verdicts, tally, run_id)
        if tally.selected >= next_progress:
            next_progress += progress_every
            log.info(
                "replay progress run_id=%s dry_run=%s selected=%d outcomes=%s stored=%d "
                "removed=%d seconds=%.1f",
                run_id,
                dry_run,
                tally.selected,
                dict(tally.outcomes),
                sum(tally.stored.values()),
                tally.removed,
                time.monotonic() - started,
            )
    return tally


# ---- MongoDB ------------------------------------------------------------------------------------


class MongoReplayStore:
    """ReplayStore on a MongoDB database; writes go through the consumer's MongoStore."""

    def __init__(self, db: Any) -> None:
        from consumer.mongo_store import MongoStore  # pymongo-heavy: imported when used

        self._db = db
        self._writer = MongoStore(db)

    def rejects(self, query: dict[str, Any], batch_size: int) -> Iterator[dict[str, Any]]:
        # One streaming cursor, unsorted: a sort without a limit is a blocking stage on the
        # embedded server (charged to its memory budget). Deleting documents the cursor has
        # already returned is safe on both servers.
        cursor = self._db[Collections.REJECTED].find(query, batch_size=batch_size)
        try:
            yield from cursor
        finally:
            cursor.close()

    def stored_ingest(self, collection: str, ids: list[str]) -> dict[str, dict[str, Any] | None]:
        found = self._db[collection].find({"_id": {"$in": ids}}, {"ingest": 1})
        return {doc["_id"]: doc.get("ingest") for doc in found}

    def write(self, plan: WritePlan) -> dict[tuple[str, str], str]:
        return self._writer.write(plan)

    def remove_rejects(self, ids: list[str]) -> int:
        return int(self._db[Collections.REJECTED].delete_many({"_id": {"$in": ids}}).deleted_count)


def replay_run(params: Mapping[str, Any], run_id: str) -> dict[str, Any]:
    """The replay_rejected DAG's task: the run's params applied to the configured database, with
    the declarations as they are on disk now. Returns the summary (the task's XCom)."""
    from headwater.clients import mongo_client
    from headwater.settings import get_settings
    from headwater.sources import load_catalog

    selection = selection_from_params(params)
    dry_run = dry_run_from_params(params)
    settings = get_settings()
    catalog = load_catalog(settings)
    if catalog.file_problems:
        # A declarations file caught mid-edit must not make its rejects look contract-less; the
        # task's retry reads it again.
        raise RuntimeError(f"declarations unreadable: {catalog.file_problems}")
    ctx = replay_context(
        catalog,
        settings.consumer.topics,
        max_value_bytes=settings.consumer.max_value_bytes,
        raw_max_bytes=settings.consumer.rejected_raw_max_bytes,
    )
    log.info(
        "replay started run_id=%s dry_run=%s selection=%s query=%s",
        run_id,
        dry_run,
        selection.as_dict(),
        selection_query(selection),
    )
    started = time.monotonic()
    client = mongo_client(settings)
    try:
        store = MongoReplayStore(client[settings.mongo.db])
        tally = replay_rejects(store, ctx, selection, dry_run=dry_run, run_id=run_id)
    finally:
        client.close()
    summary = {
        "run_id": run_id,
        "dry_run": dry_run,
        "selection": selection.as_dict(),
        **tally.summary(),
        "seconds": round(time.monotonic() - started, 3),
    }
    log.info(
        "replay finished run_id=%s dry_run=%s selected=%d outcomes=%s stored=%s already_stored=%d "
        "superseded=%d store_refused=%d removed_from_rejected=%d seconds=%.3f",
        run_id,
        dry_run,
        tally.selected,
        summary["outcomes"],
        summary["stored"],
        tally.already_stored,
        tally.superseded,
        sum(tally.store_refused.values()),
        tally.removed,
        summary["seconds"],
    )
    return summary
