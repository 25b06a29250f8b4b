"""Replay of rejects: a reject rebuilt into its message, judged by today's contracts and filters,
stored once (its reject deleted only after the write), and a second replay changing nothing."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from consumer.messages import InboundMessage
from consumer.pipeline import PipelineContext, Rejected, Stored, WritePlan, process_message
from consumer.replay import (
    OTHER_REASONS,
    STILL_REJECTED,
    UNREPLAYABLE,
    WOULD_FILTER,
    WOULD_STORE,
    Selection,
    SelectionError,
    Tally,
    Unreplayable,
    Verdict,
    against_stored,
    context_for,
    dry_run_from_params,
    judge,
    message_from_reject,
    replay_context,
    selection_from_params,
    selection_query,
)
from consumer.replay_service import replay_rejects
from headwater.sources import build_catalog
from tests.unit.declared import entry

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
REJECTED_AT = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
HEADERS = (("schema_version", b"1"), ("run_id", b"run-1"), ("source", b"parcels"))


def parcels(weight_max: float) -> dict[str, Any]:
    """The parcels entry whose contract takes weights up to `weight_max`; a filter drops > 50."""
    return entry(
        key_fields=["scan_id"],
        event_time_field="scanned_at",
        topic="parcels",
        collection="parcels",
        contracts={
            1: {
                "fields": {
                    "scan_id": "string",
                    "scanned_at": {"type": "timestamp", "format": "iso8601"},
                    "weight_kg": {"type": "number", "min": 0, "max": weight_max},
                }
            }
        },
        filters=[{"rule": "bounds", "field": "weight_kg", "max": 50}],
    )


def ctx_of(weight_max: float, raw_max_bytes: int = 65_536) -> PipelineContext:
    catalog = build_catalog([("test", {"sources": {"parcels": parcels(weight_max)}})])
    assert not catalog.problems, catalog.problems
    return replay_context(catalog, raw_max_bytes=raw_max_bytes)


STRICT = ctx_of(10)  # the contract the messages were rejected by
RELAXED = ctx_of(100)  # the contract after the fix


def scan(i: int, weight: float) -> dict[str, Any]:
    return {"scan_id": f"S{i:05d}", "scanned_at": "2026-12-01T08:00:00Z", "weight_kg": weight}


def message(record: Any, offset: int = 0, partition: int = 0, key: bytes | None = None) -> Any:
    value = record if isinstance(record, bytes) or record is None else json.dumps(record).encode()
    if key is None and isinstance(record, dict):
        key = record["scan_id"].encode()
    return InboundMessage("parcels", partition, offset, key, value, HEADERS, 1796112000000)


def reject_of(msg: InboundMessage, ctx: PipelineContext = STRICT) -> dict[str, Any]:
    """The `rejected` document the consumer writes for `msg` under `ctx`."""
    outcome = process_message(msg, ctx, REJECTED_AT)
    assert isinstance(outcome, Rejected), outcome
    return {"_id": outcome.doc_id, **outcome.document}


# ---- selection ----------------------------------------------------------------------------------


def test_an_empty_selection_takes_every_reject() -> None:
    assert selection_query(Selection()) == {}
    assert selection_query(selection_from_params({})) == {}


def test_selection_query_uses_plain_equality_regex_and_a_time_range() -> None:
    params = {
        "topic": "parcels",
        "stage": "validate",
        "reason_pattern": "^weight_kg: ",
        "rejected_since": "2026-12-01T00:00:00Z",
        "rejected_until": "2026-12-02T00:00:00+00:00",
    }
    assert selection_query(selection_from_params(params)) == {
        "topic": "parcels",
        "stage": "validate",
        "reason": {"$regex": "^weight_kg: "},
        "rejected_at": {
            "$gte": datetime(2026, 12, 1, tzinfo=UTC),
            "$lt": datetime(2026, 12, 2, tzinfo=UTC),
        },
    }


def test_a_one_sided_time_range_and_blank_params_mean_no_bound() -> None:
    query = selection_query(
        selection_from_params({"topic": " ", "rejected_since": "2026-12-01T00:00:00Z"})
    )
    assert query == {"rejected_at": {"$gte": datetime(2026, 12, 1, tzinfo=UTC)}}


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"stage": "transform"}, "allowed: decode, validate, filter, store"),
        ({"reason_pattern": "weight_kg: ("}, "not a regular expression"),
        ({"rejected_since": "yesterday"}, "rejected_since='yesterday' is not an ISO-8601 time"),
        (
            {"rejected_since": "2026-12-02T00:00:00Z", "rejected_until": "2026-12-01T00:00:00Z"},
            "empty time range",
        ),
        ({"topic": 7}, "topic=7 must be text"),
    ],
)
def test_unusable_params_are_refused_with_what_is_allowed(params: dict, message: str) -> None:
    with pytest.raises(SelectionError, match=re.escape(message)):
        selection_from_params(params)


def test_dry_run_is_the_default_and_must_be_a_boolean() -> None:
    assert dry_run_from_params({}) is True
    assert dry_run_from_params({"dry_run": False}) is False
    assert dry_run_from_params({"dry_run": "false"}) is False
    with pytest.raises(SelectionError, match="dry_run"):
        dry_run_from_params({"dry_run": "maybe"})


# ---- a reject back to its message ---------------------------------------------------------------


def test_a_reject_is_rebuilt_into_exactly_the_message_it_was_made_of() -> None:
    original = message(scan(1, 20), offset=41, partition=2)
    rebuilt = message_from_reject(reject_of(original))
    assert rebuilt == original


def test_binary_keys_values_and_header_values_come_back_as_bytes() -> None:
    original = InboundMessage(
        "parcels", 1, 7, b"\xff\x00key", b"\x80\x81not utf-8", (("h", b"\xfe"), ("n", None)), None
    )
    doc = reject_of(original)
    assert doc["key"].startswith("base64:") and "base64" in doc["raw"]
    assert message_from_reject(doc) == original


def test_a_text_key_that_looks_like_base64_is_told_apart_by_the_content_id() -> None:
    original = message(scan(2, 20), key=b"base64:AAAA")
    assert message_from_reject(reject_of(original)).key == b"base64:AAAA"


def test_a_tombstone_is_rebuilt_and_still_rejected() -> None:
    original = message(None, key=b"S00003")
    doc = reject_of(original)
    assert message_from_reject(doc).value is None
    verdict = judge(doc, RELAXED, NOW)
    assert (verdict.outcome, verdict.now_reason) == (STILL_REJECTED, "value is empty (a tombstone)")


def test_a_reject_whose_raw_value_was_truncated_cannot_be_replayed() -> None:
    big = scan(4, 20) | {"scan_id": "S" + "9" * 300}
    doc = reject_of(message(big), ctx_of(10, raw_max_bytes=100))
    assert doc["raw"]["truncated"] is True
    with pytest.raises(Unreplayable, match="truncated"):
        message_from_reject(doc)
    verdict = judge(doc, RELAXED, NOW)
    assert verdict.outcome == UNREPLAYABLE and verdict.message is None


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"raw": {"text": '{"scan_id": "other"}', "size": 20, "truncated": False}}, "content id"),
        ({"key": "S99999"}, "content id"),
        ({"raw": "text"}, "known shape"),
        ({"raw": {"base64": "***", "size": 3, "truncated": False}}, "base64"),
        ({"offset": None}, "topic, partition or offset"),
    ],
)
def test_a_reject_that_does_not_rebuild_its_own_content_is_unreplayable(
    change: dict, reason: str
) -> None:
    doc = reject_of(message(scan(5, 20))) | change
    with pytest.raises(Unreplayable, match=reason):
        message_from_reject(doc)


def test_a_reject_without_raw_value_is_unreplayable() -> None:
    doc = reject_of(message(scan(6, 20)))
    del doc["raw"]
    assert judge(doc, RELAXED, NOW).now_reason == "no raw value stored"


# ---- judged by today's pipeline -----------------------------------------------------------------


def test_a_reject_the_fixed_contract_accepts_becomes_the_consumers_own_document() -> None:
    original = message(scan(7, 20), offset=12, partition=1)
    verdict = judge(reject_of(original), RELAXED, NOW)
    assert verdict.outcome == WOULD_STORE and verdict.stored is not None
    # Exactly what the consumer writes for the same message under the same contract.
    assert verdict.stored == process_message(original, RELAXED, NOW)
    assert verdict.stored.collection == "parcels" and verdict.stored.doc_id == "S00007"
    assert verdict.stored.document["ingest"] == {
        "topic": "parcels",
        "partition": 1,
        "offset": 12,
        "ingested_at": NOW,
        "run_id": "run-1",
        "schema_version": 1,
    }


def test_a_reject_the_filters_still_drop_would_be_filtered_with_todays_reason() -> None:
    verdict = judge(reject_of(message(scan(8, 60))), RELAXED, NOW)
    assert verdict.reason.startswith("weight_kg: ")  # its reason as stored
    assert (verdict.outcome, verdict.now_reason) == (WOULD_FILTER, "weight_kg above 50")


def test_a_reject_still_invalid_keeps_being_rejected() -> None:
    verdict = judge(reject_of(message(scan(9, -1))), RELAXED, NOW)
    assert verdict.outcome == STILL_REJECTED
    assert verdict.now_reason is not None and verdict.now_reason.startswith("weight_kg: ")


def test_a_topic_the_current_map_lacks_uses_the_contract_its_reject_recorded() -> None:
    doc = reject_of(message(scan(10, 20))) | {"topic": "parcels-old", "contract_topic": "parcels"}
    doc["_id"] = doc["_id"].replace("parcels|", "parcels-old|")
    assert judge(doc, RELAXED, NOW).outcome == STILL_REJECTED  # no contract mapped
    mapped = context_for(RELAXED, [doc])
    assert mapped.topic_map["parcels-old"] == "parcels"
    assert judge(doc, mapped, NOW).outcome == WOULD_STORE
    assert context_for(RELAXED, [reject_of(message(scan(11, 20)))]) is RELAXED


# ---- against what is stored ---------------------------------------------------------------------


def at(partition: int, offset: int, topic: str = "parcels") -> dict[str, Any]:
    return {"topic": topic, "partition": partition, "offset": offset, "ingested_at": NOW}


@pytest.mark.parametrize(
    ("stored", "decision"),
    [
        (None, "write"),
        (at(0, 5), "already_stored"),  # the same message: a replay interrupted after its write
        (at(0, 9), "superseded"),  # a later version of the key is stored
        (at(0, 2), "write"),  # an earlier version is stored
        (at(1, 9), "write"),  # another partition: the message read later wins
        ({"partition": 0}, "write"),  # no usable meta
    ],
)
def test_a_passing_reject_is_written_unless_it_or_a_later_version_is_stored(
    stored: dict | None, decision: str
) -> None:
    assert against_stored(message(scan(1, 20), offset=5), stored) == decision


# ---- counting -----------------------------------------------------------------------------------


def test_the_summary_counts_outcomes_per_reason_stage_and_topic() -> None:
    tally = Tally()
    for outcome, reason, now_reason in [
        (WOULD_STORE, "weight_kg: too big", None),
        (WOULD_STORE, "weight_kg: too big", None),
        (WOULD_FILTER, "weight_kg: too big", "weight_kg above 50"),
        (STILL_REJECTED, "hub: bad", "hub: bad"),
        (UNREPLAYABLE, "hub: bad", "raw value truncated"),
    ]:
        tally.add(Verdict("id", "validate", reason, outcome, now_reason=now_reason), "parcels")
    summary = tally.summary()
    assert summary["selected"] == 5
    assert summary["outcomes"] == {
        "would_store": 2,
        "would_filter": 1,
        "still_rejected": 1,
        "unreplayable": 1,
    }
    assert summary["by_reason"] == {
        "weight_kg: too big": {
            "selected": 3,
            "would_store": 2,
            "would_filter": 1,
            "still_rejected": 0,
            "unreplayable": 0,
        },
        "hub: bad": {
            "selected": 2,
            "would_store": 0,
            "would_filter": 0,
            "still_rejected": 1,
            "unreplayable": 1,
        },
    }
    assert summary["by_stage"] == {"validate": 5} and summary["by_topic"] == {"parcels": 5}
    assert summary["reasons_now"] == {
        "hub: bad": 1,
        "raw value truncated": 1,
        "weight_kg above 50": 1,
    }
    json.dumps(summary)  # an XCom


def test_a_summary_lists_the_most_frequent_reasons_and_sums_the_rest() -> None:
    tally = Tally()
    for i in range(105):
        for _ in range(1 + (i < 3)):
            tally.add(Verdict("id", "validate", f"r{i:03d}", STILL_REJECTED), "parcels")
    by_reason = tally.summary()["by_reason"]
    assert len(by_reason) == 101
    assert list(by_reason)[:3] == ["r000", "r001", "r002"]
    assert by_reason[OTHER_REASONS]["selected"] == 5


# ---- a whole replay, on an in-memory store ------------------------------------------------------


class FakeStore:
    """`rejected` and the source collections as dicts, answering the replay's few operations."""

    def __init__(self, rejects: list[dict[str, Any]], refuse: set[str] | None = None) -> None:
        self.rejected = {d["_id"]: dict(d) for d in rejects}
        self.collections: dict[str, dict[str, dict[str, Any]]] = {}
        self.refuse = refuse or set()
        self.writes = 0
        self.log: list[str] = []

    def rejects(self, query: dict[str, Any], batch_size: int) -> Any:
        for doc in list(self.rejected.values()):  # a cursor: later deletes do not disturb it
            if matches(doc, query):
                yield dict(doc)

    def stored_ingest(self, collection: str, ids: list[str]) -> dict[str, Any]:
        docs = self.collections.get(collection, {})
        return {i: docs[i].get("ingest") for i in ids if i in docs}

    def write(self, plan: WritePlan) -> dict[tuple[str, str], str]:
        self.writes += 1
        refused = {}
        for collection, docs in plan.upserts.items():
            for doc_id, doc in docs.items():
                if doc_id in self.refuse:
                    refused[(collection, doc_id)] = "Document failed validation"
                else:
                    self.collections.setdefault(collection, {})[doc_id] = {"_id": doc_id, **doc}
                    self.log.append(f"write {doc_id}")
        return refused

    def remove_rejects(self, ids: list[str]) -> int:
        self.log.append(f"remove {len(ids)}")
        return sum(self.rejected.pop(i, None) is not None for i in ids)

    def snapshot(self) -> tuple[dict, dict]:
        return json.dumps(self.rejected, default=str), json.dumps(self.collections, default=str)


