"""Small Kafka helpers the integration tests share: produce with acks, read a topic back."""

from __future__ import annotations

import time

from confluent_kafka import Consumer, Producer

from headwater.clients import kafka_security, producer_config
from headwater.settings import Settings


def produce_all(
    settings: Settings,
    topic: str,
    records: list[tuple[str, str]],
    headers: list[tuple[str, bytes]] | None = None,
) -> list[str]:
    """Produce (key, value) pairs with the pipeline's producer config (and these headers on each);
    returns the acked values."""
    producer = Producer(producer_config(settings))
    acked: list[str] = []
    errors: list[str] = []

    def on_delivery(err: object, msg: object) -> None:
        if err is not None:
            errors.append(str(err))
        else:
            acked.append(msg.value().decode())  # type: ignore[attr-defined]

    for key, value in records:
        producer.produce(topic, key=key, value=value, headers=headers, on_delivery=on_delivery)
        producer.poll(0)
    assert producer.flush(90) == 0
    assert errors == [], errors[:3]
    return acked


def consume_all(
    settings: Settings, topic: str, group: str, expected: int, timeout_s: float = 90
) -> list[tuple[str, str]]:
    """Read from the beginning until `expected` messages (or the timeout); (key, value) in order.

    After reaching `expected` it keeps polling briefly, so that extra messages are seen too.
    """
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka.bootstrap_servers,
            # Test tooling reads as the admin principal (any topic, any group).
            **kafka_security(settings, "admin"),
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    got: list[tuple[str, str]] = []
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + timeout_s
        quiet_until: float | None = None
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and not msg.error():
                got.append((msg.key().decode(), msg.value().decode()))
                continue
            if len(got) >= expected:
                quiet_until = quiet_until or time.monotonic() + 2
                if time.monotonic() > quiet_until:
                    break
    finally:
        consumer.close()
    return got
