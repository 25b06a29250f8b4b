"""Helpers the consumer and db integration tests share (this module holds no tests).

The consumer runs as a real `python -m consumer` subprocess with env overrides for its topics,
group, database and port, and is stopped or killed by its own PID only.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import NewTopic
from pymongo.database import Database
from pymongo.errors import PyMongoError

from headwater.clients import kafka_security, mongo_client, producer_config
from headwater.kafka_access import grant, grant_topics, group_grants
from headwater.kafka_admin import TOPIC_CONFIG, admin_client, delete_topics, wait_replicated
from headwater.settings import REPO_ROOT, Settings
from headwater.sources import get_source
from infra import stack, supervisor
from infra.health import check_kafka, check_mongo
from producer.kafka_out import ProduceResult, produce

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def require_kafka_and_mongo(settings: Settings) -> Settings:
    """Kafka and MongoDB of the test stack (all the consumer needs), healthy.

    The stack is started only when it is not running at all. A service that is down while the
    stack runs is another test's chaos (a killed broker, a held-down MongoDB): we wait for it to
    come back rather than restart it under that test. (`live_stack` waits for every service,
    including the HTTP sources, which these tests do not use.)
    """
    if not supervisor.is_running(settings):
        try:
            stack.up(settings)
        except stack.StackError:
            pass  # a service these tests do not use may not come up; checked below
    wait_for(
        lambda: check_kafka(settings).ok and check_mongo(settings).ok,
        300,
        "Kafka (both brokers, full ISR) and MongoDB of the test stack",
        interval_s=2,
    )
    return settings


def wait_for(
    condition: Callable[[], Any], timeout_s: float, what: str, interval_s: float = 0.5
) -> Any:
    """Poll until condition() is truthy and return it; AssertionError naming `what` on timeout."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = condition()
        except (PyMongoError, KafkaException) as exc:  # restarts under a chaos test
            last = exc
        else:
            if last:
                return last
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what} (last: {last!r})")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def db_name(unique_name: str) -> str:
    return unique_name.replace("-", "_")


@contextmanager
def mongo_database(settings: Settings, name: str) -> Iterator[Database]:
    """A fresh database, dropped afterwards."""
    client = mongo_client(settings)
    try:
        yield client[name]
    finally:
        try:
            client.drop_database(name)
        except PyMongoError:
            pass
        client.close()


@contextmanager
def kafka_topics(
    settings: Settings, names: list[str], config: dict[str, str] | None = None
) -> Iterator[list[str]]:
    """Fresh topics with the pipeline's partitions and RF (plus `config`), deleted afterwards."""
    admin = admin_client(settings)
    k = settings.kafka
    topic_config = {**TOPIC_CONFIG, **(config or {})}
    # Granted first: see headwater.kafka_access.create_topics.
    grant_topics(admin, settings, names)
    futures = admin.create_topics(
        [NewTopic(n, k.partitions, k.replication_factor, config=topic_config) for n in names],
        operation_timeout=30,
        request_timeout=30,
    )
    for future in futures.values():
        future.result()
    wait_replicated(admin, names, k.replication_factor)
    try:
        yield names
    finally:
        try:
            delete_topics(admin, names)
        except Exception:  # noqa: BLE001 - cleanup must not hide the test's own failure
            pass


def produce_records(
    settings: Settings, source_name: str, topic: str, records: list[Any], run_id: str
) -> ProduceResult:
    """Produce like an ingest run: the producer library, the source's headers, keyed records."""
    source = get_source(source_name).model_copy(update={"topic": topic})
    since = datetime.fromisoformat("2026-11-23T00:00:00+00:00")
    return produce(
        records,
        source,
        producer_config(settings),
        since=since,
        until=since,
        run_id=run_id,
        flush_timeout_s=150,
    )


def produce_raw(
    settings: Settings,
    topic: str,
    messages: list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]],
    **overrides: Any,
) -> None:
    """Produce (key, value, headers) exactly as given; fails unless every one is acknowledged."""
    producer = Producer(producer_config(settings, overrides))
    errors: list[str] = []

    def on_delivery(err: Any, _msg: Any) -> None:
        if err is not None:
            errors.append(str(err))

    for key, value, headers in messages:
        producer.produce(topic, key=key, value=value, headers=headers, on_delivery=on_delivery)
        producer.poll(0)
    assert producer.flush(150) == 0
    assert errors == []


def pipeline_headers(source: str, version: int = 1) -> list[tuple[str, bytes]]:
    return [
        ("source", source.encode()),
        ("schema_version", str(version).encode()),
        ("run_id", b"test-run"),
    ]


def event_id(ms: int, n: int) -> str:
    """A well-formed 26-character time-ordered event id (ULID layout) for test events."""
    value = (ms << 80) | n
    return "".join(CROCKFORD[(value >> (5 * i)) & 31] for i in reversed(range(26)))


def user_event(ms: int, n: int, user_id: str, **changes: Any) -> dict[str, Any]:
    """A user event as the events API stores it."""
    received = datetime.fromtimestamp(ms / 1000, tz=UTC)
    event = {
        "event_id": event_id(ms, n),
        "user_id": user_id,
        "event_type": "page.view",
        "occurred_at": None,
        "properties": {"n": n},
        "received_at": received.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    }
    event.update(changes)
    return event


