"""decode -> validate -> filter -> transform, per message and per batch (pure; `now` passed in).

Every message ends as exactly one outcome: a document to upsert under its natural key, or a
rejection under its content id (topic and a hash of key and value: a re-run rejects onto the same
document, which keeps the latest partition, offset and run). A batch becomes one WritePlan: the
upserts per collection (the latest message of a key wins), the rejections, and the offsets to
commit once all of it is written.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any

from consumer.decode import DecodeError, decode_value
from consumer.documents import IngestMeta, rejection_document, to_document
from consumer.messages import InboundMessage, TopicPartition
from headwater.contracts import (
    SCHEMA_VERSION_HEADER,
    ContractError,
    parse_schema_version,
)
from headwater.sources import Source, record_key

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PipelineContext:
    """What the pure pipeline needs to know besides the message and the time."""

    topic_map: dict[str, str]  # topic read -> declared topic whose contract and source apply
    sources: dict[str, Source]  # declared topic -> its source (contracts, collection, filters)
    max_value_bytes: int = 1_048_576
    raw_max_bytes: int = 65_536


@dataclass(frozen=True)
class Stored:
    """A message that becomes (or overwrites) the document `doc_id` of `collection`."""

    collection: str
    doc_id: str
    document: dict[str, Any]


@dataclass(frozen=True)
class Rejected:
    """A message quarantined in `rejected` under its content id."""

    doc_id: str
    stage: str
    reason: str
    document: dict[str, Any]


Outcome = Stored | Rejected


def sources_by_topic(sources: Iterable[Source]) -> dict[str, Source]:
    """Declared topic -> source."""
    return {s.topic: s for s in sources}


def reject(
    message: InboundMessage, ctx: PipelineContext, stage: str, reason: str, now: datetime
) -> Rejected:
    """The rejection of `message` at `stage` for `reason`."""
    document = rejection_document(
        message,
        stage=stage,
        reason=reason,
        rejected_at=now,
        raw_max_bytes=ctx.raw_max_bytes,
        contract_topic=ctx.topic_map.get(message.topic),
    )
    return Rejected(message.content_id, stage, reason, document)


@lru_cache(maxsize=64)
def schema_version_of(header: bytes | None) -> int:
    """parse_schema_version, remembered: every message of a run carries the same few headers."""
    return parse_schema_version(header)


def process_message(message: InboundMessage, ctx: PipelineContext, now: datetime) -> Outcome:
    """The outcome of one message."""
    try:
        payload = decode_value(message.value, ctx.max_value_bytes)
    except DecodeError as exc:
        return reject(message, ctx, "decode", exc.reason, now)
    contract_topic = ctx.topic_map.get(message.topic)
    source = ctx.sources.get(contract_topic) if contract_topic is not None else None
    if contract_topic is None or source is None:
        return reject(message, ctx, "validate", f"no contract mapped to topic {message.topic}", now)
    try:
        version = schema_version_of(message.header(SCHEMA_VERSION_HEADER))
        validated = source.validate(version, payload)
        key = record_key(source, payload)
    except ContractError as exc:
        return reject(message, ctx, "validate", exc.reason, now)
    except KeyError as exc:
        return reject(message, ctx, "validate", str(exc.args[0]), now)
    body = source.to_body(version, validated)
    reason = source.check(body, now)
    if reason is not None:
        return reject(message, ctx, "filter", reason, now)
    meta = IngestMeta(
        message.topic,
        message.partition,
        message.offset,
        now,
        message.header_text("run_id"),
        version,
    )
    return Stored(source.collection, key, to_document(body, source.name, meta))


def supersedes(new: InboundMessage, kept: InboundMessage) -> bool:
    """Whether `new` is a later version of a key than `kept`: a higher offset of the same
    partition, else (no order between partitions) the message read later."""
    if new.tp == kept.tp:
        return new.offset > kept.offset
    return True


@dataclass
class WritePlan:
    """What one batch writes, and what may be committed once it is written."""

    upserts: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    rejections: dict[str, dict[str, Any]] = field(default_factory=dict)
    # (collection, _id) -> the messages that became that document (for store-stage rejections).
    origins: dict[tuple[str, str], list[InboundMessage]] = field(default_factory=dict)
    # (collection, _id) -> the message whose document the batch writes (the latest version).
    latest: dict[tuple[str, str], InboundMessage] = field(default_factory=dict)
    offsets: dict[TopicPartition, int] = field(default_factory=dict)
    first_offsets: dict[TopicPartition, int] = field(default_factory=dict)
    counts: Counter[str] = field(default_factory=Counter)
    topic_counts: dict[str, Counter[str]] = field(default_factory=dict)

    @property
    def messages(self) -> int:
        return sum(self.counts[k] for k in ("stored", "rejected", "filtered"))

    @property
    def documents(self) -> int:
        return sum(len(docs) for docs in self.upserts.values()) + len(self.rejections)

    def add(self, message: InboundMessage, outcome: Outcome) -> None:
        """Record one message's outcome and position."""
        tp, offset = message.tp, message.offset
        end = self.offsets.get(tp)
        if end is None:
            self.offsets[tp] = offset + 1
            self.first_offsets[tp] = offset
        else:
            self.offsets[tp] = max(end, offset + 1)
            self.first_offsets[tp] = min(self.first_offsets[tp], offset)
        outcome_name = "stored"
        if isinstance(outcome, Stored):
            # One document per key and batch, the latest version: an unordered bulk write may
            # apply two writes of one key in any order, and one insert_many must not hold both.
            key = (outcome.collection, outcome.doc_id)
            docs = self.upserts.get(outcome.collection)
            if docs is None:
                docs = self.upserts[outcome.collection] = {}
            kept = self.latest.get(key)
            if kept is None:
                self.origins[key] = [message]
            else:
                self.origins[key].append(message)
            if kept is None or supersedes(message, kept):
                self.latest[key] = message
                docs[outcome.doc_id] = outcome.document
        else:
            self.rejections[outcome.doc_id] = outcome.document
            outcome_name = "filtered" if outcome.stage == "filter" else "rejected"
        self.counts[outcome_name] += 1
        topic_counts = self.topic_counts.get(message.topic)
        if topic_counts is None:
            topic_counts = self.topic_counts[message.topic] = Counter()
        topic_counts[outcome_name] += 1


