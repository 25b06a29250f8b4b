"""Blueprint: GET /stats, an aggregate of one sensor's readings between two minutes, from rollups.

`GET /stats?agg=avg|min|max|count&sensor=S&from=T1&to=T2[&device_id=D ...]` combines the 1-minute
rollup windows whose start is in [from, to). `from` and `to` must be whole UTC minutes (ISO-8601;
no offset means UTC): a time inside a minute is refused with 400 rather than rounded, because the
rollups cannot answer for part of a minute and a silent rounding would answer another question.
Without `device_id` every device counts. The avg is exact: total sum / total count of the readings.
No reading in the range: 200 with `value` null and `count` 0.

The rollup reader comes from `app.config["ROLLUP_READER"]` when set (tests pass a fake); otherwise
a Mongo reader is built on first use, per app, from MONGO_URI / MONGO_DB (settings by default).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from flask import Blueprint, Flask, Response, current_app, jsonify, request
from flask.blueprints import BlueprintSetupState
from pymongo import MongoClient
from pymongo.errors import PyMongoError

from headwater.clients import mongo_client
from headwater.contracts import Collections
from headwater.rollups import combine_windows, is_aligned
from headwater.settings import get_settings
from producer.events.errors import ApiError
from producer.events.times import format_utc, parse_iso
from producer.events.validation import InvalidInput, Problem

log = logging.getLogger(__name__)

bp = Blueprint("stats", __name__)

AGGREGATES = ("avg", "min", "max", "count")
PARAMETERS = ("agg", "sensor", "from", "to", "device_id")
NAME_MAX = 200
MAX_DEVICE_IDS = 100
WINDOW = "1m"
READER_EXTENSION = "rollup_reader"
_reader_lock = threading.Lock()


class RollupReader(Protocol):
    """Where /stats reads 1-minute rollup windows from."""

    def windows(
        self, sensor: str, device_ids: list[str] | None, start: datetime, end: datetime
    ) -> Iterable[Mapping[str, Any]]:
        """The 1-minute windows of `sensor` (of `device_ids`, or all) with start in [start, end)."""
        ...


class MongoRollupReader:
    """Reads `readings_rollup` through one MongoClient, created on first use."""

    def __init__(self, uri: str, db: str, timeout_ms: int = 5000) -> None:
        self._uri, self._db, self._timeout_ms = uri, db, timeout_ms
        self._client: MongoClient | None = None

    def windows(
        self, sensor: str, device_ids: list[str] | None, start: datetime, end: datetime
    ) -> Iterator[Mapping[str, Any]]:
        if self._client is None:
            self._client = mongo_client(self._uri, self._timeout_ms)
        query: dict[str, Any] = {
            "window": WINDOW,
            "sensor": sensor,
            "start": {"$gte": start, "$lt": end},
        }
        if device_ids is not None:
            query["device_id"] = {"$in": device_ids}
        projection = {"count": 1, "sum": 1, "min": 1, "max": 1, "_id": 0}
        collection = self._client[self._db][Collections.READINGS_ROLLUP]
        yield from collection.find(query, projection, batch_size=1000)


@dataclass(frozen=True)
class StatsRequest:
    """A checked /stats query."""

    agg: str
    sensor: str
    start: datetime
    end: datetime
    device_ids: list[str] | None


def _minute(args: Mapping[str, str], name: str, problems: list[Problem]) -> datetime | None:
    text = args.get(name)
    if text is None or not text.strip():
        problems.append(Problem(name, "is required (ISO-8601 UTC, a whole minute)"))
        return None
    try:
        moment = parse_iso(text.strip())
    except ValueError:
        problems.append(Problem(name, f"{text[:64]!r} is not an ISO-8601 date-time"))
        return None
    try:
        moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except OverflowError:  # year 1 or 9999 pushed out of range by its offset
        problems.append(Problem(name, "is out of the supported range"))
        return None
    if not is_aligned(moment):
        problems.append(Problem(name, "must be a whole minute (seconds and fractions zero)"))
        return None
    return moment


def parse_stats_request(args: Any) -> StatsRequest:
    """The query of GET /stats as plain values; InvalidInput naming every bad parameter."""
    problems: list[Problem] = []
    for name in sorted(set(args.keys()) - set(PARAMETERS)):
        problems.append(Problem(name[:64], f"unknown parameter (known: {', '.join(PARAMETERS)})"))
    for name in ("agg", "sensor", "from", "to"):
        if len(args.getlist(name)) > 1:
            problems.append(Problem(name, "must be given once"))
    agg = args.get("agg")
    if agg not in AGGREGATES:
        got = "is required" if agg is None else f"{agg[:32]!r} is not allowed"
        problems.append(Problem("agg", f"{got}; use one of {', '.join(AGGREGATES)}"))
    sensor = (args.get("sensor") or "").strip()
    if not sensor or len(sensor) > NAME_MAX:
        problems.append(Problem("sensor", f"is required, 1 to {NAME_MAX} characters"))
    start, end = _minute(args, "from", problems), _minute(args, "to", problems)
    if start is not None and end is not None and end <= start:
        problems.append(Problem("to", "must be after from"))
    raw_ids = args.getlist("device_id")
    device_ids = list(dict.fromkeys(d.strip() for d in raw_ids)) if raw_ids else None
    if device_ids is not None:
        if any(not d or len(d) > NAME_MAX for d in device_ids):
            problems.append(Problem("device_id", f"each must be 1 to {NAME_MAX} characters"))
        if len(device_ids) > MAX_DEVICE_IDS:
            problems.append(Problem("device_id", f"at most {MAX_DEVICE_IDS} devices"))
    if problems:
        raise InvalidInput(problems)
    assert agg is not None and start is not None and end is not None
    return StatsRequest(agg, sensor, start, end, device_ids)


def _reader() -> RollupReader:
    configured: RollupReader | None = current_app.config.get("ROLLUP_READER")
    if configured is not None:
        return configured
    reader: RollupReader | None = current_app.extensions.get(READER_EXTENSION)
    if reader is None:
        with _reader_lock:
            reader = current_app.extensions.get(READER_EXTENSION)
            if reader is None:
                reader = MongoRollupReader(
                    current_app.config["MONGO_URI"], current_app.config["MONGO_DB"]
                )
                current_app.extensions[READER_EXTENSION] = reader
    return reader


@bp.record_once
def _defaults(state: BlueprintSetupState) -> None:
    # Registered after test_config is applied, so setdefault keeps a test's MONGO_URI / MONGO_DB.
    app: Flask = state.app
    mongo = get_settings().mongo
    app.config.setdefault("MONGO_URI", mongo.uri)
    app.config.setdefault("MONGO_DB", mongo.db)


@bp.get("/stats")
def get_stats() -> Response:
    """One aggregate of a sensor's readings over whole minutes [from, to)."""
    try:
        query = parse_stats_request(request.args)
    except InvalidInput as exc:
        raise ApiError(400, "invalid_parameter", exc.problems) from None
    try:
        totals = combine_windows(
            _reader().windows(query.sensor, query.device_ids, query.start, query.end)
        )
    except PyMongoError as exc:
        # 503, not 500: Mongo being unreachable is worth a retry.
        raise ApiError.one(503, "unavailable", "database", type(exc).__name__) from None
    value = totals.value(query.agg)
    log.info(
        "stats read agg=%s sensor=%s from=%s to=%s devices=%s count=%d",
        query.agg,
        query.sensor,
        query.start.isoformat(),
        query.end.isoformat(),
        "all" if query.device_ids is None else len(query.device_ids),
        totals.count,
    )
    return jsonify(
        {
            "agg": query.agg,
            "sensor": query.sensor,
            "from": format_utc(query.start),
            "to": format_utc(query.end),
            "device_ids": query.device_ids,
            "value": value,
            "count": totals.count,
        }
    )
