"""Tumbling-window rollups of `readings` (10 s and 1 min per device and sensor): the math and I/O.

The windows are computed in Python, streaming over readings sorted by time: the embedded server
(and FerretDB v1) lacks `$min`/`$max`/`$avg` accumulators and `$merge`, and Python keeps the code
on what every server supports. Only the windows still open are held in memory: one per
(device, sensor, window size). Windows start at epoch multiples of their size, so a recompute of
any interval whose bounds are whole minutes rebuilds whole windows and nothing else.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import ASCENDING, ReplaceOne
from pymongo.database import Database

from headwater.clients import mongo_client
from headwater.contracts import Collections
from headwater.late_data import merge_ranges, parse_time
from headwater.settings import get_settings
from headwater.sources import ensure_utc
from headwater.windows import run_window

log = logging.getLogger(__name__)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
WINDOWS: dict[str, timedelta] = {"10s": timedelta(seconds=10), "1m": timedelta(minutes=1)}
# An interval to recompute must be a multiple of the largest window, or its edge windows would
# be rebuilt from part of their readings.
ALIGNMENT = max(WINDOWS.values())
READ_BATCH = 1000
WRITE_CHUNK = 500


def window_start(ts: datetime, size: timedelta) -> datetime:
    """The start of the `size` window holding `ts`: the epoch multiple of `size` at or before it."""
    # Plain timedelta arithmetic: Airflow hands in pendulum datetimes, whose Interval cannot be
    # floor-divided by a timedelta.
    moment = ensure_utc(ts)
    offset = timedelta(seconds=moment.timestamp() - EPOCH.timestamp())
    return EPOCH + (offset // size) * size


def is_aligned(moment: datetime, size: timedelta = ALIGNMENT) -> bool:
    """True when `moment` is an epoch multiple of `size` (a possible window start)."""
    return window_start(moment, size) == ensure_utc(moment)


def rollup_id(device_id: str, sensor: str, window: str, start: datetime) -> str:
    """The `_id` of a rollup document: the same window always gets the same id."""
    return f"{device_id}|{sensor}|{window}|{ensure_utc(start).strftime('%Y-%m-%dT%H:%M:%SZ')}"


@dataclass
class _Window:
    count: int
    total: float
    low: float
    high: float
    unit: str | None

    def add(self, value: float) -> None:
        self.count += 1
        self.total += value
        self.low = min(self.low, value)
        self.high = max(self.high, value)


def _as_number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def rollup_readings(
    readings: Iterable[Mapping[str, Any]], windows: Mapping[str, timedelta] = WINDOWS
) -> Iterator[dict[str, Any]]:
    """Rollup documents of readings sorted by `ts`, each yielded as soon as its window closes.

    Readings without a numeric value are skipped (the contract makes them impossible). The unit
    is the first one seen in the window. ValueError when `ts` goes backwards: the input must be
    sorted, or a window would be emitted twice.
    """
    current: dict[str, datetime | None] = dict.fromkeys(windows)
    open_windows: dict[str, dict[tuple[str, str], _Window]] = {name: {} for name in windows}
    previous: datetime | None = None
    for reading in readings:
        value = _as_number(reading.get("value"))
        if value is None:
            continue
        ts = ensure_utc(reading["ts"])
        if previous is not None and ts < previous:
            raise ValueError(f"readings are not sorted by ts: {ts} after {previous}")
        previous = ts
        key = (str(reading["device_id"]), str(reading["sensor"]))
        for name, size in windows.items():
            start = window_start(ts, size)
            if current[name] != start:
                if current[name] is not None:
                    yield from _close(name, size, current[name], open_windows[name])
                current[name] = start
                open_windows[name] = {}
            acc = open_windows[name].get(key)
            if acc is None:
                open_windows[name][key] = _Window(1, value, value, value, reading.get("unit"))
            else:
                acc.add(value)
    for name, size in windows.items():
        start = current[name]
        if start is not None:
            yield from _close(name, size, start, open_windows[name])


def _close(
    name: str, size: timedelta, start: datetime | None, accs: dict[tuple[str, str], _Window]
) -> Iterator[dict[str, Any]]:
    assert start is not None
    for (device_id, sensor), acc in sorted(accs.items()):
        yield {
            "_id": rollup_id(device_id, sensor, name, start),
            "device_id": device_id,
            "sensor": sensor,
            "window": name,
            "start": start,
            "end": start + size,
            "count": acc.count,
            "sum": acc.total,
            "min": acc.low,
            "max": acc.high,
            "avg": acc.total / acc.count,
            "unit": acc.unit,
        }


@dataclass
class Totals:
    """Windows combined: what GET /stats answers from (an exact avg needs sum and count)."""

    count: int = 0
    total: float = 0.0
    low: float | None = None
    high: float | None = None

    def add(self, window: Mapping[str, Any]) -> None:
        """Fold one rollup document (count, sum, min, max) in."""
        count = int(window["count"])
        if count <= 0:
            return
        self.count += count
        self.total += float(window["sum"])
        low, high = float(window["min"]), float(window["max"])
        self.low = low if self.low is None else min(self.low, low)
        self.high = high if self.high is None else max(self.high, high)

    def value(self, agg: str) -> float | int | None:
        """The aggregate `agg` (avg|min|max|count); None when no reading was counted."""
        if self.count == 0:
            return None
        if agg == "avg":
            # The exact mean of the values: total sum over total count, never a mean of means.
            return self.total / self.count
        if agg == "min":
            return self.low
        if agg == "max":
            return self.high
        if agg == "count":
            return self.count
        raise ValueError(f"unknown aggregate {agg!r} (known: avg, min, max, count)")


def combine_windows(windows: Iterable[Mapping[str, Any]]) -> Totals:
    """The totals of rollup documents, folded one at a time."""
    totals = Totals()
    for window in windows:
        totals.add(window)
    return totals


def recompute_rollups(
    db: Database,
    since: datetime,
    until: datetime,
    *,
    batch_size: int = READ_BATCH,
    chunk_size: int = WRITE_CHUNK,
) -> dict[str, int]:
    """Rebuild the rollups of readings with since <= ts < until; rerunning changes nothing.

    Each window document is replaced whole by `_id` (upsert), so a rerun writes identical
    documents. bulk_write(ordered=False) in chunks, not a transaction: the embedded server has
    none, and every chunk is idempotent on its own, so a retry after a failure is safe.
    """
    since, until = ensure_utc(since), ensure_utc(until)
    if until <= since:
        raise ValueError(f"empty interval {since.isoformat()} .. {until.isoformat()}")
    for name, moment in (("since", since), ("until", until)):
        if not is_aligned(moment):
            raise ValueError(f"{name}={moment.isoformat()} is not a whole multiple of {ALIGNMENT}")
    counts = {"readings": 0, "rollups": 0, "upserted": 0, "modified": 0, "matched": 0}

    def counted(cursor: Iterable[Mapping[str, Any]]) -> Iterator[Mapping[str, Any]]:
        for reading in cursor:
            counts["readings"] += 1
            yield reading

    cursor = db[Collections.READINGS].find(
        {"ts": {"$gte": since, "$lt": until}},
        {"device_id": 1, "sensor": 1, "value": 1, "unit": 1, "ts": 1},
        # _id breaks ties of equal ts, so every run adds the values in the same order and the
        # float sums come out bit-identical.
        sort=[("ts", ASCENDING), ("_id", ASCENDING)],
        batch_size=batch_size,
    )
    rollups = db[Collections.READINGS_ROLLUP]
    ops: list[ReplaceOne] = []
    try:
        for doc in rollup_readings(counted(cursor)):
            ops.append(ReplaceOne({"_id": doc["_id"]}, doc, upsert=True))
            counts["rollups"] += 1
            if len(ops) >= chunk_size:
                _write(rollups, ops, counts)
                ops = []
        if ops:
            _write(rollups, ops, counts)
    finally:
        cursor.close()
    return counts


def _write(collection: Any, ops: list[ReplaceOne], counts: dict[str, int]) -> None:
    result = collection.bulk_write(ops, ordered=False)
    counts["upserted"] += result.upserted_count
    counts["modified"] += result.modified_count
    counts["matched"] += result.matched_count


def align_outward(since: datetime, until: datetime) -> tuple[datetime, datetime]:
    """[since, until) widened to whole ALIGNMENT windows: every window it touches, whole."""
    start = window_start(since, ALIGNMENT)
    end = window_start(until, ALIGNMENT)
    if end < ensure_utc(until):
        end += ALIGNMENT
    return start, end


def windows_to_recompute(
    extras: Iterable[Mapping[str, Any]],
) -> list[tuple[datetime, datetime]]:
    """The ranges the triggering asset events name, aligned and merged (each window once).

    Two kinds of event: an ingest DAG's reconcile (extra `since`/`until`: the reconciled window,
    widened to whole minutes) and the late-data watcher's (extra `payload`: a notice whose
    `windows` are whole minutes already). Events naming another collection, or nothing usable,
    are skipped; so a burst of notices for one window recomputes it once.
    """
    ranges: list[tuple[datetime, datetime]] = []
    for extra in extras:
        notice = extra.get("payload") if isinstance(extra.get("payload"), Mapping) else None
        try:
            if notice is not None:
                if notice.get("collection") != Collections.READINGS:
                    continue
                for since, until in notice.get("windows") or []:
                    ranges.append(align_outward(parse_time(since), parse_time(until)))
            elif "since" in extra and "until" in extra:
                if extra.get("collection", Collections.READINGS) != Collections.READINGS:
                    continue
                ranges.append(align_outward(parse_time(extra["since"]), parse_time(extra["until"])))
        except (ValueError, TypeError) as exc:
            log.warning("rollup trigger skipped (unusable extra %r): %s", extra, exc)
    return merge_ranges(ranges)


def _recompute_ranges(ranges: list[tuple[datetime, datetime]]) -> dict[str, Any]:
    settings = get_settings()
    started = time.monotonic()
    totals = {"readings": 0, "rollups": 0, "upserted": 0, "modified": 0, "matched": 0}
    client = mongo_client(settings)
    try:
        for since, until in ranges:
            counts = recompute_rollups(client[settings.mongo.db], since, until)
            for name, value in counts.items():
                totals[name] += value
            log.info(
                "rollups recomputed since=%s until=%s readings=%d rollups=%d upserted=%d "
                "modified=%d",
                since.isoformat(),
                until.isoformat(),
                counts["readings"],
                counts["rollups"],
                counts["upserted"],
                counts["modified"],
            )
    finally:
        client.close()
    return {
        **totals,
        "windows": [[a.isoformat(), b.isoformat()] for a, b in ranges],
        "seconds": round(time.monotonic() - started, 3),
    }


def rollup_run(
    interval_start: datetime | None, interval_end: datetime | None, params: dict[str, Any]
) -> dict[str, Any]:
    """Recompute one explicit window (a manual run's `since`/`until`, or a data interval)."""
    since, until = run_window(interval_start, interval_end, params)
    result = _recompute_ranges([(ensure_utc(since), ensure_utc(until))])
    return {**result, "since": since.isoformat(), "until": until.isoformat()}


def rollup_events_run(extras: list[Mapping[str, Any]], params: dict[str, Any]) -> dict[str, Any]:
    """The rollup DAG's task: a manual run recomputes its `since`/`until` params; an
    asset-triggered run recomputes exactly the windows its events name (each once)."""
    if params.get("since") or params.get("until"):
        return {**rollup_run(None, None, params), "events": len(extras), "trigger": "manual"}
    ranges = windows_to_recompute(extras)
    log.info(
        "rollup run events=%d ranges=%d %s",
        len(extras),
        len(ranges),
        ",".join(f"{a.isoformat()}..{b.isoformat()}" for a, b in ranges) or "-",
    )
    return {**_recompute_ranges(ranges), "events": len(extras), "trigger": "assets"}
