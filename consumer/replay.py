"""Replay of rejects, the pure core: quarantined messages judged by the contracts and filters
declared now (the service that reads and writes MongoDB is consumer/replay_service.py).

A reject (`rejected`, consumer/documents.py) keeps everything its message was: topic, partition,
offset, key, headers and the raw value. Replaying rebuilds that InboundMessage and hands it to the
consumer's own pure pipeline (consumer/pipeline.py), so a replayed record is decided and shaped
exactly as the consumer would decide and shape it today. Each selected reject has one outcome:

- would_store: it passes now. A real run writes its document (same shape, natural-key `_id`,
  ingest meta of the original message) and, once the write is acknowledged, deletes the reject.
- would_filter / still_rejected: it is kept out now (a filter rule; decode or contract). The reject
  is left as it is, reason and all; the summary says the reason it would get now.
- unreplayable: its raw value was truncated when it was quarantined (or is missing, or does not
  match the reject's content id), so the message cannot be rebuilt. The reject is left.

Deleting (not marking) a replayed reject keeps `rejected` meaning "quarantined now", and keeps
reconcile's arithmetic: the stored document carries the original run's id, so a run's stored +
rejected is unchanged by a replay. A second replay finds nothing to do and changes nothing.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from consumer.config import resolve_topics
from consumer.documents import STAGES
from consumer.messages import InboundMessage
from consumer.pipeline import (
    PipelineContext,
    Rejected,
    Stored,
    safe_outcome,
    supersedes,
)
from headwater.sources import Catalog, ensure_utc
from headwater.windows import WindowError, param_time

WOULD_STORE = "would_store"
WOULD_FILTER = "would_filter"
STILL_REJECTED = "still_rejected"
UNREPLAYABLE = "unreplayable"
OUTCOMES = (WOULD_STORE, WOULD_FILTER, STILL_REJECTED, UNREPLAYABLE)

# Distinct reasons listed in a summary; the rest are summed under OTHER_REASONS (an XCom is small).
MAX_REASONS = 100
OTHER_REASONS = "(other reasons)"
BASE64_PREFIX = "base64:"


class SelectionError(ValueError):
    """A replay parameter is unusable; the message names it and what is allowed."""


# ---- which rejects ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Selection:
    """Which rejects a replay takes: every given condition must hold (None: any)."""

    topic: str | None = None
    stage: str | None = None
    reason_pattern: str | None = None
    since: datetime | None = None  # rejected_at >= since
    until: datetime | None = None  # rejected_at < until

    def __post_init__(self) -> None:
        if self.stage is not None and self.stage not in STAGES:
            raise SelectionError(
                f"stage {self.stage!r} is not a stage; allowed: {', '.join(STAGES)}"
            )
        if self.reason_pattern is not None:
            try:
                re.compile(self.reason_pattern)
            except re.error as exc:
                raise SelectionError(
                    f"reason_pattern {self.reason_pattern!r} is not a regular expression: {exc}"
                ) from None
        if self.since is not None and self.until is not None and self.until <= self.since:
            raise SelectionError(
                f"empty time range: rejected_until {self.until.isoformat()} is not after "
                f"rejected_since {self.since.isoformat()}"
            )

    def as_dict(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "stage": self.stage,
            "reason_pattern": self.reason_pattern,
            "rejected_since": self.since.isoformat() if self.since else None,
            "rejected_until": self.until.isoformat() if self.until else None,
        }


def _text_param(params: Mapping[str, Any], name: str) -> str | None:
    value = params.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str):
        raise SelectionError(f"param {name}={value!r} must be text")
    return value.strip() if name != "reason_pattern" else value


def _time_param(params: Mapping[str, Any], name: str) -> datetime | None:
    try:
        return param_time(params, name)
    except WindowError as exc:
        raise SelectionError(str(exc)) from None


def selection_from_params(params: Mapping[str, Any]) -> Selection:
    """The Selection of a DAG run's params (topic, stage, reason_pattern, rejected_since/until)."""
    return Selection(
        topic=_text_param(params, "topic"),
        stage=_text_param(params, "stage"),
        reason_pattern=_text_param(params, "reason_pattern"),
        since=_time_param(params, "rejected_since"),
        until=_time_param(params, "rejected_until"),
    )


def dry_run_from_params(params: Mapping[str, Any]) -> bool:
    """The dry_run param: true unless explicitly false (a replay that writes must be asked for)."""
    value = params.get("dry_run", True)
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise SelectionError(f"param dry_run={value!r} must be true or false")


