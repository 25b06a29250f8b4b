"""Blueprint: every data file as a paged, windowed route (`/machine-metrics`, `/matches`, ...)."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, jsonify, request
from werkzeug.exceptions import NotFound

from producer.standin.paging import encode_cursor, file_page, parse_file_request
from producer.standin.query import BadParameter, format_us
from producer.standin.state import get_standin

log = logging.getLogger(__name__)
bp = Blueprint("files", __name__)


@bp.get("/<route>")
def serve_file(route: str) -> Response:
    """One page of a data file's records in event-time order."""
    standin = get_standin()
    datafile = standin.catalog.get(route)
    if datafile is None:
        raise NotFound(f"no route /{route}")
    page_request = parse_file_request(route, request.args, standin.limits)
    if datafile.time_field is None and page_request.window.bounded:
        field = "since" if page_request.window.since_us is not None else "until"
        raise BadParameter.one(
            field, f"/{route} has no event-time field to window on: {datafile.unwindowed_reason}"
        )
    page = file_page(datafile.keys, page_request.window, page_request.after, page_request.limit)
    records = datafile.records[page.start : page.end]
    next_cursor = None
    if page.next_after is not None:
        next_cursor = encode_cursor(route, page_request.window, page.next_after)
    log.info(
        "standin page route=/%s since=%s until=%s limit=%d resumed=%s count=%d more=%s",
        route,
        format_us(page_request.window.since_us),
        format_us(page_request.window.until_us),
        page_request.limit,
        page_request.after is not None,
        len(records),
        next_cursor is not None,
    )
    return jsonify(
        {datafile.records_key: list(records), "count": len(records), "next_cursor": next_cursor}
    )
