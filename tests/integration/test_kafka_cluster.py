"""The two-broker KRaft cluster: metadata, replication, acks=all delivery, and losing a broker."""

from __future__ import annotations

import time
from collections import defaultdict

from headwater.kafka_admin import admin_client, cluster_brokers, partition_states
from headwater.settings import Settings
from headwater.sources import pipeline_topics
from infra import stack
from tests.integration.kafka_helpers import consume_all, produce_all


def wait_for_isr(settings: Settings, topic: str, size: int, timeout_s: float = 120) -> list:
    admin = admin_client(settings)
    deadline = time.monotonic() + timeout_s
    while True:
        states = partition_states(admin, [topic])
        if states and all(len(p.isr) == size and p.leader >= 0 for p in states):
            return states
        if time.monotonic() > deadline:
            raise AssertionError(f"ISR did not reach {size}: {states}")
        time.sleep(1)


def test_cluster_metadata_shows_exactly_two_brokers(live_stack: Settings) -> None:
    brokers = cluster_brokers(admin_client(live_stack))
    expected = {f"{live_stack.kafka.host}:{p}" for p in live_stack.kafka.broker_ports}
    assert set(brokers.values()) == expected
    assert len(brokers) == 2


def test_pipeline_topics_have_rf2_and_full_isr(live_stack: Settings) -> None:
    states = partition_states(admin_client(live_stack), pipeline_topics())
    assert {s.topic for s in states} == set(pipeline_topics())
    for state in states:
        assert len(state.replicas) == 2, state
        assert sorted(state.isr) == sorted(state.replicas), state
        assert state.leader in state.replicas, state


def test_acks_all_produce_then_consume_keeps_per_key_order(
    live_stack: Settings, topic: str, unique_name: str
) -> None:
    records = [(f"key-{i % 13}", f"{i}") for i in range(2000)]
    acked = produce_all(live_stack, topic, records)
    assert sorted(acked, key=int) == [v for _, v in records]

    got = consume_all(live_stack, topic, unique_name, len(records))
    assert len(got) == len(records)
    per_key: dict[str, list[int]] = defaultdict(list)
    for key, value in got:
        per_key[key].append(int(value))
    for key, values in per_key.items():
        assert values == sorted(values), f"order broken for {key}"
    assert sorted(int(v) for _, v in got) == list(range(2000))


def test_losing_one_broker_keeps_the_pipeline_writing(
    live_stack: Settings, topic: str, unique_name: str
) -> None:
    before = [(f"k{i % 7}", f"before-{i}") for i in range(500)]
    produce_all(live_stack, topic, before)

    killed = stack.kill_program(live_stack, "kafka-broker2")
    assert not stack.alive(killed)
    try:
        during = [(f"k{i % 7}", f"during-{i}") for i in range(500)]
        acked_during = produce_all(live_stack, topic, during)
        assert len(acked_during) == len(during)
        got = consume_all(live_stack, topic, unique_name + "-a", len(before) + len(during))
        assert {v for _, v in got} == {v for _, v in before + during}
    finally:
        stack.start_program(live_stack, "kafka-broker2")

    states = wait_for_isr(live_stack, topic, 2)
    assert all(len(s.replicas) == 2 for s in states)
    # Every acknowledged message is still there, read by a fresh group from the restarted cluster.
    got = consume_all(live_stack, topic, unique_name + "-b", len(before) + len(during))
    assert sorted(v for _, v in got) == sorted(v for _, v in before + during)
