"""Ingest with the pipeline's indexes vs with only _id: the consumer's write path, interleaved.

`python -m consumer` always bootstraps its database with the indexes, so the consumer process
cannot write to a database without them. The figure is measured on its write path instead: the
plans `plan_batch` makes of the consumer's batches (2000 messages), written by `MongoStore.write`,
into fresh scratch databases: with, without, with, without, ...
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Any

from measures import rate, spread_summary
from pymongo.database import Database
from store_targets import INGEST_RATIO_TARGET, ingest_verdict
from store_workload import SINCE, DataSpan, consumer_plans, store_batches
from workload import interleave, user_event

from consumer.mongo_store import MongoStore, mongo_client
from consumer.pipeline import PipelineContext, WritePlan
from db.bootstrap import bootstrap as bootstrap_db
from db.schema import current_schema
from headwater.contracts import Collections
from headwater.settings import Settings

SCHEMA = current_schema()

log = logging.getLogger("bench.store")


def collections_without_indexes(db: Database) -> None:
    """The pipeline's collections (and validators) as db.bootstrap makes them, but only _id."""
    for name in SCHEMA.collections:
        validator = SCHEMA.validators.get(name)
        if validator is None:
            db.create_collection(name)
        else:
            db.create_collection(name, validator=validator)


def write_plans(db: Database, plans: list[WritePlan]) -> float:
    """Seconds the consumer's store takes to write every plan into `db`."""
    store = MongoStore(db)
    started = time.perf_counter()
    for plan in plans:
        refused = store.write(plan)
        if refused:
            raise RuntimeError(f"store refused {len(refused)} documents: {next(iter(refused))}")
    return time.perf_counter() - started


def landed(db: Database) -> dict[str, int]:
    return {c: n for c in SCHEMA.collections if (n := db[c].estimated_document_count())}


def compare_ingest(
    settings: Settings,
    ctx: PipelineContext,
    prefix: str,
    scratch: list[str],
    messages: int,
    trials: int,
) -> dict[str, Any]:
    """Interleaved trials of the consumer's write path, with and without the secondary indexes."""
    span = DataSpan(SINCE, messages, settings.services.simulator_devices)
    batches = store_batches(span, ctx.sources, user_event, interleave, settings.kafka.partitions)
    plans = consumer_plans(batches, ctx, settings.consumer.batch_max_messages)
    documents = sum(p.documents for p in plans)
    expected: Counter[str] = Counter()
    for plan in plans:
        for collection, docs in plan.upserts.items():
            expected[collection] += len(docs)
        expected[Collections.REJECTED] += len(plan.rejections)
    log.info(
        "store bench ingest trials=%d x2 plans=%d documents=%d per_collection=%s",
        trials,
        len(plans),
        documents,
        dict(expected),
    )
    rates: dict[str, list[float]] = {"with_indexes": [], "without_indexes": []}
    # The consumer's own client: its timeouts and tz-aware dates.
    client = mongo_client(settings.mongo.uri, settings.consumer.mongo_timeout_ms)
    try:
        for trial in range(trials):
            for kind in ("with_indexes", "without_indexes"):
                name = f"{prefix}_ingest_{trial}_{'idx' if kind == 'with_indexes' else 'id'}"
                scratch.append(name)
                db = client[name]
                if kind == "with_indexes":
                    bootstrap_db(db)
                else:
                    collections_without_indexes(db)
                seconds = write_plans(db, plans)
                stored = landed(db)
                client.drop_database(name)
                scratch.remove(name)
                if stored != {c: n for c, n in expected.items() if n}:
                    raise RuntimeError(f"{kind} trial {trial} stored {stored}, expected {expected}")
                rates[kind].append(rate(documents, seconds))
                log.info(
                    "store bench ingest trial=%d %s docs_per_s=%.0f", trial, kind, rates[kind][-1]
                )
    finally:
        client.close()
    ratios = [w / wo for w, wo in zip(rates["with_indexes"], rates["without_indexes"], strict=True)]
    summary = spread_summary(ratios)
    return {
        "method": (
            "consumer write path (MongoStore.write of plan_batch plans), no Kafka: "
            "python -m consumer always bootstraps its database with the indexes"
        ),
        "messages": messages,
        "documents": documents,
        "plans": len(plans),
        "documents_per_collection": dict(expected),
        "trials_each": trials,
        "with_indexes_docs_per_s": spread_summary(rates["with_indexes"], 0),
        "without_indexes_docs_per_s": spread_summary(rates["without_indexes"], 0),
        "ratio": summary,
        "target": INGEST_RATIO_TARGET,
        "verdict": ingest_verdict(summary["median"]),
    }