def matches(doc: dict[str, Any], query: dict[str, Any]) -> bool:
    for name, condition in query.items():
        value = doc.get(name)
        if isinstance(condition, dict):
            if "$regex" in condition and not re.search(condition["$regex"], value):
                return False
            if "$gte" in condition and not value >= condition["$gte"]:
                return False
            if "$lt" in condition and not value < condition["$lt"]:
                return False
        elif value != condition:
            return False
    return True


def rejects_of_a_too_strict_contract() -> list[dict[str, Any]]:
    """6 pass now (weights 11..16), 2 are filtered now (60, 70), 1 is still invalid (-1), and one
    was truncated when quarantined."""
    docs = [reject_of(message(scan(i, 10 + i), offset=i)) for i in range(1, 7)]
    docs += [reject_of(message(scan(i, w), offset=i)) for i, w in ((7, 60), (8, 70), (9, -1))]
    big = scan(10, 20) | {"scan_id": "S" + "1" * 200}
    docs.append(reject_of(message(big, offset=10), ctx_of(10, raw_max_bytes=100)))
    return docs


def test_a_dry_run_changes_nothing_and_counts_what_a_replay_would_do() -> None:
    store = FakeStore(rejects_of_a_too_strict_contract())
    before = store.snapshot()
    summary = replay_rejects(store, RELAXED, Selection(), dry_run=True, now=lambda: NOW).summary()
    assert store.snapshot() == before and store.writes == 0 and store.log == []
    assert summary["outcomes"] == {
        "would_store": 6,
        "would_filter": 2,
        "still_rejected": 1,
        "unreplayable": 1,
    }
    assert summary["stored"] == {} and summary["removed_from_rejected"] == 0
    assert summary["reasons_now"]["weight_kg above 50"] == 2


