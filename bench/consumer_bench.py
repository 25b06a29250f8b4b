"""Consumer throughput against the ceiling of the same MongoDB, measured in the same run.

    python bench/consumer_bench.py [--messages 100000] [--events-share 0.2]

The workload is what the consumer reads in production: simulator readings on a `devices` topic and
user events on a `user-events` topic (two fresh scratch topics mapped to those contracts), each
with ~1% invalid records that must land in `rejected`.

1. the documents the consumer will write are computed first with its own pure pipeline
   (`consumer.pipeline.process_message`), so the ceilings write exactly the same shapes;
2. ceiling: raw `insert_many` of those documents (batches of 1000 messages, one call per
   collection) into a scratch database with the pipeline's indexes, measured before and after
   the consumer and averaged;
3. the upsert path without Kafka: `bulk_write` of `ReplaceOne(upsert)` per collection (insert-once
   for rejections), which the consumer falls back to for _ids already stored;
4. the consumer: both topics produced first, then `python -m consumer` started on them; the
   sustained rate is documents landed between the first and the last write.
Prints one JSON object (consumer_ratio = consumer ÷ insert_many); everything it creates (topics,
databases) is deleted at the end.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil
from measures import paired_ratios, percentile, rate, spread_summary, sustained_rate
from pymongo import MongoClient, ReplaceOne, UpdateOne
from pymongo.database import Database
from workload import interleave, user_events

from consumer.messages import InboundMessage
from consumer.pipeline import PipelineContext, Rejected, process_message, sources_by_topic
from db.bootstrap import bootstrap as bootstrap_db
from headwater.clients import mongo_client, producer_config, redact_uri
from headwater.contracts import Collections
from headwater.kafka_access import create_topics
from headwater.kafka_admin import admin_client, delete_topics
from headwater.settings import REPO_ROOT, Settings, get_settings
from headwater.sources import Source, load_sources
from producer.kafka_out import encode_value, message_headers, message_key, produce
from producer.simulator import readings

log = logging.getLogger("bench.consumer")

SINCE = datetime(2026, 1, 1, tzinfo=UTC)
DEVICES = 8
INSERT_BATCH = 1000
# What the consumer reads, and the contract (declared topic) each scratch topic stands in for.
CONTRACT_TOPICS = ("devices", "user-events")
DATA_COLLECTIONS = (Collections.READINGS, Collections.USER_EVENTS, Collections.REJECTED)


@dataclass(frozen=True)
class Workload:
    """The records of one run, per contract topic, and the documents the consumer will write."""

    records: dict[str, list[dict[str, Any]]]  # contract topic -> records in produce order
    documents: list[tuple[str, dict[str, Any]]]  # (collection, document with _id), poll order
    rejected: int  # how many of them are rejections

    @property
    def messages(self) -> int:
        return sum(len(r) for r in self.records.values())

    def per_collection(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for collection, _ in self.documents:
            counts[collection] = counts.get(collection, 0) + 1
        return counts


def build_workload(messages: int, events_share: float, topics: dict[str, str]) -> Workload:
    """`messages` records (share `events_share` user events) and their documents.

    `topics` maps each contract topic to the scratch topic it is produced to.
    """
    n_events = round(messages * events_share)
    n_readings = messages - n_events
    seconds = -(-n_readings // DEVICES)
    reading_records = list(readings(SINCE, SINCE + timedelta(seconds=seconds), DEVICES))
    records = {
        "devices": reading_records[:n_readings],
        "user-events": user_events(n_events, SINCE),
    }
    declared = sources_by_topic(load_sources().values())
    ctx = PipelineContext(
        topic_map={scratch: contract for contract, scratch in topics.items()},
        sources=declared,
    )
    now = datetime.now(UTC)
    per_topic: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    rejected = 0
    for contract, items in records.items():
        source = declared[contract]
        headers = tuple(message_headers(source, SINCE, SINCE, "bench"))
        docs: list[tuple[str, dict[str, Any]]] = []
        for offset, record in enumerate(items):
            message = InboundMessage(
                topics[contract],
                offset % 3,
                offset,
                message_key(source, record).encode(),
                encode_value(record),
                headers,
            )
            outcome = process_message(message, ctx, now)
            if isinstance(outcome, Rejected):
                rejected += 1
                docs.append((Collections.REJECTED, {"_id": outcome.doc_id, **outcome.document}))
            else:
                docs.append((outcome.collection, {"_id": outcome.doc_id, **outcome.document}))
        per_topic[contract] = docs
    documents = interleave(per_topic["devices"], per_topic["user-events"])
    return Workload(records, documents, rejected)


def _batches(
    documents: list[tuple[str, dict[str, Any]]], size: int
) -> Iterable[dict[str, list[dict[str, Any]]]]:
    """The documents of each run of `size` messages, grouped by collection (order kept)."""
    for start in range(0, len(documents), size):
        grouped: dict[str, list[dict[str, Any]]] = {}
        for collection, doc in documents[start : start + size]:
            grouped.setdefault(collection, []).append(doc)
        yield grouped


def _scratch_db(client: MongoClient, prefix: str) -> Database:
    db = client[f"{prefix}_{uuid.uuid4().hex[:8]}"]
    # The same collections and indexes as the pipeline's database: indexes cost every insert.
    bootstrap_db(db, update_validators=False)
    return db


def insert_many_rate(client: MongoClient, workload: Workload) -> float:
    """Ceiling: documents/s of raw insert_many of the consumer's documents."""
    db = _scratch_db(client, "bench_insert")
    try:
        started = time.perf_counter()
        for grouped in _batches(workload.documents, INSERT_BATCH):
            for collection, docs in grouped.items():
                db[collection].insert_many(docs, ordered=False)
        return rate(len(workload.documents), time.perf_counter() - started)
    finally:
        client.drop_database(db.name)


