"""Headwater's consumer against the peer users would pick instead: Kafka Connect's MongoDB sink.

    python bench/connect_bench.py [--messages 60000] [--trials 5]

The peer is the official MongoDB sink connector (mongo-kafka-connect 2.0.1) on a Kafka Connect
4.3.1 standalone worker, both resolved by Maven into .cache/connect (`make bench` does it), on
the same brokers and the same MongoDB server, configured to do the same work
(bench/connect_config.py: `_id` from the natural key, ReplaceOne upserts, errors tolerated into a
dead-letter topic, at-least-once). It logs in as the admin principal (a super user).

1. the consumer bench's workload (simulator readings and user events, ~1% invalid) is produced
   once to two fresh topics: every trial reads the same records, keys and values;
2. `--trials` pairs, interleaved: Headwater's `python -m consumer`, then the Connect worker, each
   a fresh process with a fresh consumer group and a fresh database (with the pipeline's indexes
   on the collections it writes), until every record is stored (Connect: or dead-lettered);
3. per trial: sustained docs/s (first to last document stored), docs/s including start-up
   (process start to the last document), the process's CPU seconds and peak RSS (psutil);
   per pair Headwater ÷ Connect, with its median and spread (over ±15 %: unreliable).

Headwater validates and quarantines (~1% of the records land in `rejected`); Connect stores every
record as it comes. Prints one JSON object; every process is stopped by its PID, and the topics,
groups, databases and the temp dir are deleted at the end.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient
from connect_config import (
    CONNECT_ROLE,
    ConnectRun,
    connector_properties,
    render_properties,
    worker_command,
    worker_properties,
)
from connect_results import is_complete, summarise, trial_figures
from consumer_bench import DATA_COLLECTIONS, SINCE, Workload, build_workload
from machine import load_average
from process_usage import UsageSampler, stop_process
from pymongo import MongoClient
from pymongo.database import Database
from pymongo.errors import PyMongoError

from consumer.pipeline import sources_by_topic
from db.schema import current_schema
from headwater.clients import kafka_security, mongo_client, producer_config, redact_uri
from headwater.contracts import Collections
from headwater.kafka_access import create_topics
from headwater.kafka_admin import admin_client, delete_topics, ensure_topics
from headwater.settings import REPO_ROOT, Settings, get_settings
from headwater.sources import load_sources
from infra.kafka_cluster import LOG4J2_CONFIG
from producer.kafka_out import message_key, produce

log = logging.getLogger("bench.connect")

CONNECTOR_JAR = "mongo-kafka-connect-*.jar"
# Where each contract topic lands, for both: Headwater's pipeline and the sink's topic overrides.
COLLECTION_OF = {"devices": Collections.READINGS, "user-events": Collections.USER_EVENTS}
POLL_S = 0.2
# Connect: with no progress for this long, count the dead-letter topic (records not stored).
STALL_S = 5.0
TRIAL_TIMEOUT_S = 900
STOP_TIMEOUT_S = 60


def connect_libs(settings: Settings) -> Path:
    """The worker's jars; RuntimeError naming the make target when they were never resolved."""
    libs = settings.stack.cache_dir / "connect" / "libs"
    if not list(libs.glob(CONNECTOR_JAR)):
        raise RuntimeError(
            f"no Kafka Connect jars in {libs}: `make bench` resolves them "
            "(or `make .cache/connect/.resolved`)"
        )
    return libs


def free_port() -> int:
    """A port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def prepare_sink_database(db: Database) -> None:
    """The pipeline's indexes on the collections the sink writes (no validators: it stores the
    records as they come, which the pipeline's validators would refuse): every index costs every
    insert, so both systems pay for the same ones."""
    collections = set(COLLECTION_OF.values())
    for index in current_schema().indexes:
        if index.collection in collections:
            db[index.collection].create_index(
                list(index.keys), name=index.name, unique=index.unique
            )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    stop_process(proc, STOP_TIMEOUT_S, "connect bench")


def _stored(db: Database, collections: Sequence[str]) -> int:
    return sum(db[c].estimated_document_count() for c in collections)


def run_trial(
    argv: list[str],
    env: dict[str, str],
    log_path: Path,
    db: Database,
    collections: Sequence[str],
    expected: int,
    dead_letters: Callable[[], int] | None = None,
) -> dict[str, float]:
    """Start one process, sample what it stored (and what it cost) until every record is
    accounted for, stop it; the trial's figures."""
    samples: list[tuple[float, int]] = []
    dead = 0
    with open(log_path, "wb") as log_file:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=REPO_ROOT, env=env, stdout=log_file, stderr=log_file)
        try:
            sampler = UsageSampler(proc.pid)
            last_count, last_progress = 0, started
            while True:
                now = time.perf_counter()
                stored = _stored(db, collections)
                sampler.sample()
                samples.append((now - started, stored))
                if stored > last_count:
                    last_count, last_progress = stored, now
                elif dead_letters and stored and now - last_progress > STALL_S:
                    dead = dead_letters()
                if is_complete(stored, expected, dead):
                    break
                if proc.poll() is not None:
                    raise RuntimeError(f"pid {proc.pid} exited with {proc.returncode}; {log_path}")
                if now - started > TRIAL_TIMEOUT_S:
                    raise RuntimeError(
                        f"stored {stored} of {expected} after {TRIAL_TIMEOUT_S}s; {log_path}"
                    )
                time.sleep(POLL_S)
            usage = sampler.usage()
        finally:
            _stop(proc)
    figures = trial_figures(samples, usage.cpu_s, usage.peak_rss_mib)
    figures["dead_lettered"] = float(dead_letters() if dead_letters else 0)
    return figures