def test_a_replay_stores_what_passes_once_removes_its_rejects_and_a_second_changes_nothing() -> (
    None
):
    store = FakeStore(rejects_of_a_too_strict_contract())
    tally = replay_rejects(
        store, RELAXED, Selection(), dry_run=False, now=lambda: NOW, chunk_size=4
    )
    assert tally.stored == {"parcels": 6} and tally.removed == 6
    assert sorted(store.collections["parcels"]) == [f"S{i:05d}" for i in range(1, 7)]
    doc = store.collections["parcels"]["S00003"]
    assert (doc["weight_kg"], doc["source"], doc["ingest"]["offset"]) == (13, "parcels", 3)
    left = sorted(d["reason"][:9] for d in store.rejected.values())
    assert len(left) == 4 and all(r == "weight_kg" for r in left[:3])
    # each chunk wrote before it removed
    assert [e.split()[0] for e in store.log] == ["write"] * 4 + ["remove", "write", "write"] + [
        "remove"
    ]

    after = store.snapshot()
    again = replay_rejects(
        store, RELAXED, Selection(), dry_run=False, now=lambda: NOW + timedelta(1)
    )
    assert store.snapshot() == after
    assert again.outcomes[WOULD_STORE] == 0 and again.removed == 0 and not again.stored


def test_a_replay_takes_only_the_selected_rejects() -> None:
    store = FakeStore(rejects_of_a_too_strict_contract())
    wrong_topic = replay_rejects(store, RELAXED, Selection(topic="devices"), dry_run=False)
    assert wrong_topic.selected == 0
    later = Selection(since=REJECTED_AT + timedelta(seconds=1))
    assert replay_rejects(store, RELAXED, later, dry_run=False).selected == 0
    only = Selection(reason_pattern="less than or equal to 10", stage="validate")
    tally = replay_rejects(store, RELAXED, only, dry_run=False, now=lambda: NOW)
    assert tally.selected == 9  # not the negative weight
    assert tally.outcomes[UNREPLAYABLE] == 1 and tally.removed == 6


