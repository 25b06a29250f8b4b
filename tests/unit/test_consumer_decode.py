"""Bytes to JSON, and bytes kept readable in `rejected` when they are not JSON."""

from __future__ import annotations

import base64
import hashlib

import pytest

from consumer.decode import DecodeError, decode_value, storable_bytes, text_or_base64


def decode_reason(value: bytes | None, max_bytes: int = 1000) -> str:
    with pytest.raises(DecodeError) as info:
        decode_value(value, max_bytes)
    return info.value.reason


def test_compact_json_object_decodes() -> None:
    assert decode_value(b'{"a":1,"b":[true,null]}', 100) == {"a": 1, "b": [True, None]}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "value is empty (a tombstone)"),
        (b"", "value is blank"),
        (b"  \n", "value is blank"),
        (b"\xff\xfe{}", "value is not UTF-8"),
        (b"not json", "value is not JSON: Expecting value"),
        (b'{"a": 1', "value is not JSON: Expecting ',' delimiter"),
        (b'{"a": NaN}', "value is not JSON: NaN is not valid JSON"),
        (b'{"a": Infinity}', "value is not JSON: Infinity is not valid JSON"),
        (b'{"a": 1, "a": 2}', "value is not JSON: duplicate key 'a'"),
        (b"[" * 100_000 + b"]" * 100_000, "value is not JSON: nested too deeply"),
    ],
)
def test_undecodable_values_get_a_stable_reason(value: bytes | None, expected: str) -> None:
    assert decode_reason(value, 1_000_000) == expected


def test_value_over_the_size_limit_is_rejected_before_parsing() -> None:
    assert decode_reason(b"{}" + b" " * 2000, max_bytes=1000) == "value larger than 1000 bytes"


def test_text_is_kept_as_text() -> None:
    assert storable_bytes(b"not json", 100) == {"size": 8, "truncated": False, "text": "not json"}


def test_binary_is_kept_as_base64() -> None:
    data = b"\x00\xff\xfe"
    assert storable_bytes(data, 100) == {
        "size": 3,
        "truncated": False,
        "base64": base64.b64encode(data).decode(),
    }


def test_huge_value_is_cut_and_identified_by_digest() -> None:
    data = b"x" * 5000
    kept = storable_bytes(data, 1000)
    assert kept["text"] == "x" * 1000
    assert kept["size"] == 5000
    assert kept["truncated"] is True
    assert kept["sha256"] == hashlib.sha256(data).hexdigest()


def test_cut_inside_a_multibyte_character_drops_the_partial_tail() -> None:
    kept = storable_bytes("é".encode() * 10, 5)
    assert kept["text"] == "éé"


def test_keys_and_headers_as_text_or_base64() -> None:
    assert text_or_base64(None) is None
    assert text_or_base64(b"dev|ts") == "dev|ts"
    assert text_or_base64(b"\xff") == "base64:/w=="