def bulk_upsert_rate(client: MongoClient, workload: Workload, batch: int) -> float:
    """The upsert path without Kafka: ReplaceOne(upsert) by _id, insert-once for rejections."""
    db = _scratch_db(client, "bench_upsert")
    try:
        started = time.perf_counter()
        for grouped in _batches(workload.documents, batch):
            for collection, docs in grouped.items():
                ops: list[ReplaceOne | UpdateOne]
                if collection == Collections.REJECTED:
                    ops = [
                        UpdateOne({"_id": d["_id"]}, {"$setOnInsert": d}, upsert=True) for d in docs
                    ]
                else:
                    ops = [ReplaceOne({"_id": d["_id"]}, d, upsert=True) for d in docs]
                db[collection].bulk_write(ops, ordered=False)
        return rate(len(workload.documents), time.perf_counter() - started)
    finally:
        client.drop_database(db.name)


def _landed(db: Database) -> dict[str, int]:
    return {c: db[c].estimated_document_count() for c in DATA_COLLECTIONS}


@dataclass(frozen=True)
class Arm:
    """One way of running the consumer: from which checkout, with which extra settings."""

    name: str
    repo: Path = REPO_ROOT
    env: tuple[tuple[str, str], ...] = ()


# The same consumer with batch N written before batch N+1 is polled (issue 13 item 3's "before").
SEQUENTIAL = Arm("sequential", env=(("HEADWATER_CONSUMER_WRITE_OVERLAP", "false"),))


def parse_arm(spec: str) -> Arm:
    """An --arm option: 'name:VAR=value,VAR=value'."""
    name, _, assignments = spec.partition(":")
    env = []
    for item in filter(None, (a.strip() for a in assignments.split(","))):
        var, sep, value = item.partition("=")
        if not sep or not var:
            raise ValueError(f"--arm {spec!r}: {item!r} is not VAR=value")
        env.append((var, value))
    if not name or not env:
        raise ValueError(f"--arm {spec!r}: expected NAME:VAR=value[,VAR=value]")
    return Arm(name, env=tuple(env))