def selection_query(selection: Selection) -> dict[str, Any]:
    """The `rejected` filter of a selection: plain equality, $regex and a rejected_at range, which
    MongoDB and the embedded server answer alike (stage + reason and rejected_at are indexed)."""
    query: dict[str, Any] = {}
    if selection.topic is not None:
        query["topic"] = selection.topic
    if selection.stage is not None:
        query["stage"] = selection.stage
    if selection.reason_pattern is not None:
        query["reason"] = {"$regex": selection.reason_pattern}
    bounds: dict[str, datetime] = {}
    if selection.since is not None:
        bounds["$gte"] = ensure_utc(selection.since)
    if selection.until is not None:
        bounds["$lt"] = ensure_utc(selection.until)
    if bounds:
        query["rejected_at"] = bounds
    return query


# ---- a reject back to its message ---------------------------------------------------------------


class Unreplayable(ValueError):
    """A reject whose message cannot be rebuilt; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _decoded_base64(text: str) -> bytes | None:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


def _bytes_candidates(stored: str | None) -> list[bytes | None]:
    """What text_or_base64 may have been given: "base64:..." is base64 unless the bytes were
    UTF-8 text that happened to start so; the content id tells which (tried in this order)."""
    if stored is None:
        return [None]
    literal = stored.encode("utf-8")
    if stored.startswith(BASE64_PREFIX):
        decoded = _decoded_base64(stored[len(BASE64_PREFIX) :])
        if decoded is not None:
            return [decoded, literal]
    return [literal]


def _header_bytes(stored: str | None) -> bytes | None:
    # Headers are not part of the content id: "base64:" text that decodes is taken as base64.
    return _bytes_candidates(stored)[0]


def raw_value(raw: Any) -> bytes | None:
    """The value bytes a reject's `raw` field holds (storable_bytes' shape); None is a tombstone.

    Unreplayable when the value was truncated (only a prefix was kept) or is not in that shape.
    """
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise Unreplayable("raw value is not stored in a known shape")
    if raw.get("truncated"):
        raise Unreplayable(
            f"raw value truncated when quarantined ({raw.get('size')} bytes, a prefix kept)"
        )
    if isinstance(raw.get("text"), str):
        return str(raw["text"]).encode("utf-8")
    if isinstance(raw.get("base64"), str):
        decoded = _decoded_base64(str(raw["base64"]))
        if decoded is None:
            raise Unreplayable("raw value's base64 is not valid")
        return decoded
    raise Unreplayable("raw value is not stored in a known shape")


def message_from_reject(doc: Mapping[str, Any]) -> InboundMessage:
    """The message a reject was made of, as the consumer read it (Unreplayable if it cannot be).

    The rebuilt key and value must hash to the reject's `_id` (its content id): that proves the
    bytes are the original ones, not a lossy copy.
    """
    if "raw" not in doc:
        raise Unreplayable("no raw value stored")
    try:
        topic, partition, offset = str(doc["topic"]), int(doc["partition"]), int(doc["offset"])
    except (KeyError, TypeError, ValueError):
        raise Unreplayable("topic, partition or offset missing") from None
    value = raw_value(doc["raw"])
    headers = tuple(
        (str(h.get("name")), _header_bytes(h.get("value")))
        for h in doc.get("headers") or []
        if isinstance(h, Mapping)
    )
    timestamp = doc.get("kafka_timestamp_ms")
    for key in _bytes_candidates(doc.get("key")):
        message = InboundMessage(
            topic,
            partition,
            offset,
            key,
            value,
            headers,
            int(timestamp) if isinstance(timestamp, int) else None,
        )
        if message.content_id == doc.get("_id"):
            return message
    raise Unreplayable("key and raw value do not match the reject's content id")


# ---- the pipeline, today ------------------------------------------------------------------------


def replay_context(
    catalog: Catalog,
    topics_spec: str = "",
    *,
    max_value_bytes: int = 1_048_576,
    raw_max_bytes: int = 65_536,
) -> PipelineContext:
    """The consumer's pipeline context for the declarations as they are now."""
    topic_map, _paused = resolve_topics(topics_spec, catalog)
    return PipelineContext(
        topic_map=topic_map,
        sources=catalog.by_topic(),
        max_value_bytes=max_value_bytes,
        raw_max_bytes=raw_max_bytes,
    )


def context_for(ctx: PipelineContext, rejects: Iterable[Mapping[str, Any]]) -> PipelineContext:
    """`ctx`, plus the contract topic a reject recorded for a topic the current map lacks (a
    consumer `topics` setting this process does not see), when that contract is declared now."""
    extra: dict[str, str] = {}
    for doc in rejects:
        topic, contract = doc.get("topic"), doc.get("contract_topic")
        if (
            isinstance(topic, str)
            and isinstance(contract, str)
            and topic not in ctx.topic_map
            and contract in ctx.sources
        ):
            extra[topic] = contract
    if not extra:
        return ctx
    return dataclasses.replace(ctx, topic_map={**extra, **ctx.topic_map})


@dataclass(frozen=True)
class Verdict:
    """What the current pipeline makes of one reject."""

    reject_id: str
    stage: str  # the reject's stage and reason, as stored
    reason: str
    outcome: str
    message: InboundMessage | None = None
    stored: Stored | None = None
    now_reason: str | None = None  # for would_filter / still_rejected: the reason it gets now


