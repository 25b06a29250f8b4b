"""Put the source declarations into effect, and try one before it runs (for the CLI and `make up`).

`apply`: every valid source's topic in Kafka and its collection, validator and indexes in MongoDB
(idempotent), and optionally its ingest DAG unpaused once Airflow has parsed it. The running
consumer follows the declaration files by itself; this makes the rest ready for it.

`check`: one entry's problems, or what it declares and, for a sample window of the live source,
what the consumer would store and what it would reject and why (the consumer's own pipeline on
the messages the producer would send; nothing is produced or written).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from typing import Any

from consumer.messages import InboundMessage
from consumer.pipeline import PipelineContext, Rejected, Stored, process_message
from db.bootstrap import bootstrap
from db.schema import schema_of
from headwater.clients import mongo_client
from headwater.kafka_access import apply_access
from headwater.kafka_admin import admin_client, ensure_topics, wait_replicated
from headwater.settings import Settings
from headwater.sources import Catalog, Source, load_catalog
from producer.kafka_out import encode_value, message_headers, message_key
from producer.pull import PullStats, RetryPolicy, pull

log = logging.getLogger(__name__)


@dataclass
class Applied:
    """What one `apply` did, and the entries it could not apply."""

    topics: list[str] = field(default_factory=list)
    topics_created: list[str] = field(default_factory=list)
    acls: int = 0
    collections_created: list[str] = field(default_factory=list)
    indexes: int = 0
    problems: dict[str, str] = field(default_factory=dict)
    file_problems: dict[str, str] = field(default_factory=dict)


def apply(settings: Settings, catalog: Catalog | None = None) -> Applied:
    """Create what the valid declarations need in Kafka and MongoDB (idempotent)."""
    catalog = catalog or load_catalog(settings)
    kafka = settings.kafka
    admin = admin_client(settings)
    # Each role's credential from settings, the group and cluster ACLs, and each topic's (before
    # the topic exists: see kafka_access.create_topics).
    acls = apply_access(admin, settings, catalog.topics)
    created = ensure_topics(admin, catalog.topics, kafka.partitions, kafka.replication_factor)
    # The late-data notices: one partition is plenty (a notice per batch at most, read by one
    # watcher), replicated like every topic.
    created += ensure_topics(admin, [kafka.late_notices_topic], 1, kafka.replication_factor)
    wait_replicated(admin, [kafka.late_notices_topic], kafka.replication_factor)
    with mongo_client(settings) as client:
        report = bootstrap(
            client[settings.mongo.db],
            # The embedded server has no collMod: validators are set when a collection is created.
            update_validators=not settings.mongo.embedded,
            schema=schema_of(catalog.sources.values()),
        )
    applied = Applied(
        topics=catalog.topics,
        topics_created=created,
        acls=acls,
        collections_created=report.created,
        indexes=len(report.indexes),
        problems=dict(catalog.problems),
        file_problems=dict(catalog.file_problems),
    )
    log.info(
        "declarations applied topics=%d created_topics=%s acls=%d created_collections=%s "
        "indexes=%d invalid=%s",
        len(applied.topics),
        ",".join(created) or "-",
        acls,
        ",".join(report.created) or "-",
        applied.indexes,
        ",".join(sorted(applied.problems)) or "-",
    )
    return applied


# ---- check -------------------------------------------------------------------------------------


@dataclass
class CheckReport:
    """What the consumer would do with a sample of a source's records."""

    source: str
    pulled: int = 0
    stored: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    examples_stored: list[dict[str, Any]] = field(default_factory=list)
    examples_rejected: list[dict[str, Any]] = field(default_factory=list)
    pull_problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.pull_problem is None


def describe(source: Source) -> list[str]:
    """The declaration in a few lines a user can check against what they meant."""
    lines = [
        f"source {source.name}: {source.description or '(no description)'}",
        f"  pulls   {source.base_url}{source.route} windowed by {source.event_time_field} "
        f"({source.event_time_format}), every {source.interval_s} s",
        f"  key     {' | '.join(source.key_fields)}",
        f"  topic   {source.topic}  (schema_version {source.schema_version}; accepted: "
        f"{', '.join(str(v) for v in sorted(source.contracts))})",
        f"  stores  {source.collection}, event time in {source.stored_time_field}",
    ]
    contract = source.contracts[source.schema_version]
    for name, spec in contract.fields.items():
        flags = [spec.type + (f" {spec.format}" if spec.format else "")]
        flags += [] if spec.required else ["optional"]
        flags += ["nullable"] if spec.nullable else []
        for attr in (
            "min",
            "max",
            "min_length",
            "max_length",
            "pattern",
            "enum",
            "max_items",
            "max_size",
        ):
            value = getattr(spec, attr)
            if value is not None:
                flags.append(f"{attr}={value}")
        stored_as = f" -> {spec.store_as}" if spec.store_as else ""
        lines.append(f"    field {name}{stored_as}: {', '.join(flags)}")
    if contract.extra == "keep":
        lines.append("    other fields: kept as sent")
    if contract.transform:
        lines.append(f"    transform: {contract.transform}")
    for rule in source.filters:
        lines.append(f"  filter  {rule.model_dump(exclude_none=True)}")
    for index in source.indexes:
        lines.append(
            f"  index   {index.name} {dict(index.keys)}{' unique' if index.unique else ''}"
        )
    return lines


def _as_message(
    source: Source, record: Any, offset: int, headers: list[tuple[str, bytes]]
) -> InboundMessage:
    return InboundMessage(
        topic=source.topic,
        partition=0,
        offset=offset,
        key=message_key(source, record).encode(),
        value=encode_value(record),
        headers=tuple(headers),
        timestamp_ms=None,
    )


def check(
    source: Source,
    settings: Settings,
    since: datetime,
    until: datetime,
    now: datetime,
    *,
    limit: int = 1000,
    examples: int = 3,
) -> CheckReport:
    """Pull up to `limit` records of [since, until) and run the consumer's pipeline on them."""
    report = CheckReport(source.name)
    ctx = PipelineContext(topic_map={source.topic: source.topic}, sources={source.topic: source})
    headers = message_headers(source, since, until, "check")
    try:
        # Fail fast: this is a user at a prompt, not a scheduled run.
        policy = RetryPolicy(attempts=2, max_delay_s=2.0)
        pulled = pull(source, since, until, settings, policy=policy, stats=PullStats())
        records = list(islice(pulled, limit))
    except Exception as exc:  # noqa: BLE001 - reported to the user as the source's answer
        report.pull_problem = f"{type(exc).__name__}: {exc}"
        return report
    for offset, record in enumerate(records):
        outcome = process_message(_as_message(source, record, offset, headers), ctx, now)
        report.pulled += 1
        if isinstance(outcome, Stored):
            report.stored += 1
            if len(report.examples_stored) < examples:
                report.examples_stored.append({"_id": outcome.doc_id, **outcome.document})
        elif isinstance(outcome, Rejected):
            report.rejected[f"{outcome.stage}: {outcome.reason}"] += 1
            if len(report.examples_rejected) < examples:
                report.examples_rejected.append({"record": record, "reason": outcome.reason})
    return report
