"""Consumer throughput against the ceiling of the same MongoDB, measured in the same run.

    python bench/consumer_bench.py [--messages 100000]      (settings from the environment)

1. ceiling: raw `insert_many` of reading-shaped documents (batches of 1000) into a scratch database;
2. the consumer's own write pattern without Kafka: `bulk_write` of `ReplaceOne(upsert)` batches;
3. the consumer: N simulator readings produced to a fresh topic first, then `python -m consumer`
   started on it; sustained rate = documents landed between the first and the last write.
Prints one JSON object; everything it creates (topic, databases) is deleted at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import MongoClient, ReplaceOne

from headwater.kafka_admin import admin_client, delete_topics, ensure_topics
from headwater.settings import REPO_ROOT, get_settings
from headwater.sources import get_source
from producer.kafka_out import produce
from producer.simulator import readings

SINCE = datetime(2026, 1, 1, tzinfo=UTC)
DEVICES = 8


def reading_docs(n: int) -> list[dict[str, Any]]:
    docs = []
    for i in range(n):
        ts = SINCE + timedelta(seconds=i // DEVICES)
        docs.append(
            {
                "_id": f"bench-{i % DEVICES:03d}|{ts.isoformat()}",
                "device_id": f"bench-{i % DEVICES:03d}",
                "sensor": "temperature",
                "value": 20.0 + (i % 100) / 10,
                "unit": "C",
                "ts": ts,
                "source": "devices",
                "ingest": {"topic": "bench", "partition": 0, "offset": i, "ingested_at": SINCE},
            }
        )
    return docs


def insert_many_rate(client: MongoClient, n: int) -> float:
    db = client[f"bench_insert_{uuid.uuid4().hex[:8]}"]
    docs = reading_docs(n)
    try:
        started = time.perf_counter()
        for i in range(0, n, 1000):
            db.readings.insert_many(docs[i : i + 1000], ordered=False)
        return n / (time.perf_counter() - started)
    finally:
        client.drop_database(db.name)


def bulk_upsert_rate(client: MongoClient, n: int, batch: int) -> float:
    db = client[f"bench_upsert_{uuid.uuid4().hex[:8]}"]
    docs = reading_docs(n)
    try:
        started = time.perf_counter()
        for i in range(0, n, batch):
            ops = [ReplaceOne({"_id": d["_id"]}, d, upsert=True) for d in docs[i : i + batch]]
            db.readings.bulk_write(ops, ordered=False)
        return n / (time.perf_counter() - started)
    finally:
        client.drop_database(db.name)


def consumer_rate(client: MongoClient, n: int, port: int) -> dict[str, float]:
    settings = get_settings()
    name = f"bench-{uuid.uuid4().hex[:8]}"
    db = client[name.replace("-", "_")]
    admin = admin_client(settings)
    ensure_topics(admin, [name], settings.kafka.partitions, settings.kafka.replication_factor)
    seconds = n // DEVICES
    records = readings(SINCE, SINCE + timedelta(seconds=seconds), DEVICES)
    source = get_source("devices").model_copy(update={"topic": name})
    produced = produce(
        records, source, settings.kafka.producer_config(), since=SINCE, until=SINCE, run_id=name
    )
    env = dict(
        os.environ,
        HEADWATER_CONSUMER_TOPICS=f"{name}=devices",
        KAFKA_CONSUMER_GROUP=name,
        MONGO_DB=db.name,
        HEADWATER_CONSUMER_PORT=str(port),
    )
    log = open(f"/tmp/{name}.log", "wb")  # handed to the child process
    proc = subprocess.Popen(
        [sys.executable, "-m", "consumer"], cwd=REPO_ROOT, env=env, stdout=log, stderr=log
    )
    try:
        started = time.perf_counter()
        first: tuple[float, int] | None = None
        total = 0
        deadline = started + 1800
        while time.perf_counter() < deadline:
            total = db.readings.estimated_document_count() + db.rejected.estimated_document_count()
            now = time.perf_counter()
            if total and first is None:
                first = (now, total)
            if total >= produced.produced:
                break
            time.sleep(0.2)
        finished = time.perf_counter()
        assert first is not None and total == produced.produced, (total, produced.produced)
        return {
            "messages": float(produced.produced),
            "sustained_docs_per_s": (total - first[1]) / max(finished - first[0], 1e-9),
            "end_to_end_s_including_start": finished - started,
        }
    finally:
        proc.terminate()
        proc.wait(60)
        log.close()
        client.drop_database(db.name)
        delete_topics(admin, [name])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=2000, help="upsert batch (consumer default)")
    parser.add_argument("--port", type=int, default=28199)
    args = parser.parse_args()
    settings = get_settings()
    client: MongoClient = MongoClient(settings.mongo.uri, serverSelectionTimeoutMS=10_000)
    insert = insert_many_rate(client, args.messages)
    upsert = bulk_upsert_rate(client, args.messages, args.batch)
    consumer = consumer_rate(client, args.messages, args.port)
    print(
        json.dumps(
            {
                "mongo_uri": settings.mongo.uri,
                "insert_many_docs_per_s": round(insert),
                "bulk_upsert_docs_per_s": round(upsert),
                "consumer": {k: round(v, 2) for k, v in consumer.items()},
                "consumer_vs_insert_many": round(consumer["sustained_docs_per_s"] / insert, 3),
                "consumer_vs_bulk_upsert": round(consumer["sustained_docs_per_s"] / upsert, 3),
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
