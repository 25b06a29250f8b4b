"""The stored shape of records and rejections: one MongoDB document each (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from consumer.decode import storable_bytes, text_or_base64
from consumer.messages import InboundMessage
from consumer.records import Match, Reading, Record, UserEvent, WorkOrder
from headwater.contracts import Collections

STAGES = ("decode", "validate", "filter", "store")


@dataclass(frozen=True)
class IngestMeta:
    """Where a stored document came from: the message and the run that produced it."""

    topic: str
    partition: int
    offset: int
    ingested_at: datetime
    run_id: str | None
    schema_version: int | None

    def as_doc(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "ingested_at": self.ingested_at,
            "run_id": self.run_id,
            "schema_version": self.schema_version,
        }


def collection_of(record: Record) -> str:
    """The collection a record is stored in."""
    if isinstance(record, Reading):
        return Collections.READINGS
    if isinstance(record, WorkOrder):
        return Collections.WORK_ORDERS
    if isinstance(record, UserEvent):
        return Collections.USER_EVENTS
    return Collections.MATCHES


def to_document(record: Record, source: str, meta: IngestMeta) -> dict[str, Any]:
    """The document (without _id) a record is stored as."""
    body: dict[str, Any]
    if isinstance(record, Reading):
        body = {
            "device_id": record.device_id,
            "sensor": record.sensor,
            "value": record.value,
            "unit": record.unit,
            "ts": record.ts,
        }
    elif isinstance(record, WorkOrder):
        body = {"product": record.product, "production": record.production, "ts": record.ts}
    elif isinstance(record, UserEvent):
        body = {
            "event_id": record.event_id,
            "user_id": record.user_id,
            "event_type": record.event_type,
            "occurred_at": record.occurred_at,
            "properties": record.properties,
            "received_at": record.received_at,
        }
    elif isinstance(record, Match):
        # The match as the API sent it, with its time as a date so it sorts and ranges as one.
        body = {k: v for k, v in record.fields.items() if k not in ("_id", "source", "ingest")}
        body["utcDate"] = record.utc_date
    else:
        raise TypeError(f"no document shape for {type(record).__name__}")
    body["source"] = source
    body["ingest"] = meta.as_doc()
    return body


def rejection_document(
    message: InboundMessage,
    *,
    stage: str,
    reason: str,
    rejected_at: datetime,
    raw_max_bytes: int,
    contract_topic: str | None,
) -> dict[str, Any]:
    """The `rejected` document (without _id, which is message.ref) of a message that failed."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; allowed: {', '.join(STAGES)}")
    raw = storable_bytes(message.value, raw_max_bytes) if message.value is not None else None
    return {
        "stage": stage,
        "reason": reason,
        "topic": message.topic,
        "partition": message.partition,
        "offset": message.offset,
        "contract_topic": contract_topic,
        "key": text_or_base64(message.key),
        "headers": [{"name": n, "value": text_or_base64(v)} for n, v in message.headers],
        "raw": raw,
        "kafka_timestamp_ms": message.timestamp_ms,
        "rejected_at": rejected_at,
    }