def consumer_rate(
    client: MongoClient,
    settings: Settings,
    workload: Workload,
    topics: dict[str, str],
    port: int,
    arm: Arm | None = None,
) -> dict[str, float]:
    """Produce the workload to its scratch topics, run the consumer on them, time the landing."""
    arm = arm or Arm("consumer")
    name = topics["devices"]
    db = client[name.replace("-", "_")]
    declared = sources_by_topic(load_sources().values())
    produce_started = time.perf_counter()
    for contract, scratch in topics.items():
        source: Source = declared[contract].model_copy(update={"topic": scratch})
        produce(
            workload.records[contract],
            source,
            producer_config(settings),
            since=SINCE,
            until=SINCE,
            run_id=name,
        )
    produce_s = time.perf_counter() - produce_started
    log.info("consumer bench produced messages=%d seconds=%.1f", workload.messages, produce_s)
    env = dict(
        os.environ,
        HEADWATER_CONSUMER_TOPICS=",".join(f"{s}={c}" for c, s in topics.items()),
        # Named after the pipeline's group: the consumer principal's ACL covers that prefix.
        HEADWATER_CONSUMER_GROUP=f"{settings.kafka.consumer_group}-{name}",
        MONGO_DB=db.name,
        HEADWATER_CONSUMER_PORT=str(port),
        **dict(arm.env),
    )
    settings.stack.log_dir.mkdir(parents=True, exist_ok=True)
    log_path = settings.stack.log_dir / f"{name}.log"
    samples: list[tuple[float, int]] = []
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "consumer"],
            cwd=arm.repo,
            env=env,
            stdout=log_file,
            stderr=log_file,
        )
        cpu_s = 0.0
        try:
            started = time.perf_counter()
            deadline = started + 900
            landed = _landed(db)
            while time.perf_counter() < deadline:
                landed = _landed(db)
                total = sum(landed.values())
                samples.append((time.perf_counter(), total))
                if total >= len(workload.documents):
                    break
                if proc.poll() is not None:
                    raise RuntimeError(f"consumer exited with {proc.returncode}; log {log_path}")
                time.sleep(0.2)
            finished = time.perf_counter()
            times = psutil.Process(proc.pid).cpu_times()
            cpu_s = times.user + times.system
        finally:
            proc.terminate()
            proc.wait(60)
            client.drop_database(db.name)
    expected = workload.per_collection()
    if any(landed.get(c, 0) != expected.get(c, 0) for c in DATA_COLLECTIONS):
        raise RuntimeError(f"consumer landed {landed}, expected {expected} (log {log_path})")
    return {
        "messages": float(workload.messages),
        "sustained_docs_per_s": sustained_rate(samples),
        "end_to_end_s_including_start": finished - started,
        "cpu_s": cpu_s,
        "produce_s": produce_s,
    }


