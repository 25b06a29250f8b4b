"""Producer throughput against Kafka's own perf tool on the same brokers, measured in the same run.

    python bench/producer_bench.py [--records 60000]

1. pipeline: `producer.service.ingest_window` (what the Airflow task runs) pulls a window of the
   device simulator from the external-API stand-in and produces it with the project's producer
   config (acks=all, idempotence, lz4) to a fresh scratch topic (RF 2);
2. pull only: the same window pulled into memory; produce only: those records produced;
3. ceiling: `org.apache.kafka.tools.ProducerPerformance` on the same brokers, same record count,
   acks, idempotence, compression and linger, random payloads of the pipeline's average message
   size (key + value), the Java client's own batching (batch.size 16 KiB per partition);
4. matched ceiling: the same tool with the pipeline's real values as its payload file (random
   letters barely compress with lz4, JSON readings do) and librdkafka's batch size (1 MB), i.e.
   as close to what the project's producer sends as the tool gets.
producer_ratio = pipeline records/s ÷ perf-tool records/s (3); overlap_ratio = pipeline records/s ÷
the slower of pull only and produce only (1.0: the pipeline is as fast as its slower half, i.e. the
pull and the produce fully overlap; taking turns gives about 0.5 when the halves are equal).
All five run in each of --trials (5) interleaved rounds, since load on a shared machine drifts;
each ratio is the median of its rounds' ratios with their range (UNRELIABLE past ±15 %).
Prints one JSON object; the scratch topic is deleted at the end.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from measures import paired_ratios, percentile, rate, spread_summary
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


@dataclass
class Trial:
    """One interleaved round: each path once, records/s."""

    perf_tool: float
    pipeline: float
    produce_only: float
    pull_only: float
    matched: float
    load: float  # 1-minute load average when the trial started


def measure(settings: Settings, records: int = 60_000, trials: int = 5) -> dict[str, Any]:
    """Run the producer bench on the running stack; the result as a JSON-ready dict.

    `trials` interleaved rounds (perf tool, pipeline, produce only, pull only, matched perf tool,
    then again): every ratio is the median of its rounds' ratios with their spread.
    """
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
    matched_props = {**props, "batch.size": str(LIBRDKAFKA_BATCH_BYTES)}
    tmp: Path | None = None
    rounds: list[Trial] = []
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
        # The window once, untimed: the perf tool's record size and payloads come from it.
        stats = PullStats()
        window = list(pull(source, SINCE, until, settings, stats=stats))
        avg_message = sum(
            len(encode_value(r)) + len(message_key(source, r).encode()) for r in window
        ) / len(window)
        avg_value = sum(len(encode_value(r)) for r in window) / len(window)
        # In a file, not on the command line: the tool cannot parse a sasl.jaas.config there.
        tmp = Path(tempfile.mkdtemp(prefix="bench-perf-"))
        props_file = tmp / "producer.properties"
        props_file.write_text(properties_text(props))
        matched_file = tmp / "matched.properties"
        matched_file.write_text(properties_text(matched_props))
        payloads = tmp / "values.txt"
        # Compact JSON has no newline inside a value: one payload per line.
        payloads.write_bytes(b"\n".join(encode_value(r) for r in window))
        common: dict[str, Any] = {
            "java": java,
            "libs_dir": libs,
            "bootstrap_servers": settings.kafka.bootstrap_servers,
            "topic": topic,
            "num_records": len(window),
            "props": {},
            "config_file": props_file,
        }
        perf_command = perf_tool_command(**common, record_size=round(avg_message))
        matched_command = perf_tool_command(
            **{**common, "config_file": matched_file}, payload_file=payloads
        )
        produced = 0
        for n in range(trials):
            load = os.getloadavg()[0]
            perf = run_perf_tool(perf_command)
            # What the Airflow task does: pull the window and produce it, records streaming.
            started = time.perf_counter()
            pipeline = ingest_window(source, SINCE, until, settings, run_id=f"{topic}-p{n}")
            pipeline_rate = rate(pipeline.produced, time.perf_counter() - started)
            produced = pipeline.produced
            # The pull alone, into memory, then those records produced alone.
            started = time.perf_counter()
            pulled = list(pull(source, SINCE, until, settings))
            pull_rate = rate(len(pulled), time.perf_counter() - started)
            started = time.perf_counter()
            only = produce(pulled, source, config, since=SINCE, until=until, run_id=f"{topic}-o{n}")
            produce_rate = rate(only.produced, time.perf_counter() - started)
            matched = run_perf_tool(matched_command)
            rounds.append(
                Trial(
                    perf.records_per_s,
                    pipeline_rate,
                    produce_rate,
                    pull_rate,
                    matched.records_per_s,
                    load,
                )
            )
            log.info("producer bench trial=%d %s", n, rounds[-1])
    finally:
        delete_topics(admin, [topic])
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)

    def rates(name: str) -> list[float]:
        return [getattr(t, name) for t in rounds]

    def median_rate(name: str) -> float:
        return round(percentile(rates(name), 50.0), 1)

    slower_half = [min(t.pull_only, t.produce_only) for t in rounds]
    pairs = {
        "producer_ratio": paired_ratios(rates("pipeline"), rates("perf_tool")),
        "overlap_ratio": paired_ratios(rates("pipeline"), slower_half),
        "produce_only_ratio": paired_ratios(rates("produce_only"), rates("perf_tool")),
        "producer_ratio_vs_matched": paired_ratios(rates("pipeline"), rates("matched")),
        "produce_only_ratio_vs_matched": paired_ratios(rates("produce_only"), rates("matched")),
    }
    return {
        "trials": trials,
        "load_at_start": round(rounds[0].load, 2),
        "topic": {
            "partitions": settings.kafka.partitions,
            "replication_factor": settings.kafka.replication_factor,
        },
        "records": produced,
        "window": {"since": SINCE.isoformat(), "until": until.isoformat(), "devices": devices},
        "pages": stats.pages,
        "avg_message_bytes": round(avg_message, 1),
        "avg_value_bytes": round(avg_value, 1),
        "producer_config": redact_config(
            {k: v for k, v in config.items() if k != "bootstrap.servers"}
        ),
        "pipeline": {
            "records_per_s": median_rate("pipeline"),
            "spread": spread_summary(rates("pipeline"), 0),
        },
        "pull_only": {
            "records_per_s": median_rate("pull_only"),
            "spread": spread_summary(rates("pull_only"), 0),
        },
        "produce_only": {
            "records_per_s": median_rate("produce_only"),
            "spread": spread_summary(rates("produce_only"), 0),
        },
        "perf_tool": {
            "records_per_s": median_rate("perf_tool"),
            "spread": spread_summary(rates("perf_tool"), 0),
            "record_size": round(avg_message),
            "props": redact_config(props),
        },
        "perf_tool_matched": {
            "records_per_s": median_rate("matched"),
            "spread": spread_summary(rates("matched"), 0),
            "payload": "the pipeline's values",
            "props": redact_config(matched_props),
        },
        "rounds": [asdict(t) for t in rounds],
        **{f"{name}_pairs": summary for name, summary in pairs.items()},
        **{name: summary["median"] for name, summary in pairs.items()},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--records", type=int, default=60_000, help="records in the window")
    parser.add_argument("--trials", type=int, default=5, help="interleaved rounds")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    print(json.dumps(measure(get_settings(), args.records, args.trials), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
