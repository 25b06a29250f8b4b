"""Instants as the events API writes and reads them: ISO-8601, UTC, with Z (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def parse_iso(text: str) -> datetime:
    """An ISO-8601 date-time (aware, or naive when it has no offset); ValueError otherwise."""
    # fromisoformat also takes a bare date; an instant needs its time of day.
    if "T" not in text.upper() and " " not in text:
        raise ValueError(f"{text!r} has no time of day")
    return datetime.fromisoformat(text)


def format_utc(moment: datetime) -> str:
    """An aware datetime in UTC with Z: milliseconds, or microseconds when it has them."""
    utc = moment.astimezone(UTC)
    spec = "milliseconds" if utc.microsecond % 1000 == 0 else "microseconds"
    return utc.replace(tzinfo=None).isoformat(timespec=spec) + "Z"


def format_ms(ms: int) -> str:
    """Epoch milliseconds as ISO-8601 UTC with Z, at millisecond precision."""
    return format_utc(EPOCH + timedelta(milliseconds=ms))


def to_us(moment: datetime) -> int:
    """Epoch microseconds of an aware datetime (exact, unlike a float timestamp)."""
    return (moment - EPOCH) // timedelta(microseconds=1)


def ceil_ms(moment: datetime) -> int:
    """The first whole epoch millisecond at or after `moment` (aware)."""
    return -(-to_us(moment) // 1000)


def now_utc() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)
