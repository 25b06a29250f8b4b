"""What lies in MongoDB for one source's time window (tests compare it with what was offered).

Reconcile itself counts a run's own keys (headwater/reconcile.py); a test that offers records for
a window and checks the window's contents counts by time instead.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo.database import Database

from headwater.contracts import Collections
from headwater.sources import Source, ensure_utc, format_time


def count_window(db: Database, source: Source, since: datetime, until: datetime) -> tuple[int, int]:
    """(stored, rejected): stored documents of `source` whose event time is in [since, until),
    and distinct keys quarantined from messages produced for exactly this window."""
    bounds = {"$gte": ensure_utc(since), "$lt": ensure_utc(until)}
    stored = db[source.collection].count_documents(
        {"source": source.name, source.stored_time_field: bounds}
    )
    start, end = format_time(since, "iso8601"), format_time(until, "iso8601")
    keys: set[Any] = set()
    for doc in db[Collections.REJECTED].find(
        {"topic": source.topic, "headers.value": start}, {"key": 1, "headers": 1}
    ):
        headers = {h.get("name"): h.get("value") for h in doc.get("headers") or []}
        if headers.get("window_start") == start and headers.get("window_end") == end:
            keys.add(doc.get("key"))
    return stored, len(keys)
