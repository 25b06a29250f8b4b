"""The MongoDB-wire server at scale: load days of readings, time the analyses, watch its memory.

    python bench/store_bench.py [--store-docs 5000000] [--store-reps 5] [--store-ingest-messages N]

1. ingest with vs without indexes: the consumer's write path (`MongoStore.write` of the plans
   `plan_batch` makes of 2000 messages) into fresh scratch databases, one bootstrapped with the
   pipeline's indexes (`db.bootstrap`), one with the same collections and only `_id`; interleaved
   trials (with, without, with, ...), median ratio with its spread. The consumer process always
   bootstraps its database, so `python -m consumer` cannot write to one without indexes;
2. load: N simulator readings (8 devices, ~690,000 a day) as the pipeline stores them, with the
   user events, rejections and rollups of the same days (bench/store_workload.py), by insert_many
   into a scratch database made by `db.bootstrap`, one log line per ~10%;
3. time, median of `--store-reps` runs with their spread: each db/queries script in mongosh
   (FROM/UNTIL = one hour in the middle of the data; latest_reading_per_device has no time bound),
   readings per device in that hour ($match + $group), one device's readings of the last hour
   (find on device_id + ts);
4. one unbounded $group over every reading ($avg/$min/$max per device and sensor) with a 120 s
   client timeout: answered or failed (and the error), then whether the server still answers ping;
5. all along, the server's resident memory (psutil on its PID, sampled in a thread): the peak and
   after, beside its configured heap.
Prints one JSON object; the scratch databases are dropped at the end, also on failure. A server
that dies or stops answering is recorded, never waited for without bound.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import uuid
from collections import Counter
from typing import Any

import pymongo
from measures import rate
from pymongo.database import Database
from pymongo.errors import PyMongoError
from store_ingest import compare_ingest
from store_queries import iso_z, short_error
from store_server import RssSampler, ServerWatch, drop_databases, round_mib, rss_mib
from store_targets import (
    GROUP_TIMEOUT_S,
    INGEST_RATIO_TARGET,
    QUERY_TARGET_S,
    RSS_OVERHEAD_MIB,
    TARGET_DOCS,
    failure_kind,
    parse_heap_mib,
    rss_limit_mib,
    rss_verdict,
)
from store_timing import QUERY_BUDGET_S, time_queries, unbounded_group
from store_workload import SINCE, DataSpan, batch_documents, minimum_readings, store_batches
from workload import interleave, user_event

from consumer.pipeline import PipelineContext, sources_by_topic
from db.bootstrap import bootstrap as bootstrap_db
from headwater.clients import mongo_client, redact_uri
from headwater.settings import Settings, get_settings
from headwater.sources import load_sources

log = logging.getLogger("bench.store")

# A client-side bound on one insert_many, so a wedged server costs a bounded wait.
INSERT_TIMEOUT_S = 120.0
PROGRESS_STEP = 0.1


def load(db: Database, span: DataSpan, ctx: PipelineContext, partitions: int) -> dict[str, Any]:
    """Bootstrap `db` and insert the span's documents, batch by batch, logging each ~10%."""
    bootstrap_db(db)
    counts: Counter[str] = Counter()
    readings_done = 0
    generate_s = insert_s = 0.0
    next_mark = PROGRESS_STEP
    started = time.perf_counter()
    error: str | None = None
    for batch in store_batches(span, ctx.sources, user_event, interleave, partitions):
        t0 = time.perf_counter()
        documents = batch_documents(batch, ctx)
        t1 = time.perf_counter()
        generate_s += t1 - t0
        try:
            with pymongo.timeout(INSERT_TIMEOUT_S):
                for collection, docs in documents.items():
                    db[collection].insert_many(docs, ordered=False)
                    counts[collection] += len(docs)
        except PyMongoError as exc:
            error = f"{failure_kind(exc)}: {short_error(exc)}"
            log.error("store bench load stopped at readings=%d: %s", readings_done, error)
            break
        finally:
            insert_s += time.perf_counter() - t1
        readings_done += batch.readings
        if readings_done >= next_mark * span.readings:
            elapsed = time.perf_counter() - started
            log.info(
                "store bench load %3.0f%% readings=%d/%d documents=%d insert_docs_per_s=%.0f "
                "elapsed_s=%.0f",
                100 * readings_done / span.readings,
                readings_done,
                span.readings,
                sum(counts.values()),
                rate(sum(counts.values()), insert_s),
                elapsed,
            )
            while next_mark * span.readings <= readings_done:
                next_mark += PROGRESS_STEP
    documents_total = sum(counts.values())
    return {
        "readings_generated": readings_done,
        "documents": dict(counts),
        "documents_total": documents_total,
        "insert_s": round(insert_s, 1),
        "generate_s": round(generate_s, 1),
        "wall_s": round(time.perf_counter() - started, 1),
        # Inside insert_many only: the generator (the consumer's pure pipeline) is left out.
        "docs_per_s": round(rate(documents_total, insert_s)) if insert_s > 0 else None,
        "error": error,
    }


