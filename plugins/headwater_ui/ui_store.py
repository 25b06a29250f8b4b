"""The MongoDB reads behind the Headwater page: each one indexed and bounded by a limit.

- a source's latest reconciles: reconcile_runs (source, reconciled_at desc), RECENT_RECONCILES
- the consumer group's heartbeats: pipeline_status (heartbeat_at desc), MAX_MEMBERS
- a check's latest result: health_checks (check, checked_at desc), 1
- a check's latest failures: health_checks (check, last_failure.at desc), RECENT_FAILURES

The last one asks for `last_failure.at` from 1970 on, a range on the index's second field: only
documents that ever saw a failure carry it, so the server walks those alone, newest first.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from pymongo import DESCENDING, MongoClient
from pymongo.database import Database

from headwater.contracts import Collections
from headwater.health_checks import ALL_CHECKS
from headwater.pipeline_summary import RECENT_FAILURES, RECENT_RECONCILES, SummaryInputs
from headwater.settings import Settings
from headwater.sources import Source

# More heartbeat documents than any group has members (one per member name ever used).
MAX_MEMBERS = 64
# Every read of one page view together gives up after this (pymongo has no read timeout).
READ_TIMEOUT_S = 10.0
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_HEARTBEAT_FIELDS = {
    "instance": 1,
    "phase": 1,
    "heartbeat_at": 1,
    "assigned": 1,
    "partitions": 1,
    "lag_total": 1,
    "last_error": 1,
}
_HEALTH_FIELDS = {
    "check": 1,
    "ok": 1,
    "detail": 1,
    "measured": 1,
    "checked_at": 1,
    "dag_run_id": 1,
    "failures": 1,
    "last_failure": 1,
}


def read_inputs(
    db: Database, sources: Sequence[Source], *, group: str, stale_after_s: float
) -> SummaryInputs:
    """Everything the summary needs, in 2 + sources + 2 x checks small indexed queries."""
    reconciles = {
        s.name: list(
            db[Collections.RECONCILE_RUNS]
            .find({"source": s.name})
            .sort("reconciled_at", DESCENDING)
            .limit(RECENT_RECONCILES)
        )
        for s in sources
    }
    heartbeats = list(
        db[Collections.PIPELINE_STATUS]
        .find({"kind": "consumer", "group": group}, _HEARTBEAT_FIELDS)
        .sort("heartbeat_at", DESCENDING)
        .limit(MAX_MEMBERS)
    )
    checks = db[Collections.HEALTH_CHECKS]
    latest: dict[str, dict[str, Any]] = {}
    failures: dict[str, list[dict[str, Any]]] = {}
    for check in ALL_CHECKS:
        newest = list(
            checks.find({"check": check}, _HEALTH_FIELDS).sort("checked_at", DESCENDING).limit(1)
        )
        if newest:
            latest[check] = newest[0]
        failures[check] = list(
            checks.find({"check": check, "last_failure.at": {"$gte": _EPOCH}}, _HEALTH_FIELDS)
            .sort("last_failure.at", DESCENDING)
            .limit(RECENT_FAILURES)
        )
    return SummaryInputs(
        sources=list(sources),
        reconciles=reconciles,
        heartbeats=heartbeats,
        health_latest=latest,
        health_failures=failures,
        group=group,
        stale_after_s=stale_after_s,
    )


class MongoReader:
    """One MongoClient for the API server's lifetime, made on first use (never at import)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._client: MongoClient | None = None
        self._lock = threading.Lock()

    def db(self) -> Database:
        from headwater.clients import mongo_client

        with self._lock:
            if self._client is None:
                self._client = mongo_client(self.settings, appname="headwater-ui")
            return self._client[self.settings.mongo.db]

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None