def dead_letter_counter(settings: Settings, topic: str) -> tuple[Consumer, Callable[[], int]]:
    """A client that reads the dead-letter topic's high watermark (its one partition)."""
    client = Consumer(
        {
            "bootstrap.servers": settings.kafka.bootstrap_servers,
            **kafka_security(settings, CONNECT_ROLE),
            "group.id": f"{topic}-watermarks",
        }
    )

    def count() -> int:
        return int(client.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)[1])

    return client, count


def headwater_trial(
    client: MongoClient, settings: Settings, workload: Workload, topics: dict[str, str], name: str
) -> dict[str, float]:
    """`python -m consumer` on the topics, as the consumer principal, into a fresh database."""
    db = client[name.replace("-", "_")]
    env = dict(
        os.environ,
        HEADWATER_CONSUMER_TOPICS=",".join(f"{s}={c}" for c, s in topics.items()),
        # Named after the pipeline's group: the consumer principal's ACL covers that prefix.
        HEADWATER_CONSUMER_GROUP=f"{settings.kafka.consumer_group}-{name}",
        MONGO_DB=db.name,
        HEADWATER_CONSUMER_PORT=str(free_port()),
    )
    try:
        return run_trial(
            [sys.executable, "-m", "consumer"],
            env,
            settings.stack.log_dir / f"{name}.log",
            db,
            DATA_COLLECTIONS,
            len(workload.documents),
        )
    finally:
        client.drop_database(db.name)


def connect_trial(
    client: MongoClient,
    settings: Settings,
    topics: dict[str, str],
    expected: int,
    first_key: str,
    name: str,
    work_dir: Path,
    batch: int,
) -> dict[str, float]:
    """The standalone worker with the MongoDB sink on the topics, into a fresh database."""
    db = client[name.replace("-", "_")]
    run = ConnectRun(
        name=name,
        collections={topics[c]: COLLECTION_OF[c] for c in topics},
        database=db.name,
        dead_letter_topic=f"{name}-dlq",
        offsets_file=work_dir / f"{name}.offsets",
        rest_port=free_port(),
        batch=batch,
    )
    admin = admin_client(settings)
    worker_file = work_dir / f"{name}-worker.properties"
    connector_file = work_dir / f"{name}-connector.properties"
    watermarks, dead_letters = dead_letter_counter(settings, run.dead_letter_topic)
    try:
        prepare_sink_database(db)
        ensure_topics(admin, [run.dead_letter_topic], 1, settings.kafka.replication_factor)
        # Both hold a password (the admin's, maybe MongoDB's): owner only, in a 0700 temp dir.
        for path, props in (
            (worker_file, worker_properties(settings, run)),
            (connector_file, connector_properties(settings, run)),
        ):
            path.touch(mode=0o600)
            path.write_text(render_properties(props))
        argv = worker_command(connect_libs(settings), LOG4J2_CONFIG, worker_file, connector_file)
        figures = run_trial(
            argv,
            dict(os.environ),
            settings.stack.log_dir / f"{name}.log",
            db,
            list(set(run.collections.values())),
            expected,
            dead_letters,
        )
        # The point of the strategy: the natural key is the _id, so a replay overwrites.
        if db[Collections.READINGS].find_one({"_id": first_key}, {"_id": 1}) is None:
            raise RuntimeError(f"the sink did not store _id {first_key!r} from the record's key")
        return figures
    finally:
        watermarks.close()
        client.drop_database(db.name)
        delete_topics(admin, [run.dead_letter_topic])
        _delete_groups(admin, [run.group])


def _delete_groups(admin: AdminClient, groups: list[str]) -> None:
    """Best effort: a group left behind holds offsets of topics that are gone anyway."""
    for group, future in admin.delete_consumer_groups(groups, request_timeout=30).items():
        try:
            future.result()
        except KafkaException as exc:  # cleanup only: say so and go on
            log.info("connect bench group=%s not deleted: %s", group, exc)


