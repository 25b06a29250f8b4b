"""Query parameters of GET /events, checked into an id range, and its opaque cursor (pure).

`received_at` is the time an event's id carries (see store.py), so the window
since <= received_at < until is exactly a range of ids, and paging is `event_id > cursor`.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from producer.events.ids import MAX_TIME_MS, first_id_at, is_event_id
from producer.events.times import ceil_ms, format_utc, parse_iso
from producer.events.validation import InvalidInput, Problem

# Windows that ended longer ago than this are complete: no write lasts that long.
SETTLE_MS = 60_000
CURSOR_PREFIX = "e1:"  # versions the cursor, so its content can change without breaking old ones


@dataclass(frozen=True)
class PageRequest:
    """One page of the window: ids in [lower, upper), after `after`, at most `limit` of them."""

    lower: str | None  # inclusive
    upper: str | None  # exclusive
    after: str | None  # exclusive
    limit: int
    empty: bool = False  # the window holds no possible id (e.g. until before 1970)
    until_ms: int | None = None  # the window's end, for `needs_settling`


def encode_cursor(event_id: str) -> str:
    """The cursor that continues after `event_id`: url-safe base64, no padding."""
    raw = (CURSOR_PREFIX + event_id).encode("ascii")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> str:
    """The event id a cursor continues after; ValueError when this API did not issue it."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        text = base64.b64decode(padded, altchars=b"-_", validate=True).decode("ascii")
    except (binascii.Error, UnicodeError, ValueError):
        raise ValueError("not a cursor issued by this API") from None
    event_id = text.removeprefix(CURSOR_PREFIX)
    if not text.startswith(CURSOR_PREFIX) or not is_event_id(event_id):
        raise ValueError("not a cursor issued by this API")
    return event_id


def _instant(args: Mapping[str, str], name: str, problems: list[Problem]) -> datetime | None:
    text = args.get(name)
    if text is None:
        return None
    try:
        moment = parse_iso(text.strip())
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        moment.astimezone(UTC)
        return moment
    except (ValueError, OverflowError):
        hint = " (send '+' as %2B in a query string)" if " " in text.strip() else ""
        problems.append(Problem(name, f"{text[:64]!r} is not an ISO-8601 date-time{hint}"))
        return None


def _limit(args: Mapping[str, str], default: int, maximum: int, problems: list[Problem]) -> int:
    text = args.get("limit")
    if text is None:
        return default
    try:
        value = int(text.strip())
    except ValueError:
        value = 0
    if not 1 <= value <= maximum:
        problems.append(Problem("limit", f"{text[:32]!r} is not an integer from 1 to {maximum}"))
    return value


def _id_range(
    since: datetime | None, until: datetime | None
) -> tuple[str | None, str | None, bool]:
    """(lower, upper, empty): the ids of since <= id time < until, at millisecond precision."""
    lower = upper = None
    if since is not None:
        ms = ceil_ms(since)
        if ms > MAX_TIME_MS:
            return None, None, True
        if ms > 0:
            lower = first_id_at(ms)
    if until is not None:
        ms = ceil_ms(until)
        if ms <= 0:
            return None, None, True
        if ms <= MAX_TIME_MS:
            upper = first_id_at(ms)
    return lower, upper, False


def parse_page_request(args: Mapping[str, str], default_limit: int, max_limit: int) -> PageRequest:
    """since/until/cursor/limit as an id range; InvalidInput naming every bad parameter."""
    problems: list[Problem] = []
    since = _instant(args, "since", problems)
    until = _instant(args, "until", problems)
    limit = _limit(args, default_limit, max_limit, problems)
    after = None
    if (cursor := args.get("cursor")) is not None:
        try:
            after = decode_cursor(cursor.strip())
        except ValueError as exc:
            problems.append(Problem("cursor", str(exc)))
    if since is not None and until is not None and since > until:
        problems.append(Problem("since", f"is after until ({format_utc(until)})"))
    if problems:
        raise InvalidInput(problems)
    lower, upper, empty = _id_range(since, until)
    until_ms = ceil_ms(until) if until is not None else None
    return PageRequest(lower, upper, after, limit, empty, until_ms)


def needs_settling(page: PageRequest, now_ms: int, settle_ms: int = SETTLE_MS) -> bool:
    """Whether the window ended so recently that a write dated inside it may still be committing.

    A writer takes its received_at when it gets the write lock and commits a moment later; a read
    that first waits for the writers in flight sees every event of a window that has ended, because
    any later writer is dated after the window (now >= until).
    """
    return page.until_ms is not None and page.until_ms > now_ms - settle_ms
