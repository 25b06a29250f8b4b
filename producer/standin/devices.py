"""Blueprint: `/devices`, the deterministic IoT simulator served for any [since, until) window."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, jsonify, request

from producer.simulator import reading
from producer.standin.paging import device_page, encode_cursor, parse_device_request
from producer.standin.query import format_us
from producer.standin.state import DEVICES_ROUTE, get_standin

log = logging.getLogger(__name__)
bp = Blueprint("devices", __name__)


@bp.get(f"/{DEVICES_ROUTE}")
def serve_devices() -> Response:
    """One page of simulator readings ordered by (ts, device index)."""
    standin = get_standin()
    page_request = parse_device_request(
        DEVICES_ROUTE, request.args, standin.limits, standin.default_devices
    )
    devices = page_request.devices or standin.default_devices
    page = device_page(page_request.window, devices, page_request.after, page_request.limit)
    records = [reading(index, second) for second, index in page.positions]
    next_cursor = None
    if page.next_after is not None:
        next_cursor = encode_cursor(DEVICES_ROUTE, page_request.window, page.next_after, devices)
    log.info(
        "standin page route=/%s since=%s until=%s devices=%d limit=%d resumed=%s count=%d more=%s",
        DEVICES_ROUTE,
        format_us(page_request.window.since_us),
        format_us(page_request.window.until_us),
        devices,
        page_request.limit,
        page_request.after is not None,
        len(records),
        next_cursor is not None,
    )
    return jsonify(records=records, count=len(records), next_cursor=next_cursor)
