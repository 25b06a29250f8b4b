"""Blueprint: POST /events and POST /events/batch, durable before they answer 201."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from producer.events.db import get_store
from producer.events.errors import ApiError
from producer.events.store import IdempotencyClaim, IdempotencyConflict, Saved
from producer.events.times import to_us
from producer.events.validation import (
    InvalidInput,
    NewEvent,
    parse_batch,
    parse_event,
    parse_json_body,
)

log = logging.getLogger(__name__)

bp = Blueprint("ingest", __name__)

API_KEY_HEADER = "X-API-Key"
IDEMPOTENCY_HEADER = "Idempotency-Key"
IDEMPOTENCY_KEY_MAX = 128


def request_fingerprint(kind: str, payload: Any) -> str:
    """A digest of the route and the parsed body, blind to spacing and key order."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{kind}\n{canonical}".encode()).hexdigest()


def _require_api_key() -> None:
    given = request.headers.get(API_KEY_HEADER)
    if given is None:
        raise ApiError.one(401, "unauthorized", API_KEY_HEADER, "is required")
    # WSGI headers are latin-1 text: its bytes are what the client sent. Text outside latin-1
    # (possible only from an in-process WSGI client) cannot be the key.
    expected = current_app.config["API_KEY"].encode("utf-8")
    try:
        sent = given.encode("latin-1")
    except UnicodeEncodeError:
        sent = b""
    if not hmac.compare_digest(sent, expected):
        raise ApiError.one(401, "unauthorized", API_KEY_HEADER, "is not the API key")


def _idempotency_key() -> str | None:
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is None:
        return None
    if not 1 <= len(key) <= IDEMPOTENCY_KEY_MAX or not all(" " <= c <= "~" for c in key):
        problem = f"must be 1 to {IDEMPOTENCY_KEY_MAX} printable ASCII characters"
        raise ApiError.one(400, "invalid_header", IDEMPOTENCY_HEADER, problem)
    return key


def _json_payload() -> Any:
    if not request.is_json:
        given = request.content_type or "none"
        problem = f"must be application/json, got {given[:64]}"
        raise ApiError.one(415, "unsupported_media_type", "Content-Type", problem)
    try:
        return parse_json_body(_read_body())
    except InvalidInput as exc:
        raise ApiError(400, "malformed_json", exc.problems) from None


def _read_body() -> bytes:
    # werkzeug answers 413 for a Content-Length over MAX_CONTENT_LENGTH, but cuts a chunked body
    # at the limit without a word: one byte more on the server's terminated stream means too large.
    data = request.get_data(cache=False)
    limit = request.max_content_length
    if request.content_length is None and limit is not None and len(data) >= limit:
        if request.environ["wsgi.input"].read(1):
            raise RequestEntityTooLarge()
    return data


def _now() -> datetime:
    clock: Callable[[], datetime] = current_app.config["CLOCK"]
    return clock()


def _clock_ms() -> Callable[[], int]:
    # Bound now: the shared transaction may call it in another request's context.
    clock: Callable[[], datetime] = current_app.config["CLOCK"]
    return lambda: to_us(clock()) // 1000


def _accept(kind: str, parse: Callable[[Any, datetime], list[NewEvent]]) -> Saved:
    _require_api_key()
    key = _idempotency_key()
    payload = _json_payload()
    try:
        events = parse(payload, _now())
    except InvalidInput as exc:
        raise ApiError(400, "invalid_event", exc.problems) from None
    claim = IdempotencyClaim(key, request_fingerprint(kind, payload)) if key else None
    try:
        saved = get_store().save(events, _clock_ms(), claim)
    except IdempotencyConflict:
        problem = "was already used with a different request"
        raise ApiError.one(409, "idempotency_conflict", IDEMPOTENCY_HEADER, problem) from None
    ids = [event.event_id for event in saved.events]
    log.info(
        "events %s path=%s status=%d count=%d event_ids=%s idempotency_key=%s",
        "replayed" if saved.replayed else "accepted",
        request.path,
        200 if saved.replayed else 201,
        len(ids),
        ids[0] if len(ids) == 1 else f"{ids[0]}..{ids[-1]}",
        key or "-",
    )
    return saved


@bp.post("/events")
def post_event() -> tuple[Response, int]:
    """Store one event: 201 with it, or 200 with the original for a repeated Idempotency-Key."""
    saved = _accept("event", lambda payload, now: [parse_event(payload, now)])
    return jsonify(event=saved.events[0].as_json()), 200 if saved.replayed else 201


@bp.post("/events/batch")
def post_batch() -> tuple[Response, int]:
    """Store every event of `{"events": [...]}` in one transaction, or none of them."""
    limit = current_app.config["BATCH_LIMIT"]
    saved = _accept("batch", lambda payload, now: parse_batch(payload, now, limit))
    events = [event.as_json() for event in saved.events]
    return jsonify(events=events, count=len(events)), 200 if saved.replayed else 201