def judge(doc: Mapping[str, Any], ctx: PipelineContext, now: datetime) -> Verdict:
    """The outcome of replaying one reject through the consumer's pipeline (pure)."""
    reject_id, stage, reason = str(doc.get("_id")), str(doc.get("stage")), str(doc.get("reason"))
    try:
        message = message_from_reject(doc)
    except Unreplayable as exc:
        return Verdict(reject_id, stage, reason, UNREPLAYABLE, now_reason=exc.reason)
    outcome = safe_outcome(message, ctx, now)
    if isinstance(outcome, Stored):
        return Verdict(reject_id, stage, reason, WOULD_STORE, message, outcome)
    assert isinstance(outcome, Rejected)
    name = WOULD_FILTER if outcome.stage == "filter" else STILL_REJECTED
    return Verdict(reject_id, stage, reason, name, message, now_reason=outcome.reason)


# ---- what is already stored ---------------------------------------------------------------------

StoreDecision = Literal["write", "already_stored", "superseded"]


def against_stored(message: InboundMessage, ingest: Mapping[str, Any] | None) -> StoreDecision:
    """Whether a passing reject's document is written, given the `ingest` meta of the document
    stored under its key now (None: nothing stored).

    The consumer's rule decides: the later message of a key wins (consumer.pipeline.supersedes).
    The very message already stored (a replay interrupted after its write) is not written again.
    """
    if ingest is None:
        return "write"
    try:
        kept = InboundMessage(
            str(ingest["topic"]), int(ingest["partition"]), int(ingest["offset"]), None, None
        )
    except (KeyError, TypeError, ValueError):
        return "write"  # no usable meta: the replayed document, complete, replaces it
    if kept.tp == message.tp and kept.offset == message.offset:
        return "already_stored"
    return "write" if supersedes(message, kept) else "superseded"


# ---- counting -----------------------------------------------------------------------------------


@dataclass
class Tally:
    """A replay's counts: per outcome, per stored reason and stage, per topic, and what was done."""

    selected: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    by_reason: dict[str, Counter[str]] = field(default_factory=dict)
    by_stage: Counter[str] = field(default_factory=Counter)
    by_topic: Counter[str] = field(default_factory=Counter)
    now_reasons: Counter[str] = field(default_factory=Counter)
    stored: Counter[str] = field(default_factory=Counter)  # collection -> documents written
    already_stored: int = 0
    superseded: int = 0
    store_refused: Counter[str] = field(default_factory=Counter)  # reason -> rejects kept
    removed: int = 0

    def add(self, verdict: Verdict, topic: str) -> None:
        """Count one judged reject."""
        self.selected += 1
        self.outcomes[verdict.outcome] += 1
        self.by_stage[verdict.stage] += 1
        self.by_topic[topic] += 1
        per_reason = self.by_reason.get(verdict.reason)
        if per_reason is None:
            per_reason = self.by_reason[verdict.reason] = Counter()
        per_reason[verdict.outcome] += 1
        if verdict.now_reason is not None:
            self.now_reasons[verdict.now_reason] += 1

    def summary(self) -> dict[str, Any]:
        """Plain JSON-able counts (the task's XCom); at most MAX_REASONS reasons per listing."""
        by_reason = {
            reason: {"selected": sum(c.values()), **{o: c.get(o, 0) for o in OUTCOMES}}
            for reason, c in self.by_reason.items()
        }
        ranked = sorted(by_reason, key=lambda r: (-by_reason[r]["selected"], r))
        listed = {r: by_reason[r] for r in ranked[:MAX_REASONS]}
        if len(ranked) > MAX_REASONS:
            other: Counter[str] = Counter()
            for reason in ranked[MAX_REASONS:]:
                other.update(by_reason[reason])
            listed[OTHER_REASONS] = dict(other)
        return {
            "selected": self.selected,
            "outcomes": {o: self.outcomes.get(o, 0) for o in OUTCOMES},
            "by_reason": listed,
            "by_stage": dict(sorted(self.by_stage.items())),
            "by_topic": dict(sorted(self.by_topic.items())),
            "reasons_now": top_counts(self.now_reasons),
            "stored": dict(sorted(self.stored.items())),
            "already_stored": self.already_stored,
            "superseded": self.superseded,
            "store_refused": top_counts(self.store_refused),
            "removed_from_rejected": self.removed,
        }


def top_counts(counts: Counter[str], limit: int = MAX_REASONS) -> dict[str, int]:
    """The `limit` most frequent entries, the rest summed under OTHER_REASONS."""
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    listed = dict(ranked[:limit])
    if len(ranked) > limit:
        listed[OTHER_REASONS] = sum(n for _, n in ranked[limit:])
    return listed
