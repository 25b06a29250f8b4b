"""Bytes to a JSON value, and bytes to something storable when they are not (pure)."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any


class DecodeError(ValueError):
    """The value cannot be read as one JSON document; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # A key given twice has no single meaning; json.loads would silently keep the last one.
    found = dict(pairs)
    if len(found) != len(pairs):  # rare: only then find the first repeated key, in Python
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"duplicate key {key[:64]!r}")
            seen.add(key)
    return found


# One decoder for every message: json.loads with options builds a new one per call.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant, object_pairs_hook=_unique_keys)


def decode_value(value: bytes | None, max_bytes: int) -> Any:
    """The message value as JSON (UTF-8, no NaN/Infinity, no duplicate keys, at most max_bytes)."""
    if value is None:
        raise DecodeError("value is empty (a tombstone)")
    if len(value) > max_bytes:
        raise DecodeError(f"value larger than {max_bytes} bytes")
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        raise DecodeError("value is not UTF-8") from None
    if not text or text.isspace():
        raise DecodeError("value is blank")
    try:
        if text.startswith("\ufeff"):  # what json.loads checks before decoding
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
        return _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        # exc.msg without the position: the reason must be the same for the same kind of fault.
        raise DecodeError(f"value is not JSON: {exc.msg}") from None
    except ValueError as exc:
        raise DecodeError(f"value is not JSON: {exc}") from None
    except RecursionError:
        raise DecodeError("value is not JSON: nested too deeply") from None


def storable_bytes(data: bytes, max_bytes: int) -> dict[str, Any]:
    """Bytes as {text | base64, size, truncated[, sha256]}: text where UTF-8, at most max_bytes."""
    truncated = len(data) > max_bytes
    result: dict[str, Any] = {"size": len(data), "truncated": truncated}
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        result["base64"] = base64.b64encode(data[:max_bytes]).decode("ascii")
    else:
        # A cut may split a multi-byte character: the partial tail is dropped, not mangled.
        result["text"] = data[:max_bytes].decode("utf-8", errors="ignore")
    if truncated:
        # The prefix alone cannot identify the value; the digest can.
        result["sha256"] = hashlib.sha256(data).hexdigest()
    return result


def text_or_base64(data: bytes | None) -> str | None:
    """Short bytes (keys, header values) as text, or "base64:..." when they are not UTF-8."""
    if data is None:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(data).decode("ascii")
