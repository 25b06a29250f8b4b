"""A source of any shape is one declaration: catalog, contracts, stored shape, schema, reload."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from consumer.config import ConsumerConfig, resolve_topics
from consumer.messages import InboundMessage
from consumer.metrics import ConsumerMetrics
from consumer.pipeline import PipelineContext, Rejected, Stored, process_message
from consumer.service import ConsumerService, Reloader
from consumer.status import ConsumerState, heartbeat_document
from db.schema import SchemaConflict, current_schema, schema_of
from headwater.contracts import ContractError
from headwater.health_checks import check_declarations
from headwater.sources import Catalog, build_catalog, parse_sources, read_catalog
from tests.unit.declared import entry
from tests.unit.test_consumer_schema import violations

NOW = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)

# A shape the project had never seen: parcel scans, one entry, no code.
PARCELS: dict[str, Any] = {
    "description": "parcel scans at sorting hubs",
    "base_url": "{external_api_url}",
    "route": "/parcel-scans",
    "key_fields": ["scan_id"],
    "event_time_field": "scanned_at",
    "topic": "parcel-scans",
    "collection": "parcel_scans",
    "interval_s": 300,
    "contracts": {
        1: {
            "fields": {
                "scan_id": {"type": "string", "pattern": "^S[0-9]{6}$"},
                "parcel_id": {"type": "string", "max_length": 20},
                "hub": {"type": "string", "enum": ["AMS", "BER", "CDG"]},
                "scanned_at": {"type": "timestamp", "format": "epoch_ms", "store_as": "ts"},
                "weight_kg": {"type": "number", "min": 0, "max": 70},
                "fragile": {"type": "boolean", "required": False},
                "tags": {"type": "array", "required": False, "max_size": 64},
            }
        },
        2: {
            "fields": {
                "scan_id": {"type": "string", "pattern": "^S[0-9]{6}$"},
                "parcel_id": {"type": "string", "max_length": 20},
                "hub": {"type": "string"},
                "scanned_at": {"type": "timestamp", "format": "epoch_ms", "store_as": "ts"},
                "weight_g": {"type": "integer", "min": 0},
            }
        },
    },
    "schema_version": 2,
    "filters": [{"rule": "bounds", "field": "weight_kg", "max": 50}],
    "indexes": [{"name": "hub_ts", "keys": {"hub": 1, "ts": -1}}],
}
SCAN = {
    "scan_id": "S000001",
    "parcel_id": "P-1",
    "hub": "AMS",
    "scanned_at": 1795424400123,
    "weight_kg": 2.5,
}


def parcels(**overrides: Any):
    return parse_sources({"sources": {"parcel-scans": {**PARCELS, **overrides}}})["parcel-scans"]


def message(value: Any, version: int = 1, topic: str = "parcel-scans", offset: int = 0):
    raw = json.dumps(value).encode()
    headers = (("schema_version", str(version).encode()), ("run_id", b"r-1"))
    return InboundMessage(topic, 0, offset, b"k", raw, headers, None)


def context(*sources: Any) -> PipelineContext:
    return PipelineContext({s.topic: s.topic for s in sources}, {s.topic: s for s in sources})


# ---- contracts and the stored shape -----------------------------------------------------------


def test_a_new_shape_is_validated_and_stored_as_declared() -> None:
    source = parcels()
    out = process_message(message(SCAN), context(source), NOW)
    assert isinstance(out, Stored), out
    assert (out.collection, out.doc_id) == ("parcel_scans", "S000001")
    doc = out.document
    # epoch_ms stored as a date under its store_as name; optional fields absent stored as null
    assert doc["ts"] == datetime(2026, 11, 23, 9, 0, 0, 123000, tzinfo=UTC)
    assert "scanned_at" not in doc
    assert (doc["fragile"], doc["tags"], doc["source"]) == (None, None, "parcel-scans")
    assert doc["ingest"]["schema_version"] == 1


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"scan_id": "X1"}, "scan_id: String should match pattern '^S[0-9]{6}$'"),
        ({"hub": "LHR"}, "hub: Input should be 'AMS', 'BER' or 'CDG'"),
        ({"weight_kg": -1}, "weight_kg: Input should be greater than or equal to 0"),
        ({"weight_kg": "2"}, "weight_kg: Input should be a valid number"),
        ({"scanned_at": "2026-11-23"}, "scanned_at: Input should be a valid number"),
        ({"fragile": 1}, "fragile: Input should be a valid boolean"),
        ({"tags": ["x" * 80]}, "tags: Value error, is 84 bytes as JSON, at most 64 allowed"),
        ({"colour": "red"}, "colour: Extra inputs are not permitted"),
    ],
)
def test_a_record_outside_its_declaration_is_rejected_naming_the_field(
    change: dict[str, Any], reason: str
) -> None:
    out = process_message(message({**SCAN, **change}), context(parcels()), NOW)
    assert isinstance(out, Rejected)
    assert out.stage == "validate"
    assert out.reason == reason.replace("Value error, ", "")


def test_older_declared_versions_stay_accepted_and_undeclared_ones_are_not() -> None:
    source = parcels()
    v2 = {k: v for k, v in SCAN.items() if k != "weight_kg"} | {"weight_g": 2500}
    stored = process_message(message(v2, version=2), context(source), NOW)
    assert isinstance(stored, Stored) and stored.document["weight_g"] == 2500
    old = process_message(message(SCAN, version=1), context(source), NOW)
    assert isinstance(old, Stored)
    with pytest.raises(ContractError, match=r"unknown schema_version 3 .* \(known: 1, 2\)"):
        source.contract(3)


def test_filters_apply_to_the_stored_fields() -> None:
    out = process_message(message({**SCAN, "weight_kg": 60}), context(parcels()), NOW)
    assert isinstance(out, Rejected)
    assert (out.stage, out.reason) == ("filter", "weight_kg above 50")


def test_the_derived_validator_accepts_what_the_consumer_stores_and_names_what_it_would_not() -> (
    None
):
    source = parcels()
    schema = schema_of([source]).validators["parcel_scans"]["$jsonSchema"]
    out = process_message(message(SCAN), context(source), NOW)
    assert isinstance(out, Stored)
    assert violations(schema, {"_id": out.doc_id, **out.document}) == []
    bad = {"_id": "x", **out.document, "hub": 7}
    assert violations(schema, bad) == [".hub: int not in ['string']"]
    names = {i.name for i in schema_of([source]).indexes if i.collection == "parcel_scans"}
    assert names == {"hub_ts", "source_ts", "source_run"}


def test_two_sources_sharing_a_collection_get_one_validator_for_both() -> None:
    schema = current_schema()
    readings = schema.validators["readings"]["$jsonSchema"]
    # devices declares device_type; machine metrics' transform stores "machine"
    assert readings["properties"]["device_type"]["bsonType"] == ["string", "null"]
    assert "device_type" not in readings["required"]


def test_one_index_name_meaning_two_indexes_is_refused() -> None:
    first = parcels()
    second = parcels(
        topic="parcel-scans-2", indexes=[{"name": "hub_ts", "keys": {"hub": 1}}]
    ).model_copy(update={"name": "other"})
    with pytest.raises(SchemaConflict, match="index hub_ts"):
        schema_of([first, second])


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"event_time_field": "parcel_id"}, "must be a declared timestamp field"),
        ({"key_fields": ["nope"]}, "key field 'nope' is not declared"),
        ({"schema_version": 3}, "schema_version 3 has no contract (declared: 1, 2)"),
        ({"collection": "rejected"}, "collection 'rejected' is Headwater's own"),
        ({"filters": [{"rule": "bounds", "field": "weight"}]}, "'weight' is not a stored field"),
        ({"contracts": {1: {"fields": {"_id": "string"}}}}, "field name '_id' is reserved"),
        ({"contracts": {1: {"fields": {"a.b": "string"}}}}, "is not a plain name"),
        ({"contracts": {1: {"fields": {"x": "text"}}}}, "Input should be 'string', 'integer'"),
        (
            {"contracts": {1: {"fields": {"x": {"type": "string", "min": 1}}}}},
            "min/max apply to integer, number and epoch timestamps",
        ),
    ],
)
def test_an_invalid_declaration_says_what_to_fix(change: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValueError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        parcels(**change)


# ---- the catalog: each entry on its own ---------------------------------------------------------


def test_an_invalid_entry_is_a_problem_of_its_own_and_pauses_only_its_topic() -> None:
    broken = {**PARCELS}
    del broken["contracts"]
    catalog = build_catalog(
        [("a.yaml", {"sources": {"ok": entry(topic="ok"), "parcel-scans": broken}})]
    )
    assert list(catalog.sources) == ["ok"]
    assert catalog.problems == {"parcel-scans": "contracts: Field required"}
    assert catalog.paused_topics == {
        "parcel-scans": "source parcel-scans: contracts: Field required"
    }
    topics, paused = resolve_topics("", catalog)
    assert topics == {"ok": "ok"} and set(paused) == {"parcel-scans"}


def test_an_entry_redefining_an_index_of_a_shared_collection_is_refused_alone() -> None:
    first = entry(topic="a", collection="c", indexes=[{"name": "by_ts", "keys": {"ts": 1}}])
    same = entry(topic="b", collection="c", indexes=[{"name": "by_ts", "keys": {"ts": 1}}])
    other = entry(topic="d", collection="c", indexes=[{"name": "by_ts", "keys": {"ts": -1}}])
    catalog = build_catalog([("s.yaml", {"sources": {"a": first, "b": same, "d": other}})])
    assert sorted(catalog.sources) == ["a", "b"]
    assert catalog.problems == {
        "d": "index by_ts of collection c is already declared by source a as {'ts': 1}"
    }
    assert list(catalog.paused_topics) == ["d"]
    schema_of(catalog.sources.values())  # builds: no conflict left


def test_the_extra_file_adds_entries_and_a_name_in_both_files_is_refused(tmp_path: Path) -> None:
    main, extra = tmp_path / "sources.yaml", tmp_path / "local.yaml"
    main.write_text(yaml.safe_dump({"sources": {"a": entry(topic="a")}}))
    extra.write_text(yaml.safe_dump({"sources": {"parcel-scans": PARCELS}}))
    catalog = read_catalog([main, extra])
    assert sorted(catalog.sources) == ["a", "parcel-scans"]
    extra.write_text(yaml.safe_dump({"sources": {"a": entry(topic="b")}}))
    catalog = read_catalog([main, extra])
    assert catalog.problems == {"a": f"declared in both {main} and {extra}"}
    missing = read_catalog([main, tmp_path / "absent.yaml"])
    assert list(missing.sources) == ["a"] and not missing.file_problems
    extra.write_text("sources: [unclosed")
    assert "not readable as YAML" in read_catalog([main, extra]).file_problems[str(extra)]


def test_the_topics_setting_pauses_a_topic_whose_source_is_not_declared() -> None:
    catalog = build_catalog([("a.yaml", {"sources": {"a": entry(topic="a")}})])
    topics, paused = resolve_topics("a, x=weather", catalog)
    assert topics == {"a": "a"}
    assert paused == {"x": "topic 'weather' is not declared in sources.yaml; declared: a"}


def test_the_health_check_names_each_invalid_entry_and_paused_topic() -> None:
    result = check_declarations(
        {"parcel-scans": "contracts: Field required"},
        {},
        {"parcel-scans": "source parcel-scans: contracts: Field required", "x": "not declared"},
        ["devices"],
    )
    assert not result["ok"]
    assert result["detail"] == (
        "source parcel-scans: contracts: Field required; topic x paused: not declared"
    )
    assert check_declarations({}, {}, {}, ["devices"])["ok"]


# ---- the consumer follows the declarations ----------------------------------------------------


class RecordingSource:
    """The consumer's Kafka side, recording every subscription."""

    def __init__(self) -> None:
        self.subscriptions: list[list[str]] = []

    def subscribe(self, topics: list[str], listener: Any) -> None:
        self.subscriptions.append(list(topics))

    def poll_batch(self, max_messages: int, timeout_s: float) -> list[InboundMessage]:
        return []

    def commit(self, offsets: dict) -> None: ...

    def assignment(self) -> list:
        return []

    def pause(self, partitions: list) -> None: ...

    def resume(self, partitions: list) -> None: ...

    def member_id(self) -> str | None:
        return None

    def partition_offsets(self, partitions: list, timeout_s: float) -> list:
        return []

    def close(self) -> None: ...