def test_a_reject_whose_record_was_written_before_an_interruption_is_only_removed() -> None:
    docs = rejects_of_a_too_strict_contract()
    store = FakeStore(docs)
    first = judge(docs[0], RELAXED, NOW).stored
    assert isinstance(first, Stored)
    store.collections["parcels"] = {first.doc_id: {"_id": first.doc_id, **first.document}}
    tally = replay_rejects(store, RELAXED, Selection(), dry_run=False, now=lambda: NOW)
    assert tally.already_stored == 1 and tally.stored == {"parcels": 5} and tally.removed == 6
    assert f"write {first.doc_id}" not in store.log


def test_an_older_reject_of_a_key_stored_later_is_superseded_not_written() -> None:
    old = reject_of(message(scan(1, 20), offset=3))
    store = FakeStore([old])
    newer = process_message(message(scan(1, 5), offset=8), RELAXED, NOW)
    assert isinstance(newer, Stored)
    store.collections["parcels"] = {"S00001": {"_id": "S00001", **newer.document}}
    tally = replay_rejects(store, RELAXED, Selection(), dry_run=False, now=lambda: NOW)
    assert tally.superseded == 1 and tally.removed == 1 and store.writes == 0
    assert store.collections["parcels"]["S00001"]["weight_kg"] == 5


