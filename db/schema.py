"""What each collection holds: its $jsonSchema validator and its indexes (pure).

A source collection's validator and indexes are derived from the declarations of the sources
stored in it (sources.yaml, headwater/declarations.py); Headwater's own collections (rejected,
rollups, status, health) are described here. Real MongoDB enforces the validators, the embedded
server ignores them (so the consumer validates first, and tests check its documents against these
schemas).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from headwater.contracts import Collections
from headwater.declarations import merge_shapes
from headwater.sources import Source, load_sources

INT = ["int", "long"]
NUMBER = ["double", "int", "long", "decimal"]

_INGEST = {
    "bsonType": "object",
    "required": ["topic", "partition", "offset", "ingested_at"],
    "properties": {
        "topic": {"bsonType": "string"},
        "partition": {"bsonType": INT, "minimum": 0},
        "offset": {"bsonType": INT, "minimum": 0},
        "ingested_at": {"bsonType": "date"},
        "run_id": {"bsonType": ["string", "null"]},
        "schema_version": {"bsonType": ["int", "long", "null"]},
    },
}


def _schema(required: list[str], properties: dict[str, Any]) -> dict[str, Any]:
    return {"$jsonSchema": {"bsonType": "object", "required": required, "properties": properties}}


# Headwater's own collections; every source collection's validator comes from its declarations.
OWN_VALIDATORS: dict[str, dict[str, Any]] = {
    Collections.REJECTED: _schema(
        ["_id", "stage", "reason", "topic", "partition", "offset", "rejected_at"],
        {
            "_id": {"bsonType": "string"},
            "stage": {"enum": ["decode", "validate", "filter", "store"]},
            "reason": {"bsonType": "string"},
            "topic": {"bsonType": "string"},
            "partition": {"bsonType": INT, "minimum": 0},
            "offset": {"bsonType": INT, "minimum": 0},
            "key": {"bsonType": ["string", "null"]},
            "headers": {"bsonType": "array"},
            "raw": {"bsonType": ["object", "null"]},
            "rejected_at": {"bsonType": "date"},
        },
    ),
    Collections.RECONCILE_RUNS: _schema(
        ["_id", "source", "since", "until", "run_id", "outcome", "reconciled_at"],
        {
            "_id": {"bsonType": "string"},
            "source": {"bsonType": "string"},
            "since": {"bsonType": "date"},
            "until": {"bsonType": "date"},
            "run_id": {"bsonType": "string"},
            "outcome": {"enum": ["ok", "failed"]},
            "pulled": {"bsonType": INT, "minimum": 0},
            "produced": {"bsonType": INT, "minimum": 0},
            "stored": {"bsonType": [*INT, "null"], "minimum": 0},
            "rejected": {"bsonType": [*INT, "null"], "minimum": 0},
            "error": {"bsonType": ["string", "null"]},
            "reconciled_at": {"bsonType": "date"},
        },
    ),
    Collections.READINGS_ROLLUP: _schema(
        ["_id", "device_id", "sensor", "window", "start", "end", "count", "sum", "min", "max"],
        {
            "device_id": {"bsonType": "string"},
            "sensor": {"bsonType": "string"},
            "window": {"bsonType": "string"},
            "start": {"bsonType": "date"},
            "end": {"bsonType": "date"},
            "count": {"bsonType": INT, "minimum": 0},
            "sum": {"bsonType": NUMBER},
            "min": {"bsonType": NUMBER},
            "max": {"bsonType": NUMBER},
        },
    ),
}


@dataclass(frozen=True)
class Index:
    """One index: its name, keys (field, 1 or -1) and whether it is unique."""

    collection: str
    name: str
    keys: tuple[tuple[str, int], ...]
    unique: bool = False


# Headwater's own collections' indexes; natural keys are the _id (unique by definition).
OWN_INDEXES: tuple[Index, ...] = (
    Index(Collections.REJECTED, "rejected_at", (("rejected_at", 1),)),
    Index(Collections.REJECTED, "stage_reason", (("stage", 1), ("reason", 1))),
    # reconcile counts a run's rejects by these
    Index(Collections.REJECTED, "topic_run", (("topic", 1), ("run_id", 1))),
    Index(
        Collections.READINGS_ROLLUP,
        "window_key",
        (("device_id", 1), ("sensor", 1), ("window", 1), ("start", 1)),
        unique=True,
    ),
    Index(Collections.READINGS_ROLLUP, "window_start", (("window", 1), ("start", 1))),
    Index(Collections.PIPELINE_STATUS, "heartbeat_at", (("heartbeat_at", -1),)),
    Index(Collections.HEALTH_CHECKS, "checked_at", (("checked_at", -1),)),
    # the Headwater page: each check's latest result, and its latest failures
    Index(Collections.HEALTH_CHECKS, "check_checked_at", (("check", 1), ("checked_at", -1))),
    Index(Collections.HEALTH_CHECKS, "check_last_failure", (("check", 1), ("last_failure.at", -1))),
    # the Headwater page: each source's latest reconciles
    Index(
        Collections.RECONCILE_RUNS, "source_reconciled_at", (("source", 1), ("reconciled_at", -1))
    ),
)
OWN_COLLECTIONS: tuple[str, ...] = (
    Collections.REJECTED,
    Collections.READINGS_ROLLUP,
    Collections.PIPELINE_STATUS,
    Collections.HEALTH_CHECKS,
    Collections.RECONCILE_RUNS,
)


class SchemaConflict(ValueError):
    """Two declarations ask for different things under one name (an index of one collection)."""


def source_collections(sources: Iterable[Source]) -> dict[str, list[Source]]:
    """Collection -> the sources stored in it, in declaration order."""
    by_collection: dict[str, list[Source]] = {}
    for source in sources:
        by_collection.setdefault(source.collection, []).append(source)
    return by_collection


def collection_validator(sources: list[Source]) -> dict[str, Any]:
    """The $jsonSchema of a collection the given sources store in (every declared version)."""
    shapes = [s.stored_shape(v) for s in sources for v in sorted(s.contracts)]
    properties, required = merge_shapes(shapes)
    properties = {
        "_id": {"bsonType": "string"},
        **properties,
        # Not an enum of today's sources: a source added to the collection must not wait for a
        # collMod before its documents are accepted.
        "source": {"bsonType": "string", "minLength": 1},
        "ingest": _INGEST,
    }
    return _schema(["_id", *required, "source", "ingest"], properties)


def source_indexes(sources: list[Source]) -> list[Index]:
    """A collection's indexes: what its sources declare, plus (source, event time) for freshness
    and (source, ingest.run_id) for reconcile; SchemaConflict when one name means two indexes."""
    collection = sources[0].collection
    found: dict[str, Index] = {}
    wanted: list[Index] = []
    for source in sources:
        time_field = source.stored_time_field
        wanted += [
            Index(collection, f"source_{time_field}", (("source", 1), (time_field, -1))),
            Index(collection, "source_run", (("source", 1), ("ingest.run_id", 1))),
        ]
        wanted += [
            Index(collection, i.name, tuple(i.keys.items()), unique=i.unique)
            for i in source.indexes
        ]
    for index in wanted:
        seen = found.get(index.name)
        if seen is None:
            found[index.name] = index
        elif seen != index:
            raise SchemaConflict(
                f"collection {collection}: index {index.name} is declared as {seen.keys} and "
                f"as {index.keys}"
            )
    return list(found.values())


@dataclass(frozen=True)
class Schema:
    """Every collection, validator and index of a set of declared sources."""

    collections: tuple[str, ...]
    validators: dict[str, dict[str, Any]]
    indexes: tuple[Index, ...]


def schema_of(sources: Iterable[Source]) -> Schema:
    """The schema of these sources plus Headwater's own collections."""
    grouped = source_collections(sources)
    validators = {name: collection_validator(group) for name, group in grouped.items()}
    indexes = [i for group in grouped.values() for i in source_indexes(group)]
    return Schema(
        collections=(*grouped, *OWN_COLLECTIONS),
        validators={**validators, **OWN_VALIDATORS},
        indexes=(*indexes, *OWN_INDEXES),
    )


def current_schema() -> Schema:
    """The schema of the sources declared now."""
    return schema_of(load_sources().values())
