"""Whatever arrives, the pure pipeline answers with a document or a rejection, never a crash."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from typing import Any

import bson
import pytest

from consumer.messages import InboundMessage
from consumer.mongo_store import unencodable
from consumer.pipeline import PipelineContext, Rejected, Stored, process_message, sources_by_topic
from headwater.sources import load_sources

NOW = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)
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
