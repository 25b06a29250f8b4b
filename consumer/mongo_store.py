"""MongoDB adapter: insert-first unordered bulk writes per collection, and the heartbeat."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import bson
from bson.errors import InvalidDocument
from pymongo import MongoClient, ReplaceOne, UpdateOne
from pymongo.database import Database
from pymongo.errors import BulkWriteError, ConnectionFailure, OperationFailure, PyMongoError

from consumer.pipeline import WritePlan
from headwater import clients
from headwater.contracts import Collections

log = logging.getLogger(__name__)

DUPLICATE_KEY = 11000
# Server error codes that say "not now" rather than "never": shutdown, elections, timeouts, and
# 11000 from two members upserting one _id at the same moment (the retry finds the document).
TRANSIENT_CODES = {6, 7, 50, 64, 89, 91, 112, 189, 262, 9001, 10107, 11000, 11600, 11602, 13435}

WriteMode = Literal["insert", "replace", "refresh"]
# A rejection keeps the time it was first rejected; every other field follows the latest message.
FIRST_SEEN_FIELD = "rejected_at"


class StoreUnavailable(RuntimeError):
    """MongoDB did not take the write now; the same write may be retried later."""


@dataclass
class WriteErrors:
    """What one unordered bulk write left undone, by _id."""

    existing: list[str] = field(default_factory=list)  # duplicate key: the _id is already stored
    refused: dict[str, str] = field(default_factory=dict)  # refused for good, with the reason
    retry: str | None = None  # why the whole write must be retried later, if it must


def is_transient(exc: PyMongoError) -> bool:
    """Whether an error is MongoDB being unreachable or busy (retry) rather than a bad write."""
    if isinstance(exc, ConnectionFailure):  # AutoReconnect, NetworkTimeout, ServerSelection...
        return True
    if exc.has_error_label("RetryableWriteError"):
        return True
    return isinstance(exc, OperationFailure) and exc.code in TRANSIENT_CODES


def describe(exc: PyMongoError) -> str:
    """An error in one short line (a server-selection error appends the whole topology)."""
    text = str(exc).split(", Topology Description:")[0]
    return f"{type(exc).__name__}: {text[:300]}"


def unencodable(collection: str, docs: dict[str, dict[str, Any]]) -> dict[tuple[str, str], str]:
    """The documents the driver cannot encode as BSON, with the reason."""
    refused: dict[tuple[str, str], str] = {}
    for doc_id, doc in docs.items():
        try:
            bson.encode(doc)
        except (InvalidDocument, OverflowError) as exc:
            refused[(collection, doc_id)] = f"not storable as BSON: {str(exc)[:200]}"
    return refused


def classify_write_errors(details: Mapping[str, Any], ids: Sequence[str]) -> WriteErrors:
    """Sort a BulkWriteError's details (write i was for ids[i]): already stored, refused, retry."""
    errors = WriteErrors()
    if details.get("writeConcernErrors"):
        errors.retry = f"write concern: {details['writeConcernErrors']}"
        return errors
    for error in details.get("writeErrors", []):
        code, message = error.get("code"), str(error.get("errmsg", ""))
        doc_id = ids[error["index"]]
        if code == DUPLICATE_KEY:
            errors.existing.append(doc_id)
        elif code in TRANSIENT_CODES:
            errors.retry = message
            return errors
        else:
            errors.refused[doc_id] = f"{message[:300]} (code {code})"
    return errors


def mongo_client(uri: str, timeout_ms: int) -> MongoClient:
    """The consumer's client: a server unreachable for timeout_ms fails (then we back off)."""
    return clients.mongo_client(
        uri,
        timeout_ms,
        connect_timeout_ms=timeout_ms,
        socket_timeout_ms=max(30_000, timeout_ms),
        appname="headwater-consumer",
    )