def produce_once(
    settings: Settings, workload: Workload, topics: dict[str, str], run_id: str
) -> float:
    """The workload to its topics, as Headwater's producer sends it; the seconds it took."""
    declared = sources_by_topic(load_sources().values())
    started = time.perf_counter()
    for contract, scratch in topics.items():
        source = declared[contract].model_copy(update={"topic": scratch})
        produce(
            workload.records[contract],
            source,
            producer_config(settings),
            since=SINCE,
            until=SINCE,
            run_id=run_id,
        )
    return time.perf_counter() - started


def distinct_keys(workload: Workload) -> tuple[int, str]:
    """How many documents the sink can store (one per distinct key) and the first reading's key."""
    declared = sources_by_topic(load_sources().values())
    keys = {
        contract: [message_key(declared[contract], r) for r in records]
        for contract, records in workload.records.items()
    }
    return sum(len(set(k)) for k in keys.values()), keys["devices"][0]


def measure(
    settings: Settings,
    messages: int = 60_000,
    events_share: float = 0.2,
    trials: int = 5,
    batch: int = 2000,
) -> dict[str, Any]:
    """Run the interleaved trials on the running stack; the result as a JSON-ready dict."""
    if trials < 1:
        raise ValueError(f"trials must be at least 1, got {trials}")
    load_at_start = load_average()
    connect_libs(settings)  # fail before producing anything
    name = f"bench-connect-{uuid.uuid4().hex[:8]}"
    topics = {"devices": f"{name}-devices", "user-events": f"{name}-events"}
    workload = build_workload(messages, events_share, topics)
    expected_sink, first_key = distinct_keys(workload)
    admin = admin_client(settings)
    create_topics(admin, settings, list(topics.values()))
    work_dir = Path(tempfile.mkdtemp(prefix="headwater-connect-"))
    settings.stack.log_dir.mkdir(parents=True, exist_ok=True)
    headwater: list[dict[str, float]] = []
    connect: list[dict[str, float]] = []
    groups: list[str] = []
    failed: list[str] = []
    try:
        produce_s = produce_once(settings, workload, topics, name)
        log.info("connect bench produced messages=%d seconds=%.1f", workload.messages, produce_s)
        with mongo_client(settings) as client:
            for i in range(trials):
                trial = f"{name}-hw{i}"
                groups.append(f"{settings.kafka.consumer_group}-{trial}")
                # A pair counts only whole: a failed trial is recorded and the next pair runs.
                try:
                    ours = headwater_trial(client, settings, workload, topics, trial)
                    log.info("connect bench trial=%d headwater %s", i, _brief(ours))
                    theirs = connect_trial(
                        client,
                        settings,
                        topics,
                        expected_sink,
                        first_key,
                        f"{name}-cn{i}",
                        work_dir,
                        batch,
                    )
                    log.info("connect bench trial=%d connect %s", i, _brief(theirs))
                except (RuntimeError, PyMongoError, KafkaException) as exc:
                    log.exception("connect bench trial=%d failed", i)
                    failed.append(f"pair {i}: {type(exc).__name__}: {exc}")
                    continue
                headwater.append(ours)
                connect.append(theirs)
        if not headwater:
            raise RuntimeError("no pair of trials completed: " + "; ".join(failed))
    finally:
        delete_topics(admin, list(topics.values()))
        if groups:
            _delete_groups(admin, groups)
        shutil.rmtree(work_dir, ignore_errors=True)
    return {
        "mongo_uri": redact_uri(settings.mongo.uri),
        "load_average_at_start": load_at_start,
        "workload": {
            "messages": workload.messages,
            "headwater_documents": workload.per_collection(),
            "connect_documents": expected_sink,
            "rejected_share": round(workload.rejected / workload.messages, 4),
            "produce_s": round(produce_s, 2),
        },
        "peer": {
            "worker": "Kafka Connect 4.3.1 standalone, -Xms256m -Xmx2g",
            "connector": "org.mongodb.kafka:mongo-kafka-connect:2.0.1",
            "principal": CONNECT_ROLE,
            "tasks": 1,
            "poll_records": batch,
        },
        "failed_trials": failed,
        **summarise(headwater, connect),
    }


def _brief(figures: dict[str, float]) -> str:
    return (
        f"sustained={figures['sustained_docs_per_s']:.0f}/s "
        f"incl_start={figures['including_start_docs_per_s']:.0f}/s "
        f"startup={figures['startup_s']:.1f}s wall={figures['wall_s']:.1f}s "
        f"cpu={figures['cpu_s']:.1f}s rss={figures['peak_rss_mib']:.0f}MiB"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--messages", type=int, default=60_000)
    parser.add_argument("--events-share", type=float, default=0.2, help="share of user events")
    parser.add_argument("--trials", type=int, default=5, help="interleaved pairs of trials")
    parser.add_argument("--batch", type=int, default=2000, help="records per Connect poll")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    result = measure(get_settings(), args.messages, args.events_share, args.trials, args.batch)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
