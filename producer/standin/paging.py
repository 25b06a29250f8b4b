"""Cursors and pages: which slice of a route's records one request gets (pure).

A cursor is url-safe base64 of JSON naming the route, the window (and device count) it was issued
for, and the position of the last record served. The server keeps no per-client state, and a page
costs O(log n + page) on files and O(page) on the simulator, never O(offset).
"""

from __future__ import annotations

import base64
import binascii
import json
from bisect import bisect_left, bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from producer.standin.query import (
    MICROS,
    BadParameter,
    Limits,
    Window,
    gather,
    parse_devices,
    parse_limit,
    parse_window,
)

CURSOR_VERSION = 1
Position = tuple[int, int]


@dataclass(frozen=True)
class PageRequest:
    """A checked request for one page: window, page size, and where the previous page ended."""

    route: str
    window: Window
    limit: int
    after: Position | None
    devices: int | None = None


@dataclass(frozen=True)
class FilePage:
    """Records [start, end) of a file's ordered records, and the cursor position after them."""

    start: int
    end: int
    next_after: Position | None


@dataclass(frozen=True)
class DevicePage:
    """(epoch second, device index) of each reading on the page, and the position after them."""

    positions: list[Position]
    next_after: Position | None


# ---- cursors -----------------------------------------------------------------------------------


def encode_cursor(route: str, window: Window, after: Position, devices: int | None = None) -> str:
    """An opaque cursor that resumes `route`'s `window` after position `after`."""
    payload: dict[str, Any] = {
        "v": CURSOR_VERSION,
        "r": route,
        "w": window.as_list(),
        "a": list(after),
    }
    if devices is not None:
        payload["n"] = devices
    raw = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(token: str) -> dict[str, Any]:
    """The payload of a cursor this server issued; BadParameter naming `cursor` otherwise."""
    garbage = BadParameter.one("cursor", "not a cursor issued by this server")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        payload = json.loads(raw)
    except (binascii.Error, ValueError):
        raise garbage from None
    if not isinstance(payload, dict) or payload.get("v") != CURSOR_VERSION:
        raise garbage
    after = payload.get("a")
    if not (
        isinstance(payload.get("r"), str)
        and isinstance(after, list)
        and len(after) == 2
        and all(type(x) is int for x in after)
    ):
        raise garbage
    return payload


def cursor_position(token: str, route: str, window: Window, devices: int | None = None) -> Position:
    """The position a cursor resumes after, if it was issued for this route, window and devices."""
    payload = decode_cursor(token)
    if payload["r"] != route or payload.get("w") != window.as_list():
        raise BadParameter.one("cursor", "issued for another route or window than this request")
    if payload.get("n") != devices:
        raise BadParameter.one("cursor", "issued for another number of devices")
    first, second = payload["a"]
    return first, second


# ---- request parsing -----------------------------------------------------------------------------


def parse_file_request(route: str, args: Mapping[str, str], limits: Limits) -> PageRequest:
    """A page request on a file route (window optional); BadParameter lists every problem."""
    window, limit = gather(
        lambda: parse_window(args, required=False), lambda: parse_limit(args, limits)
    )
    token = args.get("cursor")
    after = cursor_position(token, route, window) if token is not None else None
    return PageRequest(route, window, limit, after)


def parse_device_request(
    route: str, args: Mapping[str, str], limits: Limits, default_devices: int
) -> PageRequest:
    """A page request on the simulator route (window required)."""
    window, limit, devices = gather(
        lambda: parse_window(args, required=True),
        lambda: parse_limit(args, limits),
        lambda: parse_devices(args, default_devices),
    )
    token = args.get("cursor")
    after = None
    if token is not None:
        after = cursor_position(token, route, window, devices)
        first_s, end_s = device_seconds(window)
        if not (first_s <= after[0] < end_s and 0 <= after[1] < devices):
            raise BadParameter.one("cursor", "position outside this request's window")
    return PageRequest(route, window, limit, after, devices)


# ---- pages -------------------------------------------------------------------------------------


def window_range(keys: Sequence[Position], window: Window) -> tuple[int, int]:
    """Indices [lo, hi) of the (event time us, file index) keys inside the window."""
    lo = 0 if window.since_us is None else bisect_left(keys, (window.since_us, -1))
    hi = len(keys) if window.until_us is None else bisect_left(keys, (window.until_us, -1))
    return lo, max(lo, hi)


def file_page(
    keys: Sequence[Position], window: Window, after: Position | None, limit: int
) -> FilePage:
    """The slice of sorted keys one page serves; next_after is None on the last page."""
    lo, hi = window_range(keys, window)
    start = lo if after is None else max(lo, bisect_right(keys, after))
    start = min(start, hi)
    end = min(hi, start + limit)
    next_after = keys[end - 1] if end < hi else None
    return FilePage(start, end, next_after)


def device_seconds(window: Window) -> tuple[int, int]:
    """Whole seconds [first, end) with since <= s < until (a bounded window)."""
    if window.since_us is None or window.until_us is None:
        raise ValueError("the simulator needs a bounded window")
    # Ceiling division: the first whole second at or after each bound.
    return -(-window.since_us // MICROS), -(-window.until_us // MICROS)


def device_page(window: Window, devices: int, after: Position | None, limit: int) -> DevicePage:
    """Positions (epoch second, device index) of one simulator page, in (ts, device) order."""
    first_s, end_s = device_seconds(window)
    total = max(0, end_s - first_s) * devices
    start = 0 if after is None else (after[0] - first_s) * devices + after[1] + 1
    start = min(max(start, 0), total)
    end = min(total, start + limit)
    positions = [(first_s + p // devices, p % devices) for p in range(start, end)]
    next_after = positions[-1] if end < total else None
    return DevicePage(positions, next_after)