class MongoStore:
    """Writes WritePlans; every document keyed by _id, so writing a plan twice changes nothing."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def write(self, plan: WritePlan) -> dict[tuple[str, str], str]:
        """Write every document and rejection of the plan.

        Returns the documents the server refused for good ((collection, _id) -> reason, e.g. a
        $jsonSchema failure on real MongoDB); raises StoreUnavailable when the write may be retried.
        Each collection gets unordered bulk writes, not a transaction: the embedded server and
        FerretDB have none, and writes by `_id` make a partial write harmless to repeat.
        """
        refused: dict[tuple[str, str], str] = {}
        for collection, docs in sorted(plan.upserts.items()):
            refused.update(self._insert_or_replace(collection, docs))
        if plan.rejections:
            # Keyed by content: the same record rejected again (re-delivered, re-run, backfilled)
            # replaces its rejection, which then names the latest partition, offset and run.
            failed = self._insert_or_replace(Collections.REJECTED, plan.rejections, "refresh")
            if failed:
                raise RuntimeError(f"rejected documents refused by the server: {failed}")
        return refused

    def _insert_or_replace(
        self,
        collection: str,
        docs: dict[str, dict[str, Any]],
        again_mode: WriteMode = "replace",
    ) -> dict[tuple[str, str], str]:
        """Insert every document; replace those whose _id is already stored.

        The final state is that of a ReplaceOne(upsert) per document, at the price of inserts:
        most documents are new, and an upsert costs the server a lookup plus an update path (about
        3x an insert on the embedded server). Only re-delivered or updated records pay for both.
        """
        first = self._bulk(collection, docs, "insert")
        refused = {(collection, i): reason for i, reason in first.refused.items()}
        if first.existing:
            again = self._bulk(collection, {i: docs[i] for i in first.existing}, again_mode)
            if again.existing:
                # Two members upserting one new _id at once; the retry finds the document.
                raise StoreUnavailable(f"{collection}: concurrent upsert of {again.existing[0]}")
            refused.update({(collection, i): reason for i, reason in again.refused.items()})
        return refused

    def _bulk(
        self, collection: str, docs: dict[str, dict[str, Any]], mode: WriteMode
    ) -> WriteErrors:
        """One unordered bulk write by _id: insert_many, or ReplaceOne(upsert) per document."""
        ids = list(docs)
        try:
            if mode == "insert":
                batch = [{"_id": i, **docs[i]} for i in ids]
                self._db[collection].insert_many(batch, ordered=False)
            elif mode == "replace":
                ops = [ReplaceOne({"_id": i}, docs[i], upsert=True) for i in ids]
                self._db[collection].bulk_write(ops, ordered=False)
            else:
                # Re-delivered or re-run: where it was seen last, but first rejected when it was.
                refresh = [
                    UpdateOne(
                        {"_id": i},
                        {
                            "$set": {k: v for k, v in docs[i].items() if k != FIRST_SEEN_FIELD},
                            "$setOnInsert": {FIRST_SEEN_FIELD: docs[i].get(FIRST_SEEN_FIELD)},
                        },
                        upsert=True,
                    )
                    for i in ids
                ]
                self._db[collection].bulk_write(refresh, ordered=False)
        except (InvalidDocument, OverflowError):
            # The driver cannot encode a document (a NUL in a field name, an integer beyond 64
            # bits in free-form properties): those documents are refused for good and the others
            # written (again, harmlessly, if already sent: they come back as already stored).
            refused = unencodable(collection, docs)
            if not refused:
                raise
            rest = {i: d for i, d in docs.items() if (collection, i) not in refused}
            errors = self._bulk(collection, rest, mode) if rest else WriteErrors()
            errors.refused.update({i: reason for (_, i), reason in refused.items()})
            return errors
        except BulkWriteError as exc:
            errors = classify_write_errors(exc.details or {}, ids)
            if errors.retry is not None:
                raise StoreUnavailable(f"{collection}: {errors.retry}") from exc
            return errors
        except PyMongoError as exc:
            if is_transient(exc):
                raise StoreUnavailable(f"{collection}: {describe(exc)}") from exc
            raise
        return WriteErrors()

    def write_status(self, doc_id: str, document: dict[str, Any]) -> None:
        """Replace one pipeline_status document; StoreUnavailable when MongoDB is unreachable."""
        try:
            statuses = self._db[Collections.PIPELINE_STATUS]
            statuses.replace_one({"_id": doc_id}, document, upsert=True)
        except PyMongoError as exc:
            if is_transient(exc):
                raise StoreUnavailable(f"pipeline_status: {describe(exc)}") from exc
            raise
