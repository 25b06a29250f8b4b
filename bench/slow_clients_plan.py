"""The slow-clients bench's plan and arithmetic (pure): trial order, slow requests, ratios."""

from __future__ import annotations

from collections.abc import Sequence

NO_SLOW = "no_slow"
SLOW = "slow"
# Half the slow sockets trickle their headers, half their body.
SLOW_KINDS = ("headers", "body")
# A body far larger than a trickle sends before it is cut off.
SLOW_BODY_BYTES = 100_000


def trial_order(trials: int) -> list[str]:
    """Arms of `trials` interleaved pairs, alternating which goes first (no_slow, slow, slow, ...).

    Alternating cancels a steady drift of the machine (a neighbour's load, a growing database)
    between the two arms of each pair.
    """
    if trials < 1:
        raise ValueError(f"need at least one trial, got {trials}")
    order: list[str] = []
    for trial in range(trials):
        pair = [NO_SLOW, SLOW] if trial % 2 == 0 else [SLOW, NO_SLOW]
        order.extend(pair)
    return order


def paired_ratios(no_slow: Sequence[float], slow: Sequence[float]) -> list[float]:
    """slow ÷ no_slow of each trial; ValueError for unpaired trials or a baseline of nothing."""
    if len(no_slow) != len(slow):
        raise ValueError(f"{len(no_slow)} trials without slow sockets, {len(slow)} with")
    if any(base <= 0 for base in no_slow):
        raise ValueError("a trial without slow sockets accepted nothing: no ratio to take")
    return [with_slow / base for base, with_slow in zip(no_slow, slow, strict=True)]


def slow_kind(index: int) -> str:
    """What the slow socket number `index` trickles."""
    return SLOW_KINDS[index % len(SLOW_KINDS)]


def slow_request_start(kind: str, api_key: str) -> bytes:
    """What a slow socket sends at once; it then sends one byte a tick and never finishes.

    A header trickler stops inside its headers; a body trickler sends a whole valid head of a
    POST /events (the API key included, so the app reads the body) and then its body.
    """
    if kind == "headers":
        return b"GET /healthz HTTP/1.1\r\nHost: bench\r\nX-Slow: "
    if kind == "body":
        return (
            "POST /events HTTP/1.1\r\nHost: bench\r\n"
            f"X-API-Key: {api_key}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {SLOW_BODY_BYTES}\r\n\r\n"
        ).encode("latin-1")
    raise ValueError(f"unknown slow kind {kind!r}; use one of {', '.join(SLOW_KINDS)}")


def slow_byte(kind: str) -> bytes:
    """The byte a slow socket of `kind` trickles (valid where it goes: a header value, JSON)."""
    return b"a" if kind == "headers" else b" "


def cutoff_outcome(received: bytes) -> str:
    """How the server cut a slow socket off: 'answered_<status>' or 'closed' (no answer)."""
    if not received.startswith(b"HTTP/1."):
        return "closed"
    parts = received.split(b" ", 2)
    status = parts[1].decode("latin-1", "replace") if len(parts) > 1 else "?"
    return f"answered_{status}"
