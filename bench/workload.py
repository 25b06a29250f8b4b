"""What the benchmarks send: user events shaped as the events API serves them, ~1% invalid (pure).

Readings come from the device simulator itself (`producer.simulator`, ~1% malformed by design);
this module adds the second topic the consumer reads and a deterministic merge of the two.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

from producer.events.ids import RANDOM_BITS, encode_id
from producer.events.times import format_ms, format_utc, to_us

T = TypeVar("T")

EVENT_TYPES = ("page_view", "click", "add_to_cart", "purchase", "search")
# The ways a bench event breaks its contract, in turn (each is a validate-stage rejection).
INVALID_KINDS = ("missing_user_id", "bad_event_type", "numeric_occurred_at", "unknown_field")
# One event in INVALID_EVERY is invalid: 1%, the simulator's own defect rate.
INVALID_EVERY = 100


def is_invalid_event(index: int, invalid_every: int = INVALID_EVERY) -> bool:
    """Whether bench event number `index` is one of the deliberately invalid ones."""
    return invalid_every > 0 and index % invalid_every == invalid_every - 1


def user_event(index: int, received_at: datetime, invalid_every: int = INVALID_EVERY) -> dict:
    """Bench event number `index`, received at `received_at` (aware), maybe deliberately invalid.

    The id is the events API's layout (time-ordered, 26 characters) with the index as its random
    part, so ids are unique and the same index always gives the same event.
    """
    ms = to_us(received_at) // 1000
    event: dict[str, Any] = {
        "event_id": encode_id((ms << RANDOM_BITS) | index),
        "user_id": f"u-{index % 997:04d}",
        "event_type": EVENT_TYPES[index % len(EVENT_TYPES)],
        "occurred_at": format_utc(received_at - timedelta(milliseconds=250 + index % 750)),
        "properties": {"path": f"/catalog/{index % 211}", "session": f"s-{index % 4099}"},
        "received_at": format_ms(ms),
    }
    if is_invalid_event(index, invalid_every):
        kind = INVALID_KINDS[(index // invalid_every) % len(INVALID_KINDS)]
        if kind == "missing_user_id":
            del event["user_id"]
        elif kind == "bad_event_type":
            event["event_type"] = "Not A Type"
        elif kind == "numeric_occurred_at":
            event["occurred_at"] = 1_700_000_000
        else:
            event["referrer"] = "https://example.invalid/"
    return event


def user_events(
    n: int, since: datetime, per_second: int = 50, invalid_every: int = INVALID_EVERY
) -> list[dict]:
    """`n` bench events received from `since` on at `per_second` events per second."""
    if per_second < 1:
        raise ValueError(f"per_second must be positive, got {per_second}")
    step = timedelta(microseconds=1_000_000 // per_second)
    return [user_event(i, since + i * step, invalid_every) for i in range(n)]


def interleave(first: Sequence[T], second: Sequence[T]) -> list[T]:
    """Both sequences merged in proportion (each keeps its order), as a poller of two topics sees.

    Item i of a sequence of length n sits at position (i + 0.5) / n; ties go to `first`.
    """
    merged: list[T] = []
    i = j = 0
    while i < len(first) or j < len(second):
        take_first = j >= len(second) or (
            i < len(first) and (2 * i + 1) * len(second) <= (2 * j + 1) * len(first)
        )
        if take_first:
            merged.append(first[i])
            i += 1
        else:
            merged.append(second[j])
            j += 1
    return merged