def committed_offsets(
    settings: Settings, group: str, topics: list[str]
) -> dict[tuple[str, int], int]:
    """The group's committed offset per partition (-1001 when none)."""
    parts = [TopicPartition(t, p) for t in topics for p in range(settings.kafka.partitions)]
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka.bootstrap_servers,
            **kafka_security(settings, "admin"),
            "group.id": group,
        }
    )
    try:
        return {(tp.topic, tp.partition): tp.offset for tp in consumer.committed(parts, timeout=20)}
    finally:
        consumer.close()


def high_watermarks(settings: Settings, topics: list[str]) -> dict[tuple[str, int], int]:
    """The end offset of every partition."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka.bootstrap_servers,
            **kafka_security(settings, "admin"),
            "group.id": "watermarks",
        }
    )
    try:
        return {
            (t, p): consumer.get_watermark_offsets(TopicPartition(t, p), timeout=20)[1]
            for t in topics
            for p in range(settings.kafka.partitions)
        }
    finally:
        consumer.close()


def offsets_committed_to_the_end(settings: Settings, group: str, topics: list[str]) -> bool:
    high = high_watermarks(settings, topics)
    committed = committed_offsets(settings, group, topics)
    return all(committed[tp] == end for tp, end in high.items() if end > 0)


def counts(db: Database) -> dict[str, int]:
    """Documents per pipeline collection."""
    return {
        c: db[c].count_documents({})
        for c in ("readings", "user_events", "work_orders", "matches", "rejected")
    }


def landed(db: Database) -> int:
    """Documents written by the consumer (data and rejections)."""
    return sum(counts(db).values())


@dataclass
class ConsumerProcess:
    """`python -m consumer` as a subprocess with its own topics, group, database and port."""

    settings: Settings
    topic_map: dict[str, str]
    group: str
    database: str
    log_path: Path
    instance: str = "member-1"
    port: int = field(default_factory=free_port)
    extra_env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> ConsumerProcess:
        # The test's own group, which the stack's ACLs (named after the pipeline's) do not cover.
        grant(admin_client(self.settings), self.settings, group_grants(self.group))
        env = dict(os.environ)
        env.update(
            {
                "HEADWATER_CONSUMER_TOPICS": ",".join(
                    f"{a}={c}" for a, c in self.topic_map.items()
                ),
                "KAFKA_CONSUMER_GROUP": self.group,
                "MONGO_DB": self.database,
                "HEADWATER_CONSUMER_PORT": str(self.port),
                "HEADWATER_CONSUMER_INSTANCE": self.instance,
                "HEADWATER_CONSUMER_HEARTBEAT_INTERVAL_S": "1",
                "HEADWATER_CONSUMER_BACKOFF_MAX_S": "2",
                "HEADWATER_CONSUMER_MONGO_TIMEOUT_MS": "2000",
                **self.extra_env,
            }
        )
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "consumer"],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        wait_for(self.healthz_reachable, 60, f"consumer {self.instance} /healthz")
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def healthz_reachable(self) -> bool:
        assert self.alive(), f"consumer exited: {self.log_tail()}"
        try:
            requests.get(f"http://127.0.0.1:{self.port}/healthz", timeout=2)
            return True
        except requests.RequestException:
            return False

    def healthz(self) -> tuple[int, dict[str, Any]]:
        resp = requests.get(f"http://127.0.0.1:{self.port}/healthz", timeout=5)
        return resp.status_code, resp.json()

    def metrics(self) -> str:
        return requests.get(f"http://127.0.0.1:{self.port}/metrics", timeout=5).text

    def kill(self) -> None:
        """SIGKILL by PID: a crash, nothing flushed, nothing committed on the way out."""
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
            assert self.process is not None
            self.process.wait(30)

    def stop(self, timeout_s: float = 60) -> int:
        """SIGTERM and wait: the consumer finishes its batch, commits and leaves the group."""
        assert self.process is not None
        if self.alive():
            os.kill(self.pid, signal.SIGTERM)
            try:
                return self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError(f"no stop on SIGTERM: {self.log_tail()}") from None
        return int(self.process.returncode)

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@contextmanager
def running_consumers(*consumers: ConsumerProcess) -> Iterator[tuple[ConsumerProcess, ...]]:
    """Start the consumers; whatever happens, kill (by PID) those still running at the end."""
    try:
        for c in consumers:
            c.start()
        yield consumers
    finally:
        for c in consumers:
            c.kill()


def heartbeat(db: Database, group: str, instance: str) -> dict[str, Any] | None:
    return db.pipeline_status.find_one({"_id": f"consumer|{group}|{instance}"})


def restart_mongo(settings: Settings, timeout_s: float = 180) -> None:
    """Release MongoDB after `stack.kill_program` and wait until it answers again."""
    try:
        stack.start_program(settings, "mongo", timeout_s=timeout_s)
    except stack.StackError:
        # start_program also waits for services these tests do not use; MongoDB is what counts.
        pass
    wait_for(lambda: check_mongo(settings).ok, 60, "MongoDB to answer again")
