"""MongoDB adapter: one unordered bulk write of upserts per collection, and the heartbeat."""

from __future__ import annotations

import logging
from typing import Any

import bson
from bson.errors import InvalidDocument
from pymongo import MongoClient, ReplaceOne, UpdateOne
from pymongo.database import Database
from pymongo.errors import BulkWriteError, ConnectionFailure, OperationFailure, PyMongoError

from consumer.pipeline import WritePlan
from headwater.contracts import Collections

log = logging.getLogger(__name__)

# Server error codes that say "not now" rather than "never": shutdown, elections, timeouts, and
# 11000 from two members upserting one _id at the same moment (the retry finds the document).
TRANSIENT_CODES = {6, 7, 50, 64, 89, 91, 112, 189, 262, 9001, 10107, 11000, 11600, 11602, 13435}


class StoreUnavailable(RuntimeError):
    """MongoDB did not take the write now; the same write may be retried later."""


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


def mongo_client(uri: str, timeout_ms: int) -> MongoClient:
    """A client that gives up on an unreachable server after timeout_ms (then we back off)."""
    return MongoClient(
        uri,
        serverSelectionTimeoutMS=timeout_ms,
        connectTimeoutMS=timeout_ms,
        socketTimeoutMS=max(30_000, timeout_ms),
        tz_aware=True,
        appname="headwater-consumer",
    )


class MongoStore:
    """Writes WritePlans; every document keyed by _id, so writing a plan twice changes nothing."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def write(self, plan: WritePlan) -> dict[tuple[str, str], str]:
        """Write every upsert and rejection of the plan.

        Returns the documents the server refused for good ((collection, _id) -> reason, e.g. a
        $jsonSchema failure on real MongoDB); raises StoreUnavailable when the write may be retried.
        Each collection gets one bulk_write, not a transaction: the embedded server has none, and
        `_id` upserts make a partial write harmless to repeat.
        """
        refused: dict[tuple[str, str], str] = {}
        for collection, docs in sorted(plan.upserts.items()):
            refused.update(self._bulk(collection, docs, replace=True))
        if plan.rejections:
            failed = self._bulk(Collections.REJECTED, plan.rejections, replace=False)
            if failed:
                raise RuntimeError(f"rejected documents refused by the server: {failed}")
        return refused

    def _bulk(
        self, collection: str, docs: dict[str, dict[str, Any]], replace: bool
    ) -> dict[tuple[str, str], str]:
        """One unordered bulk of upserts by _id: replacing (data) or insert-once (rejections)."""
        ids = list(docs)
        ops: list[ReplaceOne | UpdateOne]
        if replace:
            ops = [ReplaceOne({"_id": i}, docs[i], upsert=True) for i in ids]
        else:
            # $setOnInsert: a re-delivered message leaves its first rejection exactly as it was.
            ops = [UpdateOne({"_id": i}, {"$setOnInsert": docs[i]}, upsert=True) for i in ids]
        try:
            self._db[collection].bulk_write(ops, ordered=False)
        except (InvalidDocument, OverflowError):
            # The driver cannot encode a document (a NUL in a field name, an integer beyond 64
            # bits in free-form properties): those documents
            # are refused for good and the others written (again, harmlessly, if already sent).
            refused = unencodable(collection, docs)
            if not refused:
                raise
            rest = {i: d for i, d in docs.items() if (collection, i) not in refused}
            if rest:
                refused.update(self._bulk(collection, rest, replace))
            return refused
        except BulkWriteError as exc:
            details = exc.details or {}
            if details.get("writeConcernErrors"):
                raise StoreUnavailable(f"{collection}: write concern: {details}") from exc
            refused = {}
            for error in details.get("writeErrors", []):
                if error.get("code") in TRANSIENT_CODES:
                    raise StoreUnavailable(f"{collection}: {error.get('errmsg')}") from exc
                reason = f"{str(error.get('errmsg', ''))[:300]} (code {error.get('code')})"
                refused[(collection, ids[error["index"]])] = reason
            return refused
        except PyMongoError as exc:
            if is_transient(exc):
                raise StoreUnavailable(f"{collection}: {describe(exc)}") from exc
            raise
        return {}

    def write_status(self, doc_id: str, document: dict[str, Any]) -> None:
        """Replace one pipeline_status document; StoreUnavailable when MongoDB is unreachable."""
        try:
            statuses = self._db[Collections.PIPELINE_STATUS]
            statuses.replace_one({"_id": doc_id}, document, upsert=True)
        except PyMongoError as exc:
            if is_transient(exc):
                raise StoreUnavailable(f"pipeline_status: {describe(exc)}") from exc
            raise
