"""Late-data notices: which rollup windows a stored reading made stale, as a small Kafka message.

The consumer stores readings as they come; `rollup_readings` recomputes the rollups of the windows
an ingest run reconciled. A reading that arrives after its window was rolled up (a late device, a
replayed reject, a re-run of an old interval) would leave that rollup stale. So the consumer,
after MongoDB acknowledged a batch and before it commits the batch's offsets, publishes one
notice naming the 1-minute windows of the batch's readings that already have a rollup
(coalesced into ranges). Airflow's AssetWatcher reads the notices (`notice_event` is its
apply_function) and turns each into an asset event whose extra carries the notice, and
`rollup_readings` recomputes exactly those windows (headwater.rollups.windows_to_recompute).

Pure: encoding, decoding and the window arithmetic; the I/O is in consumer/late_notices.py and
the DAGs.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, Protocol

from headwater.sources import ensure_utc

log = logging.getLogger(__name__)

NOTICE_VERSION = 1
# The notices name windows of the largest rollup size: a recompute of a whole minute rebuilds its
# 10 s windows too.
NOTICE_WINDOW = timedelta(minutes=1)
# A notice never names more ranges than this (a batch spanning more is split into several).
MAX_RANGES = 500


def parse_time(value: Any) -> datetime:
    """An ISO-8601 time as an aware UTC datetime; ValueError otherwise."""
    if isinstance(value, datetime):
        return ensure_utc(value)
    if not isinstance(value, str):
        raise ValueError(f"not a time: {value!r}")
    return ensure_utc(datetime.fromisoformat(value.replace("Z", "+00:00")))


def iso(moment: datetime) -> str:
    return ensure_utc(moment).strftime("%Y-%m-%dT%H:%M:%SZ")


def coalesce(
    starts: Iterable[datetime], size: timedelta = NOTICE_WINDOW
) -> list[tuple[datetime, datetime]]:
    """Window starts as [since, until) ranges, neighbours merged: 10:00, 10:01, 10:05 with a
    1-minute size give [10:00, 10:02) and [10:05, 10:06)."""
    ranges: list[tuple[datetime, datetime]] = []
    for start in sorted({ensure_utc(s) for s in starts}):
        if ranges and ranges[-1][1] >= start:
            ranges[-1] = (ranges[-1][0], max(ranges[-1][1], start + size))
        else:
            ranges.append((start, start + size))
    return ranges


def merge_ranges(ranges: Iterable[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    """Overlapping or touching [since, until) ranges merged, sorted."""
    merged: list[tuple[datetime, datetime]] = []
    for since, until in sorted((ensure_utc(a), ensure_utc(b)) for a, b in ranges):
        if until <= since:
            continue
        if merged and merged[-1][1] >= since:
            merged[-1] = (merged[-1][0], max(merged[-1][1], until))
        else:
            merged.append((since, until))
    return merged


def encode_notice(
    collection: str, ranges: list[tuple[datetime, datetime]], noticed_at: datetime
) -> bytes:
    """The JSON value of one notice."""
    return json.dumps(
        {
            "v": NOTICE_VERSION,
            "collection": collection,
            "windows": [[iso(a), iso(b)] for a, b in ranges],
            "noticed_at": iso(noticed_at),
        },
        separators=(",", ":"),
    ).encode()


def decode_notice(value: bytes | str | None) -> dict[str, Any] | None:
    """A notice as the dict the watcher hands on, or None when `value` is not a valid notice
    (anything else on the topic is skipped, never a crash of the triggerer)."""
    if value is None:
        return None
    try:
        doc = json.loads(value)
        if not isinstance(doc, dict) or doc.get("v") != NOTICE_VERSION:
            return None
        collection = doc["collection"]
        windows = doc["windows"]
        if not isinstance(collection, str) or not isinstance(windows, list) or not windows:
            return None
        ranges = [(parse_time(a), parse_time(b)) for a, b in windows]
    except (ValueError, TypeError, KeyError, RecursionError):
        return None
    if any(until <= since for since, until in ranges):
        return None
    return {
        "v": NOTICE_VERSION,
        "collection": collection,
        "windows": [[iso(a), iso(b)] for a, b in ranges],
        "noticed_at": doc.get("noticed_at") if isinstance(doc.get("noticed_at"), str) else None,
    }


class _Message(Protocol):
    def value(self) -> bytes | None: ...

    def topic(self) -> str | None: ...

    def partition(self) -> int | None: ...

    def offset(self) -> int | None: ...


def notice_event(message: _Message) -> dict[str, Any] | None:
    """The late-data AssetWatcher's apply_function (dags/rollups.py): a Kafka message -> the
    asset event's payload (the notice and where it was read), or None to skip the message."""
    notice = decode_notice(message.value())
    if notice is None:
        log.warning(
            "late notice skipped (not a notice) topic=%s partition=%s offset=%s",
            message.topic(),
            message.partition(),
            message.offset(),
        )
        return None
    return {**notice, "partition": message.partition(), "offset": message.offset()}
