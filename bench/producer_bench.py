"""Producer throughput against Kafka's own perf tool on the same brokers, measured in the same run.

    python bench/producer_bench.py [--records 60000]

1. pipeline: `producer.service.ingest_window` (what the Airflow task runs) pulls a window of the
   device simulator from the external-API stand-in and produces it with the project's producer
   config (acks=all, idempotence, lz4) to a fresh scratch topic (RF 2);
2. pull only: the same window pulled into memory; produce only: those records produced;
3. ceiling: `org.apache.kafka.tools.ProducerPerformance` on the same brokers, same record count,
   acks, idempotence, compression and linger, random payloads of the pipeline's average message
   size (key + value), the Java client's own batching (batch.size 16 KiB per partition); run
   before and after (1)-(2) and averaged, since load on a shared machine drifts;
4. matched ceiling: the same tool with the pipeline's real values as its payload file (random
   letters barely compress with lz4, JSON readings do) and librdkafka's batch size (1 MB), i.e.
   as close to what the project's producer sends as the tool gets.
producer_ratio = pipeline records/s ÷ perf-tool records/s (3); overlap_ratio = pipeline records/s ÷
the slower of pull only and produce only (1.0: the pipeline is as fast as its slower half, i.e. the
pull and the produce fully overlap; taking turns gives about 0.5 when the halves are equal).
Prints one JSON object; the scratch topic is deleted at the end.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from measures import rate, ratio
from perf_tool import (
    PerfSummary,
    PerfToolError,
    parse_summary,
    perf_tool_command,
    perf_tool_props,
    properties_text,
)

from headwater.clients import producer_config, redact_config
from headwater.kafka_access import create_topics
from headwater.kafka_admin import admin_client, delete_topics
from headwater.settings import Settings, get_settings
from headwater.sources import Source, get_source
from producer.kafka_out import encode_value, message_key, produce
from producer.pull import PullStats, pull
from producer.service import ingest_window

log = logging.getLogger("bench.producer")

# A past window of the deterministic simulator: identical records on every run.
SINCE = datetime(2026, 1, 2, tzinfo=UTC)
PERF_TOOL_TIMEOUT_S = 600
# librdkafka's default batch.size: what the project's producer may put in one request.
LIBRDKAFKA_BATCH_BYTES = 1_000_000
WARMUP_RECORDS = 100


def run_perf_tool(command: list[str]) -> PerfSummary:
    """Run ProducerPerformance and parse its summary; PerfToolError with its output on failure."""
    started = time.perf_counter()
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=PERF_TOOL_TIMEOUT_S, check=False
    )
    if done.returncode != 0:
        raise PerfToolError(f"perf tool exited {done.returncode}: {done.stderr[-2000:]}")
    summary = parse_summary(done.stdout)
    log.info(
        "perf tool done records=%d records_per_s=%.0f wall_s=%.1f",
        summary.records,
        summary.records_per_s,
        time.perf_counter() - started,
    )
    return summary


def measure(settings: Settings, records: int = 60_000) -> dict[str, Any]:
    """Run the producer bench on the running stack; the result as a JSON-ready dict."""
    devices = settings.services.simulator_devices
    until = SINCE + timedelta(seconds=-(-records // devices))
    topic = f"bench-producer-{uuid.uuid4().hex[:8]}"
    source: Source = get_source("devices").model_copy(update={"topic": topic})
    config = producer_config(settings)
    admin = admin_client(settings)
    create_topics(admin, settings, [topic])
    java = shutil.which("java") or "java"
    libs = settings.stack.cache_dir / "kafka" / "libs"
    props = perf_tool_props(config)
    tmp: Path | None = None
    try:
        # Topic leaders elected and the client's metadata warm before anything is timed.
        warmup = list(pull(source, SINCE, SINCE + timedelta(seconds=1), settings))
        produce(
            warmup * (WARMUP_RECORDS // max(len(warmup), 1)),
            source,
            config,
            since=SINCE,
            until=SINCE,
            run_id=f"{topic}-warmup",
        )

        # The pull alone, into memory: its records give the average size the perf tool sends.
        stats = PullStats()
        started = time.perf_counter()
        pulled = list(pull(source, SINCE, until, settings, stats=stats))
        pull_s = time.perf_counter() - started
        avg_message = sum(
            len(encode_value(r)) + len(message_key(source, r).encode()) for r in pulled
        ) / len(pulled)
        avg_value = sum(len(encode_value(r)) for r in pulled) / len(pulled)
        log.info("pull only records=%d seconds=%.2f", len(pulled), pull_s)
        # In a file, not on the command line: the tool cannot parse a sasl.jaas.config there.
        tmp = Path(tempfile.mkdtemp(prefix="bench-perf-"))
        props_file = tmp / "producer.properties"
        props_file.write_text(properties_text(props))
        common: dict[str, Any] = {
            "java": java,
            "libs_dir": libs,
            "bootstrap_servers": settings.kafka.bootstrap_servers,
            "topic": topic,
            "num_records": len(pulled),
            "props": {},
            "config_file": props_file,
        }
        perf_command = perf_tool_command(**common, record_size=round(avg_message))
        # The ceiling brackets the pipeline (before and after): on a shared machine, load drifts.
        perf_before = run_perf_tool(perf_command)

        # What the Airflow task does: pull the window and produce it, records streaming through.
        started = time.perf_counter()
        pipeline = ingest_window(source, SINCE, until, settings, run_id=f"{topic}-pipeline")
        pipeline_s = time.perf_counter() - started
        log.info("pipeline done records=%d seconds=%.2f", pipeline.produced, pipeline_s)

        # The produce alone, from memory.
        started = time.perf_counter()
        only = produce(
            pulled, source, config, since=SINCE, until=until, run_id=f"{topic}-produce-only"
        )
        produce_s = time.perf_counter() - started
        log.info("produce only seconds=%.2f", produce_s)

        perf_after = run_perf_tool(perf_command)
        matched_props = {**props, "batch.size": str(LIBRDKAFKA_BATCH_BYTES)}
        matched_file = tmp / "matched.properties"
        matched_file.write_text(properties_text(matched_props))
        payloads = tmp / "values.txt"
        # Compact JSON has no newline inside a value: one payload per line.
        payloads.write_bytes(b"\n".join(encode_value(r) for r in pulled))
        matched = run_perf_tool(
            perf_tool_command(**{**common, "config_file": matched_file}, payload_file=payloads)
        )
    finally:
        delete_topics(admin, [topic])
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)

    pipeline_rate = rate(pipeline.produced, pipeline_s)
    produce_rate = rate(only.produced, produce_s)
    pull_rate = rate(len(pulled), pull_s)
    perf_rate = (perf_before.records_per_s + perf_after.records_per_s) / 2
    return {
        "topic": {
            "partitions": settings.kafka.partitions,
            "replication_factor": settings.kafka.replication_factor,
        },
        "records": pipeline.produced,
        "window": {"since": SINCE.isoformat(), "until": until.isoformat(), "devices": devices},
        "pages": stats.pages,
        "avg_message_bytes": round(avg_message, 1),
        "avg_value_bytes": round(avg_value, 1),
        "producer_config": redact_config(
            {k: v for k, v in config.items() if k != "bootstrap.servers"}
        ),
        "pipeline": {
            "records_per_s": round(pipeline_rate, 1),
            "seconds": round(pipeline_s, 3),
        },
        "pull_only": {
            "records_per_s": round(pull_rate, 1),
            "seconds": round(pull_s, 3),
        },
        "produce_only": {
            "records_per_s": round(produce_rate, 1),
            "seconds": round(produce_s, 3),
        },
        "perf_tool": {
            "records_per_s": round(perf_rate, 1),
            "record_size": round(avg_message),
            "props": redact_config(props),
            "before": perf_before.as_dict(),
            "after": perf_after.as_dict(),
        },
        "perf_tool_matched": {
            **matched.as_dict(),
            "payload": "the pipeline's values",
            "props": redact_config(matched_props),
        },
        "producer_ratio": ratio(pipeline_rate, perf_rate),
        "overlap_ratio": ratio(pipeline_rate, min(pull_rate, produce_rate)),
        "produce_only_ratio": ratio(produce_rate, perf_rate),
        "producer_ratio_vs_matched": ratio(pipeline_rate, matched.records_per_s),
        "produce_only_ratio_vs_matched": ratio(produce_rate, matched.records_per_s),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--records", type=int, default=60_000, help="records in the window")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    print(json.dumps(measure(get_settings(), args.records), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
