"""Event ids: 26-character, time-ordered, unique strings in the ULID layout (pure).

An id is a 128-bit integer written as 26 Crockford base32 characters: the top 48 bits are the
milliseconds since the Unix epoch, the low 80 bits are random. The alphabet is in ASCII order and
the length is fixed, so comparing ids as strings compares them as numbers, and so by time.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
ID_LENGTH = 26
TIME_BITS = 48
RANDOM_BITS = 80
MAX_TIME_MS = (1 << TIME_BITS) - 1
_MAX_VALUE = (1 << (TIME_BITS + RANDOM_BITS)) - 1
_DIGITS = {char: value for value, char in enumerate(ALPHABET)}


def encode_id(value: int) -> str:
    """The 26-character text of a 128-bit id value."""
    if not 0 <= value <= _MAX_VALUE:
        raise ValueError(f"id value out of range: {value}")
    chars = []
    for _ in range(ID_LENGTH):
        chars.append(ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def decode_id(event_id: str) -> int:
    """The 128-bit value of an id; ValueError when the text is not one."""
    if len(event_id) != ID_LENGTH:
        raise ValueError(f"an event id has {ID_LENGTH} characters, got {len(event_id)}")
    value = 0
    for char in event_id:
        digit = _DIGITS.get(char)
        if digit is None:
            raise ValueError(f"{char!r} is not an upper-case Crockford base32 digit")
        value = (value << 5) | digit
    if value > _MAX_VALUE:
        raise ValueError("an event id starts with 0-7")
    return value


def is_event_id(text: str) -> bool:
    """Whether the text is a well-formed event id."""
    try:
        decode_id(text)
    except ValueError:
        return False
    return True


def id_time_ms(event_id: str) -> int:
    """The epoch milliseconds an id carries."""
    return decode_id(event_id) >> RANDOM_BITS


def first_id_at(ms: int) -> str:
    """The smallest id carrying `ms`: ids of events at or after ms compare >= it."""
    if not 0 <= ms <= MAX_TIME_MS:
        raise ValueError(f"milliseconds out of the id range: {ms}")
    return encode_id(ms << RANDOM_BITS)


def next_event_id(
    now_ms: int, last_id: str | None, randbits: Callable[[int], int] = secrets.randbits
) -> str:
    """An id greater than `last_id`: at `now_ms` with fresh random bits, or `last_id` + 1.

    The +1 branch covers ids made in the same millisecond and clocks that went backwards, so ids
    keep increasing whatever the clock does; the time they carry then stays at the last id's
    millisecond (or moves one on, in the one-in-2^80 case that the random part overflows).
    """
    if not 0 <= now_ms <= MAX_TIME_MS:
        raise ValueError(f"now_ms out of the id range: {now_ms}")
    if last_id is not None:
        last = decode_id(last_id)
        if now_ms <= last >> RANDOM_BITS:
            if last == _MAX_VALUE:
                raise OverflowError("no event id after the largest one")
            return encode_id(last + 1)
    return encode_id((now_ms << RANDOM_BITS) | randbits(RANDOM_BITS))
