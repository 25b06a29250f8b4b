"""What each collection holds: its $jsonSchema validator and its indexes (pure data).

Validators describe the documents the consumer writes (consumer/documents.py) and the rollup
shape the rollup DAG writes; real MongoDB enforces them, the embedded server ignores them (so the
consumer validates first, and tests check its documents against these schemas).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from headwater.contracts import Collections

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


VALIDATORS: dict[str, dict[str, Any]] = {
    Collections.READINGS: _schema(
        ["_id", "device_id", "sensor", "value", "unit", "ts", "source", "ingest"],
        {
            "_id": {"bsonType": "string"},
            "device_id": {"bsonType": "string", "minLength": 1},
            "sensor": {"bsonType": "string", "minLength": 1},
            "value": {"bsonType": NUMBER},
            "unit": {"bsonType": "string"},
            "ts": {"bsonType": "date"},
            "source": {"bsonType": "string"},
            "ingest": _INGEST,
        },
    ),
    Collections.WORK_ORDERS: _schema(
        ["_id", "product", "production", "ts", "source", "ingest"],
        {
            "_id": {"bsonType": "string"},
            "product": {"bsonType": INT, "minimum": 0},
            "production": {"bsonType": NUMBER},
            "ts": {"bsonType": "date"},
            "source": {"bsonType": "string"},
            "ingest": _INGEST,
        },
    ),
    Collections.USER_EVENTS: _schema(
        [
            "_id",
            "event_id",
            "user_id",
            "event_type",
            "properties",
            "received_at",
            "source",
            "ingest",
        ],
        {
            "_id": {"bsonType": "string"},
            "event_id": {"bsonType": "string"},
            "user_id": {"bsonType": "string", "minLength": 1},
            "event_type": {"bsonType": "string", "minLength": 1},
            "occurred_at": {"bsonType": ["date", "null"]},
            "properties": {"bsonType": "object"},
            "received_at": {"bsonType": "date"},
            "source": {"bsonType": "string"},
            "ingest": _INGEST,
        },
    ),
    Collections.MATCHES: _schema(
        ["_id", "id", "utcDate", "status", "source", "ingest"],
        {
            "_id": {"bsonType": "string"},
            "id": {"bsonType": INT},
            "utcDate": {"bsonType": "date"},
            "status": {"bsonType": "string"},
            "source": {"bsonType": "string"},
            "ingest": _INGEST,
        },
    ),
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


# Natural keys are the _id (unique by definition); these serve the queries in db/queries and the
# health checks. The embedded server builds only unique ones; real MongoDB builds them all.
INDEXES: tuple[Index, ...] = (
    Index(Collections.READINGS, "device_ts", (("device_id", 1), ("ts", -1))),
    Index(Collections.READINGS, "sensor_ts", (("sensor", 1), ("ts", 1))),
    Index(Collections.READINGS, "ts", (("ts", 1),)),
    # reconcile's window counts and the freshness probe's newest-per-source both read this one
    Index(Collections.READINGS, "source_ts", (("source", 1), ("ts", -1))),
    Index(Collections.WORK_ORDERS, "product_ts", (("product", 1), ("ts", 1))),
    Index(Collections.USER_EVENTS, "received_at", (("received_at", 1),)),
    Index(Collections.USER_EVENTS, "user_received", (("user_id", 1), ("received_at", 1))),
    Index(Collections.MATCHES, "utc_date", (("utcDate", 1),)),
    Index(Collections.REJECTED, "rejected_at", (("rejected_at", 1),)),
    Index(Collections.REJECTED, "stage_reason", (("stage", 1), ("reason", 1))),
    Index(
        Collections.READINGS_ROLLUP,
        "window_key",
        (("device_id", 1), ("sensor", 1), ("window", 1), ("start", 1)),
        unique=True,
    ),
    Index(Collections.READINGS_ROLLUP, "window_start", (("window", 1), ("start", 1))),
    Index(Collections.PIPELINE_STATUS, "heartbeat_at", (("heartbeat_at", -1),)),
    Index(Collections.HEALTH_CHECKS, "checked_at", (("checked_at", -1),)),
)

COLLECTIONS: tuple[str, ...] = (
    Collections.READINGS,
    Collections.WORK_ORDERS,
    Collections.USER_EVENTS,
    Collections.MATCHES,
    Collections.REJECTED,
    Collections.READINGS_ROLLUP,
    Collections.PIPELINE_STATUS,
    Collections.HEALTH_CHECKS,
)
