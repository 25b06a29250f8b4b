"""Blueprint: GET /healthz, answered from the database (503 when it is unusable)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from producer.events.db import get_db

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    """200 with the number of stored events; a database error is answered 503 by errors.py."""
    return jsonify(status="ok", events=get_db().count())