def pipeline_context(settings: Settings) -> PipelineContext:
    """The consumer's pure pipeline, reading the two topics under their own contracts."""
    sources = sources_by_topic(load_sources().values())
    return PipelineContext(
        topic_map={"devices": "devices", "user-events": "user-events"},
        sources=sources,
        max_value_bytes=settings.consumer.max_value_bytes,
        raw_max_bytes=settings.consumer.rejected_raw_max_bytes,
    )


def measure(
    settings: Settings,
    docs: int = TARGET_DOCS,
    reps: int = 5,
    ingest_messages: int = 50_000,
    ingest_trials: int = 5,
    budget_s: float = QUERY_BUDGET_S,
) -> dict[str, Any]:
    """Run the store-at-scale bench on the running stack; the result as a JSON-ready dict."""
    devices = settings.services.simulator_devices
    if docs < minimum_readings(devices):
        raise ValueError(
            f"--store-docs {docs} holds no whole hour of {devices} devices: "
            f"use at least {minimum_readings(devices)}"
        )
    if reps < 1 or ingest_trials < 1 or ingest_messages < 1:
        raise ValueError("repetitions, trials and ingest messages must be positive")
    span = DataSpan(SINCE, docs, devices)
    ctx = pipeline_context(settings)
    prefix = f"bench_store_{uuid.uuid4().hex[:8]}"
    heap_mib = parse_heap_mib(settings.mongo.heap) if settings.mongo.embedded else None
    sampler = RssSampler(settings)
    rss_before = sampler.current_mib()
    sampler.start()
    result: dict[str, Any] = {
        "mongo_uri": redact_uri(settings.mongo.uri),
        "scratch_db": prefix,
        "readings": docs,
        "devices": devices,
        "span": [iso_z(span.since), iso_z(span.until)],
        "target_docs": TARGET_DOCS,
        "reps": reps,
    }
    scratch: list[str] = []
    client = mongo_client(settings)
    try:
        try:
            result["ingest"] = compare_ingest(
                settings, ctx, prefix, scratch, ingest_messages, ingest_trials
            )
        except (PyMongoError, RuntimeError) as exc:
            log.error("store bench ingest trials failed: %s", short_error(exc))
            result["ingest"] = {"error": short_error(exc), "verdict": "n/a"}
        scratch.append(prefix)
        db = client[prefix]
        log.info(
            "store bench load readings=%d devices=%d span=%s..%s into %s",
            docs,
            devices,
            iso_z(span.since),
            iso_z(span.until),
            prefix,
        )
        result["load"] = load(db, span, ctx, settings.kafka.partitions)
        result["rss_after_load_mib"] = round_mib(sampler.current_mib())
        if result["load"]["error"] is None:
            watch = ServerWatch(settings)
            result.update(time_queries(settings, watch, db, span, reps, budget_s))
            result["unbounded_group"] = unbounded_group(settings, watch, db, sampler)
    finally:
        rss_after = sampler.current_mib()
        sampler.stop()
        result["scratch"] = drop_databases(client, settings, scratch)
        client.close()
        result["rss"] = {
            "server_pids": sampler.pids,
            "server_restarts": max(0, len(sampler.pids) - 1),
            "before_mib": round_mib(rss_before),
            "peak_mib": round_mib(sampler.peak_mib),
            "after_mib": round_mib(rss_after),
            "after_drop_mib": round_mib(rss_mib(sampler.pid)),
            "samples": sampler.samples,
            "heap_mib": heap_mib,
            "overhead_mib": RSS_OVERHEAD_MIB,
            "limit_mib": None if heap_mib is None else rss_limit_mib(heap_mib),
            "verdict": rss_verdict(sampler.peak_mib, heap_mib),
        }
        if not settings.mongo.embedded:
            result["rss"]["note"] = "MONGO_URI points at another server: its memory is not seen"
    result["targets"] = {
        "query_s": QUERY_TARGET_S,
        "group_timeout_s": GROUP_TIMEOUT_S,
        "rss_overhead_mib": RSS_OVERHEAD_MIB,
        "ingest_ratio": INGEST_RATIO_TARGET,
        "at_docs": TARGET_DOCS,
    }
    result["index_ingest_ratio"] = (result.get("ingest") or {}).get("ratio", {}).get("median")
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    add_arguments(parser)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    result = measure_from_args(get_settings(), args)
    print(json.dumps(result, indent=2))
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The part's options (also offered by bench/run.py)."""
    parser.add_argument(
        "--store-docs", type=int, default=TARGET_DOCS, help="store: readings to load (5,000,000)"
    )
    parser.add_argument("--store-reps", type=int, default=5, help="store: runs per query")
    parser.add_argument(
        "--store-ingest-messages",
        type=int,
        default=50_000,
        help="store: messages per ingest trial (with vs without indexes)",
    )
    parser.add_argument(
        "--store-ingest-trials", type=int, default=5, help="store: trials of each kind"
    )


def measure_from_args(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    return measure(
        settings,
        docs=args.store_docs,
        reps=args.store_reps,
        ingest_messages=args.store_ingest_messages,
        ingest_trials=args.store_ingest_trials,
    )


if __name__ == "__main__":
    sys.exit(main())
