"""Blueprint: liveness and the route list."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from producer.standin.state import get_standin

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    """200 with the routes currently served."""
    return jsonify(status="ok", routes=get_standin().route_list())


@bp.get("/")
def index() -> Response:
    """The routes currently served."""
    return jsonify(routes=get_standin().route_list())
