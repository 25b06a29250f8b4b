"""Whatever arrives, the pure pipeline answers with a document or a rejection, never a crash."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from typing import Any

import bson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.messages import InboundMessage
from consumer.mongo_store import unencodable
from consumer.pipeline import PipelineContext, Rejected, Stored, process_message, sources_by_topic
from headwater.sources import load_sources

NOW = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)
HEADERS = (("schema_version", b"1"),)
TOPICS = ("devices", "machine-metrics", "work-orders", "user-events", "matches")
CTX = PipelineContext(
    topic_map={t: t for t in TOPICS},
    sources=sources_by_topic(load_sources().values()),
)
GOOD: dict[str, dict[str, Any]] = {
    "devices": {"device_id": "thermostat-000", "device_type": "thermostat",
                "sensor": "temperature", "value": 21.5, "unit": "C", "ts": "2026-11-23T09:00:00Z"},
    "machine-metrics": {"id": 19, "val": 8073.41, "time": 1624320043},
    "work-orders": {"time": 1624320000, "product": 0, "production": 20.5},
    "user-events": {"event_id": "01JAZ3V9Q8W4B5C6D7E8F9G0H1", "user_id": "user-1",
                    "event_type": "click", "occurred_at": None, "properties": {},
                    "received_at": "2026-11-23T09:00:00Z"},
    "matches": {"id": 540001, "utcDate": "2025-08-16T11:30:00Z", "status": "FINISHED",
                "score": {"winner": None}},
}  # fmt: skip
ODD_VALUES: list[Any] = [
    None, True, 0, -1, 1e308, -1e308, 2**70, 253402300799, 253402300800, 1e20, "", " ",
    "temperature", "C", "0" * 26, "01JAZ3V9Q8W4B5C6D7E8F9G0H1", "9999-12-31T23:59:59-01:00",
    "0001-01-01T00:00:00+01:00", "2026-11-23T09:00:00Z", "2026-11-23", "Z", "\u0000", "é" * 300,
    [], [1, [2]], {}, {"a": {"b": None}}, {"x\u0000": 1}, {"$gt": 1}, 21.5, 0.1, "qa-1",
]  # fmt: skip


def random_payload(rng: random.Random, topic: str) -> Any:
    if rng.random() < 0.05:
        return rng.choice(ODD_VALUES)
    record = {
        name: good if rng.random() < 0.8 else rng.choice(ODD_VALUES)
        for name, good in GOOD[topic].items()
        if rng.random() < 0.95
    }
    if rng.random() < 0.05:
        record[rng.choice(["extra", "$x", "a.b"])] = rng.choice(ODD_VALUES)
    return record


@pytest.mark.parametrize("seed", range(5))
def test_random_records_always_get_an_outcome_and_stored_ones_encode_as_bson(seed: int) -> None:
    rng = random.Random(seed)
    outcomes = {"stored": 0, "rejected": 0}
    for offset in range(2000):
        topic = rng.choice(TOPICS)
        value = json.dumps(random_payload(rng, topic)).encode()
        version = rng.choice([b"1", b"1", b"1", b"2", b"x", None])
        headers = (("schema_version", version),) if version is not None else ()
        outcome = process_message(InboundMessage(topic, 0, offset, None, value, headers), CTX, NOW)
        assert isinstance(outcome, Stored | Rejected)
        if isinstance(outcome, Stored):
            outcomes["stored"] += 1
            document = {"_id": outcome.doc_id, **outcome.document}
            # Free-form values (properties, match extras) may still be unstorable; the store
            # adapter quarantines those (tests/unit/test_consumer_mongo_store.py).
            if not unencodable("c", {outcome.doc_id: document}):
                bson.encode(document)
        else:
            outcomes["rejected"] += 1
            assert outcome.reason and not outcome.reason.startswith("could not be processed")
            bson.encode({"_id": outcome.doc_id, **outcome.document})
    assert outcomes["rejected"] > 100 and outcomes["stored"] > 100


# ---- property-based: any JSON value, any bytes ------------------------------------------------

# Text of any code point, lone surrogates included (JSON can carry them as \ud800 escapes).
ANY_TEXT = st.text(st.characters(codec=None), max_size=12)
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | ANY_TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(ANY_TEXT, inner, max_size=4),
    max_leaves=20,
)


def _assert_outcome(topic: str, value: bytes, headers: tuple) -> None:
    outcome = process_message(InboundMessage(topic, 0, 0, None, value, headers), CTX, NOW)
    assert isinstance(outcome, Stored | Rejected)
    if isinstance(outcome, Rejected):
        assert outcome.reason and not outcome.reason.startswith("could not be processed")
        bson.encode({"_id": outcome.doc_id, **outcome.document})
    else:
        document = {"_id": outcome.doc_id, **outcome.document}
        if not unencodable("c", {outcome.doc_id: document}):
            bson.encode(document)


@settings(max_examples=300, derandomize=True, deadline=None)
@given(topic=st.sampled_from(TOPICS), data=st.data())
def test_any_json_in_a_records_fields_gets_an_outcome(topic: str, data: st.DataObject) -> None:
    record = dict(GOOD[topic])
    for name in data.draw(st.sets(st.sampled_from(sorted(record)), max_size=3)):
        record[name] = data.draw(JSON_VALUES)
    extra = data.draw(st.dictionaries(ANY_TEXT, JSON_VALUES, max_size=2))
    record.update(extra)
    # ensure_ascii: lone surrogates travel as \\uXXXX escapes, as a real producer can send them
    _assert_outcome(topic, json.dumps(record).encode(), (("schema_version", b"1"),))


@settings(max_examples=300, derandomize=True, deadline=None)
@given(topic=st.sampled_from(TOPICS), value=st.binary(max_size=200))
def test_any_bytes_get_an_outcome(topic: str, value: bytes) -> None:
    _assert_outcome(topic, value, (("schema_version", b"1"),))


def test_the_events_apis_limits_hold_for_records_straight_from_kafka() -> None:
    good = GOOD["user-events"]
    huge = {**good, "properties": {"blob": "x" * 900_000}}
    out = process_message(
        InboundMessage("user-events", 0, 0, None, json.dumps(huge).encode(), HEADERS), CTX, NOW
    )
    assert isinstance(out, Rejected)
    assert (out.stage, out.reason) == (
        "validate",
        "properties: is 900011 bytes as JSON, at most 16384 allowed",
    )
    future = {**good, "received_at": "2099-01-01T00:00:00Z"}
    out = process_message(
        InboundMessage("user-events", 0, 1, None, json.dumps(future).encode(), HEADERS), CTX, NOW
    )
    assert isinstance(out, Rejected)
    assert (out.stage, out.reason) == ("filter", "received_at more than 300 s in the future")
    keyed = {**good, "properties": {"a": {"$where": 1}}}
    out = process_message(
        InboundMessage("user-events", 0, 2, None, json.dumps(keyed).encode(), HEADERS), CTX, NOW
    )
    assert isinstance(out, Rejected)
    assert out.reason == "properties: a: key '$where' may not start with '$' or contain '.'"
    many = {**good, "properties": {f"k{i}": i for i in range(65)}}
    out = process_message(
        InboundMessage("user-events", 0, 3, None, json.dumps(many).encode(), HEADERS), CTX, NOW
    )
    assert isinstance(out, Rejected) and out.reason == "properties: has 65 keys, at most 64 allowed"