class NullStore:
    def write(self, plan: Any) -> dict:
        return {}

    def write_status(self, doc_id: str, document: dict) -> None: ...


def _catalog(**entries: Any) -> Catalog:
    return build_catalog([("sources.yaml", {"sources": entries})])


def test_the_consumer_subscribes_to_a_new_topic_and_pauses_an_invalid_one_without_a_restart() -> (
    None
):
    clock = [0.0]
    config = ConsumerConfig({}, "g", "unused:9092", "mongodb://unused", "unused")
    first = _catalog(a=entry(topic="a"))
    catalogs = [first]
    prepared: list[list[str]] = []

    def context(catalog: Catalog) -> tuple[PipelineContext, dict[str, str]]:
        topics, paused = resolve_topics("", catalog)
        return PipelineContext(topics, catalog.by_topic()), paused

    ctx, _ = context(first)
    source = RecordingSource()
    state = ConsumerState("i", "g", "h", 1, NOW)
    service = ConsumerService(
        config,
        ctx,
        source,
        NullStore(),
        state,
        ConsumerMetrics(),
        clock=lambda: clock[0],
        now=lambda: NOW,
        catalog=Reloader(
            lambda: catalogs[-1], context, lambda c, t: prepared.append(t), first=first
        ),
    )
    source.subscribe(sorted(ctx.topic_map), service)

    def step() -> None:
        clock[0] += config.reload_interval_s
        service.maybe_reload()

    catalogs.append(_catalog(a=entry(topic="a"), **{"parcel-scans": PARCELS}))
    step()
    assert prepared == [["parcel-scans"]]
    assert source.subscriptions[-1] == ["a", "parcel-scans"]
    # the new topic's records are now processed under its declaration
    assert isinstance(process_message(message(SCAN, version=2 - 1), service.ctx, NOW), Stored)

    broken = {**PARCELS, "schema_version": 9}
    catalogs.append(_catalog(a=entry(topic="a"), **{"parcel-scans": broken}))
    step()
    assert source.subscriptions[-1] == ["a"]
    assert list(state.paused_topics) == ["parcel-scans"]
    doc = heartbeat_document(state, NOW)
    assert doc["paused_topics"][0]["topic"] == "parcel-scans"
    assert "schema_version 9 has no contract" in doc["paused_topics"][0]["problem"]
    assert service.health()[0] is True  # the other topics flow: not a 503
    assert service.health()[1]["paused_topics"] == state.paused_topics

    # a file caught mid-edit keeps what was declared before
    unreadable = Catalog({}, file_problems={"sources.yaml": "not readable as YAML"})
    catalogs.append(unreadable)
    step()
    assert source.subscriptions[-1] == ["a"] and service.ctx.topic_map == {"a": "a"}
    assert state.declaration_problems == ["sources.yaml: not readable as YAML"]


