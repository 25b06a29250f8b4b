"""Blueprint: GET /events (a window, paged by cursor) and GET /events/<event_id>; open to all."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, current_app, jsonify, request

from producer.events.db import get_db
from producer.events.errors import ApiError
from producer.events.query import encode_cursor, needs_settling, parse_page_request
from producer.events.times import to_us
from producer.events.validation import InvalidInput

log = logging.getLogger(__name__)

bp = Blueprint("reads", __name__)


@bp.get("/events")
def list_events() -> Response:
    """Events with since <= received_at < until in event_id order, `limit` at a time."""
    try:
        page = parse_page_request(
            request.args, current_app.config["PAGE_SIZE"], current_app.config["MAX_PAGE_SIZE"]
        )
    except InvalidInput as exc:
        raise ApiError(400, "invalid_parameter", exc.problems) from None
    db = get_db()
    if needs_settling(page, to_us(current_app.config["CLOCK"]()) // 1000):
        db.wait_for_writers()
    events, more = db.page(page)
    next_cursor = encode_cursor(events[-1].event_id) if more else None
    log.info(
        "events read query=%r count=%d first=%s last=%s more=%s",
        request.query_string.decode("latin-1")[:200],
        len(events),
        events[0].event_id if events else "-",
        events[-1].event_id if events else "-",
        more,
    )
    return jsonify(
        events=[event.as_json() for event in events], count=len(events), next_cursor=next_cursor
    )


@bp.get("/events/<event_id>")
def get_event(event_id: str) -> Response:
    """One stored event, or 404."""
    event = get_db().get(event_id)
    if event is None:
        raise ApiError.one(404, "not_found", "event_id", f"no event {event_id[:64]!r}")
    return jsonify(event=event.as_json())