def safe_outcome(message: InboundMessage, ctx: PipelineContext, now: datetime) -> Outcome:
    """process_message, with an unforeseen failure quarantined instead of raised.

    A record that trips a bug would otherwise stop the consumer on every restart at the same
    offset; quarantined, it is kept with the error, and the stream moves on.
    """
    try:
        return process_message(message, ctx, now)
    except Exception as exc:  # see the docstring; logged with the message position
        log.exception("could not process message %s", message.ref)
        return reject(
            message, ctx, "validate", f"could not be processed: {type(exc).__name__}", now
        )


def plan_batch(
    messages: Iterable[InboundMessage], ctx: PipelineContext, now: datetime
) -> WritePlan:
    """The write plan of a batch of messages."""
    plan = WritePlan()
    for message in messages:
        plan.add(message, safe_outcome(message, ctx, now))
    return plan


def without_failed_writes(
    plan: WritePlan,
    failures: dict[tuple[str, str], str],
    ctx: PipelineContext,
    now: datetime,
) -> WritePlan:
    """The plan that quarantines the messages of documents the store refused for good.

    `failures` maps (collection, _id) to the store's reason (e.g. a failed $jsonSchema). The result
    holds only the new rejections (stage "store"); the original plan's offsets still apply.
    """
    repair = WritePlan()
    for (collection, doc_id), reason in failures.items():
        for message in plan.origins.get((collection, doc_id), []):
            rejected = reject(message, ctx, "store", f"{collection}: {reason}", now)
            repair.rejections[rejected.doc_id] = rejected.document
            repair.counts["rejected"] += 1
            repair.topic_counts.setdefault(message.topic, Counter())["rejected"] += 1
    return repair


def describe_offsets(plan: WritePlan) -> str:
    """topic[partition]=first..last for every partition of a plan, for the batch log line."""
    return " ".join(
        f"{topic}[{partition}]={plan.first_offsets[(topic, partition)]}..{end - 1}"
        for (topic, partition), end in sorted(plan.offsets.items())
    )
