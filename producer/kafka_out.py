"""Produce records to Kafka keyed by their natural key, and fail loudly on any undelivered one."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from headwater.sources import Source, format_time, record_key

log = logging.getLogger(__name__)

INVALID_KEY_PREFIX = "nokey|"


class ProduceError(RuntimeError):
    """At least one message was not acknowledged by the cluster."""


@dataclass(frozen=True)
class ProduceResult:
    """Counts of one pull-and-produce, returned to Airflow and printed by the CLI."""

    source: str
    topic: str
    pulled: int
    produced: int
    bytes: int
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def encode_value(record: Any) -> bytes:
    """The message value: the record as compact JSON, field order kept, byte-stable per record."""
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode()


def message_key(source: Source, record: Any) -> str:
    """The natural key; a record without one gets a key derived from its content (still stable)."""
    if isinstance(record, dict):
        try:
            return record_key(source, record)
        except KeyError:
            pass
    # Such a record is out of contract: keyed by its bytes it stays deterministic across re-runs,
    # and the consumer quarantines it with the reason instead of it vanishing here.
    return INVALID_KEY_PREFIX + hashlib.sha256(encode_value(record)).hexdigest()[:32]


def message_headers(
    source: Source, since: datetime, until: datetime, run_id: str
) -> list[tuple[str, bytes]]:
    """Headers every message of one run carries."""
    return [
        ("source", source.name.encode()),
        ("schema_version", str(source.schema_version).encode()),
        ("window_start", format_time(since, "iso8601").encode()),
        ("window_end", format_time(until, "iso8601").encode()),
        ("run_id", run_id.encode()),
    ]


def produce(
    records: Iterable[Any],
    source: Source,
    producer_config: dict[str, Any],
    *,
    since: datetime,
    until: datetime,
    run_id: str,
    progress: Callable[[int], None] | None = None,
    flush_timeout_s: float | None = None,
) -> ProduceResult:
    """Send every record to the source's topic and wait for every delivery report.

    Raises ProduceError when any message failed or was still undelivered at the end: a run that
    returns has had every one of its messages acknowledged by all in-sync replicas.
    """
    started = time.monotonic()
    producer = Producer(producer_config)
    headers = message_headers(source, since, until, run_id)
    failures: list[str] = []
    delivered = 0
    pulled = 0
    sent_bytes = 0

    def on_delivery(err: KafkaError | None, msg: Message) -> None:
        nonlocal delivered
        if err is not None:
            failures.append(f"key={msg.key()!r}: {err}")
        else:
            delivered += 1

    for record in records:
        pulled += 1
        value = encode_value(record)
        key = message_key(source, record).encode()
        while True:
            try:
                producer.produce(
                    source.topic, key=key, value=value, headers=headers, on_delivery=on_delivery
                )
                break
            except BufferError:
                # Local queue full: serve delivery reports until there is room again.
                producer.poll(0.5)
        sent_bytes += len(value) + len(key)
        producer.poll(0)
        if progress is not None:
            progress(pulled)

    timeout = flush_timeout_s
    if timeout is None:
        timeout = producer_config.get("message.timeout.ms", 300_000) / 1000 + 30
    remaining = producer.flush(timeout)
    seconds = time.monotonic() - started
    if failures or remaining or delivered != pulled:
        raise ProduceError(
            f"source={source.name} topic={source.topic} run_id={run_id}: {delivered}/{pulled} "
            f"acknowledged, {len(failures)} failed, {remaining} still in flight; "
            f"first errors: {failures[:3]}"
        )
    result = ProduceResult(source.name, source.topic, pulled, delivered, sent_bytes, seconds)
    log.info(
        "produce done source=%s topic=%s run_id=%s pulled=%d produced=%d bytes=%d seconds=%.2f",
        source.name,
        source.topic,
        run_id,
        pulled,
        delivered,
        sent_bytes,
        seconds,
    )
    return result
