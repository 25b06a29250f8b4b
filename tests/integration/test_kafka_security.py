"""Kafka lets in only who belongs: SASL/SCRAM on every listener, ACLs per role (StandardAuthorizer).

Each case is refused by the brokers themselves; the control case beside it (the same call by the
principal whose job it is) succeeds, so a refusal is never a broken client in disguise.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient

from headwater.clients import admin_config, kafka_security, producer_config
from headwater.kafka_admin import admin_client, delete_topics, ensure_topics
from headwater.settings import Settings
from headwater.sources import get_source, pipeline_topics
from producer.kafka_out import ProduceError, produce

SINCE = datetime.fromisoformat("2026-11-23T00:00:00+00:00")


def deliveries(config: dict[str, Any], topic: str, count: int = 3) -> list[KafkaError | None]:
    """Produce `count` messages with `config`: each delivery report's error (None = acked)."""
    producer = Producer({**config, "message.timeout.ms": 10_000})
    reports: list[KafkaError | None] = []
    for i in range(count):
        producer.produce(
            topic, key=f"k{i}", value=b"{}", on_delivery=lambda err, _m: reports.append(err)
        )
    try:
        producer.flush(30)
    except KafkaException as exc:
        # A fatal refusal (an idempotent producer denied its producer id) fails every message.
        return [exc.args[0]] * count
    return reports


@pytest.fixture
def unowned_topic(live_stack: Settings) -> Iterator[str]:
    """A topic the admin created and granted to nobody: no declared source owns it."""
    name = f"intruder-{uuid.uuid4().hex[:8]}"
    admin = admin_client(live_stack)
    ensure_topics(admin, [name], live_stack.kafka.partitions, live_stack.kafka.replication_factor)
    yield name
    delete_topics(admin, [name])


def test_a_client_without_credentials_is_refused_by_every_broker(live_stack: Settings) -> None:
    anonymous = {"bootstrap.servers": live_stack.kafka.bootstrap_servers, "log_level": 0}
    topic = pipeline_topics()[0]
    # It cannot produce: the brokers drop the connection before any request.
    reports = deliveries(anonymous, topic)
    assert len(reports) == 3
    assert all(r is not None and r.code() == KafkaError._MSG_TIMED_OUT for r in reports)
    # Nor read the metadata (a deletion would need it first).
    with pytest.raises(KafkaException):
        AdminClient({**anonymous, "socket.timeout.ms": 5000}).list_topics(timeout=8)
    # The producer principal, the same call: acked.
    assert deliveries(producer_config(live_stack), topic, 1) == [None]


def test_a_wrong_password_fails_authentication(live_stack: Settings) -> None:
    errors: list[KafkaError] = []
    config = {
        **admin_config(live_stack, "producer"),
        "sasl.password": "not-the-password",
        "error_cb": errors.append,
        "log_level": 0,
    }
    admin = AdminClient(config)
    with pytest.raises(KafkaException):
        admin.list_topics(timeout=8)
    for _ in range(20):  # error_cb is served by poll; bounded: each waits at most 0.5 s
        if errors:
            break
        admin.poll(0.5)
    assert any(e.code() == KafkaError._AUTHENTICATION for e in errors), errors


def test_the_producer_cannot_write_a_topic_it_does_not_own(
    live_stack: Settings, unowned_topic: str
) -> None:
    reports = deliveries(producer_config(live_stack), unowned_topic)
    assert [r.code() if r else None for r in reports] == [KafkaError.TOPIC_AUTHORIZATION_FAILED] * 3
    # Through the pipeline's own produce: the run fails, nothing is reported as produced.
    source = get_source("devices").model_copy(update={"topic": unowned_topic})
    record = {"device_id": "d-1", "ts": SINCE.isoformat(), "value": 1.0}
    with pytest.raises(ProduceError):
        produce([record], source, producer_config(live_stack), since=SINCE, until=SINCE, run_id="x")
    # The admin (whose topic it is) writes it.
    assert deliveries(producer_config(live_stack, role="admin"), unowned_topic, 1) == [None]


def test_the_consumer_reads_its_topics_but_cannot_write_or_delete_them(
    live_stack: Settings,
) -> None:
    topic = pipeline_topics()[0]
    consumer_as_producer = {**producer_config(live_stack), **kafka_security(live_stack, "consumer")}
    # Idempotent, as every Headwater producer: it gets a producer id (it may write one topic,
    # the late-data notices) and is refused on the source's topic.
    reports = deliveries(consumer_as_producer, topic, 1)
    assert [r.code() if r else None for r in reports] == [KafkaError.TOPIC_AUTHORIZATION_FAILED]
    # ...while the notices topic takes its message (the control case).
    notices = live_stack.kafka.late_notices_topic
    assert deliveries(consumer_as_producer, notices, 1) == [None]
    # Plain: refused on the topic.
    reports = deliveries({**consumer_as_producer, "enable.idempotence": False}, topic, 1)
    assert [r.code() if r else None for r in reports] == [KafkaError.TOPIC_AUTHORIZATION_FAILED]
    consumer_admin = admin_client(live_stack, "consumer")
    futures = consumer_admin.delete_topics([topic], operation_timeout=15)
    with pytest.raises(KafkaException) as refused:
        futures[topic].result()
    assert refused.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert topic in admin_client(live_stack).list_topics(timeout=10).topics


def test_the_health_checks_can_look_but_not_read_messages_nor_join_the_group(
    live_stack: Settings,
) -> None:
    topic = pipeline_topics()[0]
    health = admin_client(live_stack, "health")
    # Looking is its job: the pipeline topics are visible, a topic nobody granted is not.
    assert set(pipeline_topics()) <= set(health.list_topics(timeout=10).topics)
    errors: list[str] = []
    consumer = Consumer(
        {
            "bootstrap.servers": live_stack.kafka.bootstrap_servers,
            **kafka_security(live_stack, "health"),
            "group.id": live_stack.kafka.consumer_group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "error_cb": lambda e: errors.append(str(e)),
            "log_level": 0,
        }
    )
    try:
        consumer.subscribe([topic])
        refusal = None
        for _ in range(30):  # bounded: each poll waits at most 1 s
            msg = consumer.poll(1.0)
            if msg is not None and msg.error():
                refusal = msg.error()
                break
            assert msg is None or msg.error(), "the health principal read a message"
        assert refusal is not None, f"no refusal reported; errors: {errors}"
        assert refusal.code() in (
            KafkaError.GROUP_AUTHORIZATION_FAILED,
            KafkaError.TOPIC_AUTHORIZATION_FAILED,
        ), refusal
    finally:
        consumer.close()