def test_two_rejects_of_one_key_store_the_later_message_and_both_leave() -> None:
    store = FakeStore([reject_of(message(scan(1, w), offset=o)) for w, o in ((30, 9), (20, 4))])
    tally = replay_rejects(store, RELAXED, Selection(), dry_run=False, now=lambda: NOW)
    assert tally.stored == {"parcels": 1} and tally.superseded == 1 and tally.removed == 2
    assert store.collections["parcels"]["S00001"]["weight_kg"] == 30


def test_a_document_the_store_refuses_keeps_its_reject() -> None:
    store = FakeStore(rejects_of_a_too_strict_contract(), refuse={"S00002"})
    tally = replay_rejects(store, RELAXED, Selection(), dry_run=False, now=lambda: NOW)
    assert tally.stored == {"parcels": 5} and tally.removed == 5
    assert tally.summary()["store_refused"] == {"parcels: Document failed validation": 1}
    assert any(
        d["raw"].get("text", "").startswith('{"scan_id": "S00002"') for d in store.rejected.values()
    )


def test_progress_is_logged_every_n_rejects(caplog: pytest.LogCaptureFixture) -> None:
    store = FakeStore(rejects_of_a_too_strict_contract())
    with caplog.at_level("INFO", logger="consumer.replay_service"):
        replay_rejects(store, RELAXED, Selection(), dry_run=True, chunk_size=3, progress_every=5)
    progress = [r.getMessage() for r in caplog.records if "replay progress" in r.getMessage()]
    assert len(progress) == 2 and "selected=6" in progress[0] and "selected=10" in progress[1]
