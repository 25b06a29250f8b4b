"""Blueprint: GET /healthz, answered from the database (503 when it is unusable)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from producer.events.db import get_db, get_store

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    """200 with the stored events and commits; a database error is answered 503 by errors.py."""
    db = get_db()
    return jsonify(
        status="ok",
        events=db.count(),
        # Write transactions committed by every worker, each one fsync: commits ÷ events
        # accepted is the fsyncs per event.
        commits=db.commits(),
        # This worker's writes not answered yet (queued or in the transaction committing).
        writes_pending=get_store().group.pending(),
    )
