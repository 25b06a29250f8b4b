"""The consumer's documents pass the $jsonSchema validators that db/ installs.

Real MongoDB enforces them and the embedded server ignores them, so a mismatch is caught here.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from consumer.messages import InboundMessage
from consumer.pipeline import PipelineContext, plan_batch, sources_by_topic
from db.schema import current_schema
from headwater.contracts import Collections
from headwater.sources import load_sources
from producer.simulator import readings

SCHEMA = current_schema()

NOW = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)


def bson_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int" if -(2**31) <= value < 2**31 else "long"
    if isinstance(value, float):
        return "double"
    if isinstance(value, str):
        return "string"
    if isinstance(value, datetime):
        return "date"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    raise TypeError(type(value))


def violations(schema: dict[str, Any], value: Any, path: str = "") -> list[str]:
    """The subset of $jsonSchema db/schema.py uses: bsonType, required, properties, enum,
    minimum, minLength."""
    problems: list[str] = []
    if "bsonType" in schema:
        allowed = schema["bsonType"]
        allowed = [allowed] if isinstance(allowed, str) else allowed
        if bson_type(value) not in allowed:
            return [f"{path}: {bson_type(value)} not in {allowed}"]
    if "enum" in schema and value not in schema["enum"]:
        problems.append(f"{path}: {value!r} not in enum")
    if "minimum" in schema and value < schema["minimum"]:
        problems.append(f"{path}: below minimum")
    if "minLength" in schema and len(value) < schema["minLength"]:
        problems.append(f"{path}: too short")
    if isinstance(value, dict):
        problems += [f"{path}.{k}: required" for k in schema.get("required", []) if k not in value]
        for key, sub in schema.get("properties", {}).items():
            if key in value:
                problems += violations(sub, value[key], f"{path}.{key}")
    return problems


def test_the_checker_itself_catches_a_bad_reading() -> None:
    schema = SCHEMA.validators[Collections.READINGS]["$jsonSchema"]
    bad = {"_id": "x", "device_id": "d", "sensor": "s", "value": "1", "unit": "C", "source": "s"}
    assert violations(schema, bad) == [
        ".ts: required",
        ".ingest: required",
        ".value: string not in ['double', 'int', 'long', 'decimal']",
    ]


def all_kinds_of_messages() -> list[InboundMessage]:
    headers = (("schema_version", b"1"), ("run_id", b"r"))
    payloads: list[tuple[str, Any]] = [
        ("devices", r) for r in readings(NOW, NOW.replace(minute=31), 8)
    ]
    payloads += [
        ("machine-metrics", {"id": 19, "val": 8073, "time": 1624320043}),
        ("work-orders", {"time": 1624320000, "product": 0, "production": 20.5}),
        ("matches", {"id": 540001, "utcDate": "2025-08-16T11:30:00Z", "status": "FINISHED"}),
        (
            "user-events",
            {
                "event_id": "01JAZ3V9Q8W4B5C6D7E8F9G0H1",
                "user_id": "user-42",
                "event_type": "page.view",
                "occurred_at": None,
                "properties": {"a": [1, {"b": None}]},
                "received_at": "2026-11-23T09:00:00.123Z",
            },
        ),
        ("devices", None),
    ]
    msgs = []
    for offset, (topic, payload) in enumerate(payloads):
        raw = None if payload is None else json.dumps(payload).encode()
        msgs.append(InboundMessage(topic, 0, offset + 2**31, b"k", raw, headers, None))
    msgs.append(InboundMessage("devices", 0, 1, None, b"\xff", (), None))
    return msgs


def test_every_document_the_consumer_writes_passes_its_collection_validator() -> None:
    topics = ("devices", "machine-metrics", "work-orders", "matches", "user-events")
    ctx = PipelineContext(
        topic_map={t: t for t in topics},
        sources=sources_by_topic(load_sources().values()),
    )
    plan = plan_batch(all_kinds_of_messages(), ctx, NOW)
    assert set(plan.upserts) == {"readings", "work_orders", "matches", "user_events"}
    assert plan.counts["rejected"] >= 3  # the tombstone, the binary value, malformed readings
    for collection, docs in [*plan.upserts.items(), (Collections.REJECTED, plan.rejections)]:
        schema = SCHEMA.validators[collection]["$jsonSchema"]
        for doc_id, doc in docs.items():
            assert violations(schema, {"_id": doc_id, **doc}) == [], (collection, doc_id)


def test_a_rollup_document_of_the_agreed_shape_passes_its_validator() -> None:
    rollup = {
        "_id": "thermostat-000|temperature|1m|2026-11-23T09:00:00Z",
        "device_id": "thermostat-000",
        "sensor": "temperature",
        "window": "1m",
        "start": NOW,
        "end": NOW,
        "count": 60,
        "sum": 1290.0,
        "min": 20.1,
        "max": 22.9,
    }
    schema = SCHEMA.validators[Collections.READINGS_ROLLUP]["$jsonSchema"]
    assert violations(schema, rollup) == []


@pytest.mark.parametrize("collection", sorted(SCHEMA.validators))
def test_validators_belong_to_bootstrapped_collections(collection: str) -> None:
    assert collection in SCHEMA.collections


def test_index_names_are_unique_per_collection() -> None:
    names = [(i.collection, i.name) for i in SCHEMA.indexes]
    assert len(names) == len(set(names))
    assert all(i.collection in SCHEMA.collections for i in SCHEMA.indexes)
