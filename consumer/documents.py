"""The stored shape of records and rejections: one MongoDB document each (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from consumer.decode import storable_bytes, text_or_base64
from consumer.messages import InboundMessage

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


def to_document(body: dict[str, Any], source: str, meta: IngestMeta) -> dict[str, Any]:
    """The document (without _id) a record's stored body is written as."""
    return {**body, "source": source, "ingest": meta.as_doc()}


def rejection_document(
    message: InboundMessage,
    *,
    stage: str,
    reason: str,
    rejected_at: datetime,
    raw_max_bytes: int,
    contract_topic: str | None,
) -> dict[str, Any]:
    """The `rejected` document (without _id, which is message.content_id) of a message that
    failed: where it was last seen (partition, offset, run) and everything to find and replay it."""
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
        # The run that produced it: reconcile counts a run's rejects by it.
        "run_id": message.header_text("run_id"),
        "rejected_at": rejected_at,
    }