def test_a_new_topic_whose_preparation_fails_is_tried_again_later() -> None:
    clock = [0.0]
    config = ConsumerConfig({}, "g", "unused:9092", "mongodb://unused", "unused")
    first = _catalog(a=entry(topic="a"))
    later = _catalog(a=entry(topic="a"), b=entry(topic="b"))
    attempts: list[list[str]] = []

    def prepare(_catalog: Catalog, topics: list[str]) -> None:
        attempts.append(topics)
        if len(attempts) == 1:
            raise RuntimeError("Kafka away")

    def context(catalog: Catalog) -> tuple[PipelineContext, dict[str, str]]:
        topics, paused = resolve_topics("", catalog)
        return PipelineContext(topics, catalog.by_topic()), paused

    source = RecordingSource()
    service = ConsumerService(
        config,
        context(first)[0],
        source,
        NullStore(),
        ConsumerState("i", "g", "h", 1, NOW),
        ConsumerMetrics(),
        clock=lambda: clock[0],
        now=lambda: NOW,
        catalog=Reloader(lambda: later, context, prepare, first=first),
    )
    for _ in range(2):
        clock[0] += config.reload_interval_s
        service.maybe_reload()
    assert attempts == [["b"], ["b"]]
    assert source.subscriptions == [["a", "b"]]
