"""decode -> validate -> filter -> transform: each message becomes one document or one rejection."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from consumer.messages import InboundMessage
from consumer.pipeline import (
    PipelineContext,
    Rejected,
    Stored,
    describe_offsets,
    plan_batch,
    process_message,
    sources_by_topic,
    supersedes,
    without_failed_writes,
)
from headwater.sources import load_sources

NOW = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)
HEADERS = (
    ("source", b"devices"),
    ("schema_version", b"1"),
    ("window_start", b"2026-11-23T09:00:00Z"),
    ("window_end", b"2026-11-23T09:01:00Z"),
    ("run_id", b"run-7"),
)
READING = {
    "device_id": "thermostat-000",
    "device_type": "thermostat",
    "sensor": "temperature",
    "value": 21.5,
    "unit": "C",
    "ts": "2026-11-23T09:00:00Z",
}
EVENT = {
    "event_id": "01JAZ3V9Q8W4B5C6D7E8F9G0H1",
    "user_id": "user-42",
    "event_type": "page.view",
    "occurred_at": "2026-11-23T08:59:59.5Z",
    "properties": {"path": "/", "n": 2},
    "received_at": "2026-11-23T09:00:00.123Z",
}


def context(**topic_map: str) -> PipelineContext:
    mapping = topic_map or {t: t for t in ("devices", "user-events", "machine-metrics")}
    return PipelineContext(
        topic_map={k.replace("_", "-"): v for k, v in mapping.items()},
        sources=sources_by_topic(load_sources().values()),
        max_value_bytes=10_000,
        raw_max_bytes=100,
    )


CTX = context()


def message(
    value: Any,
    topic: str = "devices",
    offset: int = 0,
    partition: int = 0,
    headers: tuple = HEADERS,
    key: bytes | None = b"k",
) -> InboundMessage:
    raw = value if isinstance(value, bytes) or value is None else json.dumps(value).encode()
    return InboundMessage(topic, partition, offset, key, raw, headers, 1795424400000)


def stored(msg: InboundMessage, ctx: PipelineContext = CTX) -> Stored:
    outcome = process_message(msg, ctx, NOW)
    assert isinstance(outcome, Stored), outcome
    return outcome


def rejected(msg: InboundMessage, ctx: PipelineContext = CTX) -> Rejected:
    outcome = process_message(msg, ctx, NOW)
    assert isinstance(outcome, Rejected), outcome
    return outcome


def test_device_reading_becomes_one_uniform_reading_document() -> None:
    out = stored(message(READING, offset=41, partition=2))
    assert out.collection == "readings"
    assert out.doc_id == "thermostat-000|2026-11-23T09:00:00Z"
    assert out.document == {
        "device_id": "thermostat-000",
        # kept: "average per device type" groups by it
        "device_type": "thermostat",
        "sensor": "temperature",
        "value": 21.5,
        "unit": "C",
        "ts": datetime(2026, 11, 23, 9, tzinfo=UTC),
        "source": "devices",
        "ingest": {
            "topic": "devices",
            "partition": 2,
            "offset": 41,
            "ingested_at": NOW,
            "run_id": "run-7",
            "schema_version": 1,
        },
    }


def test_machine_metric_is_a_reading_of_a_machine_parameter() -> None:
    out = stored(message({"id": 19, "val": 8073.41, "time": 1624320043}, "machine-metrics"))
    assert out.collection == "readings"
    assert out.doc_id == "19|1624320043"
    doc = out.document
    assert (doc["device_id"], doc["sensor"], doc["unit"]) == (
        "machine-param-19",
        "param_19",
        "unknown",
    )
    assert doc["value"] == 8073.41
    assert doc["ts"] == datetime(2021, 6, 22, 0, 0, 43, tzinfo=UTC)
    assert doc["source"] == "machine-metrics"


def test_integer_values_are_stored_as_floats() -> None:
    out = stored(message({"id": 3, "val": 855, "time": 1624320007}, "machine-metrics"))
    assert isinstance(out.document["value"], float)


def test_user_event_keyed_by_event_id_with_dates() -> None:
    out = stored(message(EVENT, "user-events"))
    assert out.collection == "user_events"
    assert out.doc_id == EVENT["event_id"]
    doc = out.document
    assert doc["occurred_at"] == datetime(2026, 11, 23, 8, 59, 59, 500000, tzinfo=UTC)
    assert doc["received_at"] == datetime(2026, 11, 23, 9, 0, 0, 123000, tzinfo=UTC)
    assert doc["properties"] == {"path": "/", "n": 2}
    assert (doc["user_id"], doc["event_type"], doc["source"]) == (
        "user-42",
        "page.view",
        "user-events",
    )


def test_microseconds_are_cut_to_the_milliseconds_mongodb_keeps() -> None:
    event = {**EVENT, "received_at": "2026-11-23T09:00:00.123456Z"}
    doc = stored(message(event, "user-events")).document
    assert doc["received_at"] == datetime(2026, 11, 23, 9, 0, 0, 123000, tzinfo=UTC)


def test_work_order_and_match_have_their_own_collections() -> None:
    ctx = context(work_orders="work-orders", matches="matches")
    order = stored(
        message({"time": 1624320000, "product": 0, "production": 20.5}, "work-orders"), ctx
    )
    assert (order.collection, order.doc_id) == ("work_orders", "0|1624320000")
    assert order.document["ts"] == datetime(2021, 6, 22, tzinfo=UTC)
    match = {"id": 540001, "utcDate": "2025-08-16T11:30:00Z", "status": "FINISHED", "score": {}}
    out = stored(message(match, "matches"), ctx)
    assert (out.collection, out.doc_id) == ("matches", "540001")
    assert out.document["utcDate"] == datetime(2025, 8, 16, 11, 30, tzinfo=UTC)
    assert out.document["score"] == {}


def test_a_topic_read_under_another_name_uses_the_declared_contract() -> None:
    ctx = context(**{"t-abc-dev": "devices"})
    out = stored(message(READING, "t-abc-dev"), ctx)
    assert out.document["source"] == "devices"
    assert out.document["ingest"]["topic"] == "t-abc-dev"


def test_rejection_keeps_everything_needed_to_find_and_replay_the_message() -> None:
    msg = message(b"not json", offset=7, partition=1, key=b"thermostat-000|x")
    out = rejected(msg)
    # Identified by content, not position: the same record rejected again is the same document.
    assert out.doc_id == msg.content_id
    assert out.doc_id.startswith("devices|") and len(out.doc_id) == len("devices|") + 32
    again = rejected(message(b"not json", offset=99, partition=0, key=b"thermostat-000|x"))
    assert again.doc_id == out.doc_id
    other = rejected(message(b"not json!", offset=7, partition=1, key=b"thermostat-000|x"))
    assert other.doc_id != out.doc_id
    assert out.document == {
        "stage": "decode",
        "reason": "value is not JSON: Expecting value",
        "topic": "devices",
        "partition": 1,
        "offset": 7,
        "contract_topic": "devices",
        "key": "thermostat-000|x",
        "headers": [{"name": n, "value": v.decode()} for n, v in HEADERS],
        "raw": {"size": 8, "truncated": False, "text": "not json"},
        "kafka_timestamp_ms": 1795424400000,
        "run_id": "run-7",
        "rejected_at": NOW,
    }


def test_binary_value_is_kept_as_base64() -> None:
    out = rejected(message(b"\x00\xff"))
    assert out.reason == "value is not UTF-8"
    assert out.document["raw"] == {"size": 2, "truncated": False, "base64": "AP8="}


def test_huge_value_is_rejected_and_only_its_head_kept() -> None:
    out = rejected(message(b'{"x": "' + b"a" * 20_000 + b'"}'))
    assert out.reason == "value larger than 10000 bytes"
    assert out.document["raw"]["truncated"] is True
    assert len(out.document["raw"]["text"]) == 100


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ((), "missing schema_version header"),
        ((("schema_version", b"2"),), "unknown schema_version 2 for topic devices (known: 1)"),
        ((("schema_version", b"one"),), "schema_version header 'one' is not a whole number"),
    ],
)
def test_schema_version_problems_are_validation_rejections(headers: tuple, reason: str) -> None:
    out = rejected(message(READING, headers=headers))
    assert (out.stage, out.reason) == ("validate", reason)


def test_the_last_schema_version_header_counts() -> None:
    headers = (("schema_version", b"2"), ("schema_version", b"1"))
    assert stored(message(READING, headers=headers)).collection == "readings"


@pytest.mark.parametrize(
    ("change", "stage", "reason"),
    [
        ({"value": "21.5C"}, "validate", "value: Input should be a valid number"),
        ({"value": None}, "validate", "value: Input should be a valid number"),
        ({"value": 999.0}, "filter", "temperature outside [-50, 60] C"),
        ({"unit": "F"}, "filter", "temperature unit must be C"),
    ],
)
def test_simulator_faults_are_rejected_at_the_right_stage(
    change: dict, stage: str, reason: str
) -> None:
    out = rejected(message({**READING, **change}))
    assert (out.stage, out.reason) == (stage, reason)


def test_test_user_event_is_filtered() -> None:
    out = rejected(message({**EVENT, "user_id": "qa-bob"}, "user-events"))
    assert (out.stage, out.reason) == ("filter", "test user (user_id starts with 'qa-')")


def test_message_of_an_unmapped_topic_is_rejected() -> None:
    out = rejected(message(READING, "elsewhere"))
    assert (out.stage, out.reason) == ("validate", "no contract mapped to topic elsewhere")
    assert out.document["contract_topic"] is None


def test_batch_plan_counts_every_message_once_and_commits_past_the_last() -> None:
    msgs = [
        message(READING, offset=10),
        message({**READING, "ts": "2026-11-23T09:00:01Z"}, offset=11),
        message(b"garbage", offset=12),
        message({**READING, "value": 999.0}, offset=13),
        message(EVENT, "user-events", offset=5, partition=2),
    ]
    plan = plan_batch(msgs, CTX, NOW)
    assert plan.messages == 5
    assert dict(plan.counts) == {"stored": 3, "rejected": 1, "filtered": 1}
    assert {c: sorted(d) for c, d in plan.upserts.items()} == {
        "readings": ["thermostat-000|2026-11-23T09:00:00Z", "thermostat-000|2026-11-23T09:00:01Z"],
        "user_events": [EVENT["event_id"]],
    }
    assert sorted(plan.rejections) == sorted([msgs[2].content_id, msgs[3].content_id])
    assert plan.offsets == {("devices", 0): 14, ("user-events", 2): 6}
    assert plan.documents == 5
    assert describe_offsets(plan) == "devices[0]=10..13 user-events[2]=5..5"
    assert {t: dict(c) for t, c in plan.topic_counts.items()} == {
        "devices": {"stored": 2, "rejected": 1, "filtered": 1},
        "user-events": {"stored": 1},
    }


def test_the_same_key_twice_in_a_batch_is_one_upsert_and_the_later_message_wins() -> None:
    first = message(READING, offset=1)
    second = message({**READING, "value": 22.0}, offset=2)
    plan = plan_batch([first, second], CTX, NOW)
    docs = plan.upserts["readings"]
    assert len(docs) == 1
    assert docs["thermostat-000|2026-11-23T09:00:00Z"]["value"] == 22.0
    assert plan.origins[("readings", "thermostat-000|2026-11-23T09:00:00Z")] == [first, second]
    assert plan.counts["stored"] == 2


def test_a_message_read_later_with_a_lower_offset_does_not_replace_the_newer_version() -> None:
    newer = message({**READING, "value": 22.0}, offset=8)
    older = message(READING, offset=3)
    plan = plan_batch([newer, older], CTX, NOW)
    key = ("readings", "thermostat-000|2026-11-23T09:00:00Z")
    assert plan.upserts["readings"][key[1]]["value"] == 22.0
    assert plan.upserts["readings"][key[1]]["ingest"]["offset"] == 8
    assert plan.latest[key] == newer
    assert plan.origins[key] == [newer, older]


def test_one_key_from_two_partitions_keeps_the_message_read_later() -> None:
    first = message({**READING, "value": 22.0}, offset=50, partition=0)
    second = message(READING, offset=2, partition=1)
    plan = plan_batch([first, second], CTX, NOW)
    assert plan.upserts["readings"]["thermostat-000|2026-11-23T09:00:00Z"]["value"] == 21.5


@pytest.mark.parametrize(
    ("new", "kept", "expected"),
    [
        (("t", 0, 5), ("t", 0, 4), True),
        (("t", 0, 4), ("t", 0, 5), False),
        (("t", 0, 4), ("t", 0, 4), False),
        (("t", 1, 1), ("t", 0, 9), True),
        (("u", 0, 1), ("t", 0, 9), True),
    ],
)
def test_a_later_offset_of_the_same_partition_supersedes(
    new: tuple[str, int, int], kept: tuple[str, int, int], expected: bool
) -> None:
    def at(topic: str, partition: int, offset: int) -> InboundMessage:
        return InboundMessage(topic, partition, offset, None, b"{}")

    assert supersedes(at(*new), at(*kept)) is expected


def test_documents_the_store_refuses_become_store_rejections_of_their_messages() -> None:
    first, second = message(READING, offset=1), message(READING, offset=2)
    plan = plan_batch([first, second, message(b"x", offset=3)], CTX, NOW)
    key = ("readings", "thermostat-000|2026-11-23T09:00:00Z")
    repair = without_failed_writes(plan, {key: "Document failed validation (code 121)"}, CTX, NOW)
    # Two messages of one record: one rejection, naming the latest of them.
    assert list(repair.rejections) == [first.content_id] == [second.content_id]
    doc = repair.rejections[first.content_id]
    assert doc["offset"] == 2
    assert (doc["stage"], doc["reason"]) == (
        "store",
        "readings: Document failed validation (code 121)",
    )
    assert repair.counts["rejected"] == 2
    assert repair.offsets == {}