def measure(
    settings: Settings,
    messages: int = 100_000,
    events_share: float = 0.2,
    batch: int = 2000,
    port: int = 28199,
    trials: int = 5,
    peers: tuple[Arm, ...] = (),
) -> dict[str, Any]:
    """Run the consumer bench on the running stack; the result as a JSON-ready dict.

    `trials` interleaved pairs (ceiling, consumer, ceiling, consumer, ...), each consumer trial on
    fresh topics and a fresh database: the ratio is the median of the pairs' ratios, with their
    spread, so that one sample taken in a neighbour's burst cannot make the figure. Each `peers`
    arm (another configuration or checkout of the consumer) runs in the same trial, after the
    consumer, on fresh topics of its own; its ratio to the consumer is paired per trial too.
    """
    load_at_start = os.getloadavg()[0]
    name = f"bench-consumer-{uuid.uuid4().hex[:8]}"
    topics = {"devices": f"{name}-devices", "user-events": f"{name}-events"}
    workload = build_workload(messages, events_share, topics)
    log.info(
        "consumer bench workload messages=%d documents=%s rejected=%d",
        workload.messages,
        workload.per_collection(),
        workload.rejected,
    )
    admin = admin_client(settings)
    inserts: list[float] = []
    upserts: list[float] = []
    runs: list[dict[str, float]] = []
    peer_runs: dict[str, list[dict[str, float]]] = {}
    with mongo_client(settings) as client:
        for trial in range(trials):
            inserts.append(insert_many_rate(client, workload))
            upserts.append(bulk_upsert_rate(client, workload, batch))
            # Fresh topics (same records, same keys) so every trial reads a backlog of its own.
            trial_topics = {c: f"{t}-{trial}" for c, t in topics.items()}
            create_topics(admin, settings, list(trial_topics.values()))
            try:
                runs.append(consumer_rate(client, settings, workload, trial_topics, port))
            finally:
                delete_topics(admin, list(trial_topics.values()))
            for arm in peers:
                arm_topics = {c: f"{t}-{arm.name}" for c, t in trial_topics.items()}
                create_topics(admin, settings, list(arm_topics.values()))
                try:
                    peer_runs.setdefault(arm.name, []).append(
                        consumer_rate(client, settings, workload, arm_topics, port, arm)
                    )
                finally:
                    delete_topics(admin, list(arm_topics.values()))
            log.info(
                "consumer bench trial=%d insert_many_docs_per_s=%.0f bulk_upsert_docs_per_s=%.0f "
                "consumer_sustained_docs_per_s=%.0f consumer_cpu_s=%.1f",
                trial,
                inserts[-1],
                upserts[-1],
                runs[-1]["sustained_docs_per_s"],
                runs[-1]["cpu_s"],
            )
    sustained_all = [r["sustained_docs_per_s"] for r in runs]
    sustained = percentile(sustained_all, 50.0)
    insert = percentile(inserts, 50.0)
    upsert = percentile(upserts, 50.0)
    vs_insert = paired_ratios(sustained_all, inserts)
    vs_upsert = paired_ratios(sustained_all, upserts)
    consumer = {
        "sustained_docs_per_s": sustained,
        "end_to_end_s_including_start": percentile(
            [r["end_to_end_s_including_start"] for r in runs], 50.0
        ),
        "cpu_s": percentile([r["cpu_s"] for r in runs], 50.0),
        "produce_s": percentile([r["produce_s"] for r in runs], 50.0),
        "messages": float(workload.messages),
    }
    log.info("consumer bench consumer sustained_docs_per_s=%.0f", sustained)
    peers_out = {
        name: {
            "sustained_docs_per_s": round(percentile([r["sustained_docs_per_s"] for r in arm], 50)),
            "cpu_s": round(percentile([r["cpu_s"] for r in arm], 50.0), 2),
            "vs_insert_many_pairs": paired_ratios(
                [r["sustained_docs_per_s"] for r in arm], inserts
            ),
            # consumer ÷ this arm, per trial: above 1, the consumer is faster.
            "consumer_vs_arm_pairs": paired_ratios(
                sustained_all, [r["sustained_docs_per_s"] for r in arm]
            ),
        }
        for name, arm in peer_runs.items()
    }
    return {
        "peers": peers_out,
        "trials": trials,
        "load_at_start": round(load_at_start, 2),
        "sustained_docs_per_s_spread": spread_summary(sustained_all, 0),
        "insert_many_spread": spread_summary(inserts, 0),
        "consumer_vs_insert_many_pairs": vs_insert,
        "consumer_vs_bulk_upsert_pairs": vs_upsert,
        "mongo_uri": redact_uri(settings.mongo.uri),
        "workload": {
            "messages": workload.messages,
            "readings": len(workload.records["devices"]),
            "user_events": len(workload.records["user-events"]),
            "documents": workload.per_collection(),
            "rejected_share": round(workload.rejected / workload.messages, 4),
        },
        "insert_many_docs_per_s": round(insert),
        "insert_many_samples": [round(v) for v in inserts],
        "bulk_upsert_docs_per_s": round(upsert),
        "consumer": {k: round(v, 2) for k, v in consumer.items()},
        "consumer_vs_insert_many": vs_insert["median"],
        "consumer_vs_bulk_upsert": vs_upsert["median"],
        "consumer_ratio": vs_insert["median"],
        "consumer_ratio_unreliable": vs_insert["unreliable"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--events-share", type=float, default=0.2, help="share of user events")
    parser.add_argument("--batch", type=int, default=2000, help="upsert batch (consumer default)")
    parser.add_argument("--port", type=int, default=28199, help="the bench consumer's /healthz")
    parser.add_argument("--trials", type=int, default=5, help="interleaved ceiling/consumer pairs")
    parser.add_argument(
        "--sequential", action="store_true", help="also the consumer with the write overlap off"
    )
    parser.add_argument(
        "--baseline-repo",
        type=Path,
        help="also the consumer of another checkout (e.g. a worktree of an older commit)",
    )
    parser.add_argument(
        "--arm",
        action="append",
        default=[],
        metavar="NAME:VAR=VALUE[,VAR=VALUE]",
        help="also the consumer with these settings (e.g. big:HEADWATER_CONSUMER_X=1,...)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    peers = [SEQUENTIAL] if args.sequential else []
    peers += [parse_arm(spec) for spec in args.arm]
    if args.baseline_repo:
        peers.append(Arm("baseline", repo=args.baseline_repo.resolve()))
    result = measure(
        get_settings(),
        args.messages,
        args.events_share,
        args.batch,
        args.port,
        args.trials,
        tuple(peers),
    )
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
