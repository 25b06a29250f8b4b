"""The heartbeat document, the health verdict and the retry backoff (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

from consumer.status import (
    ConsumerState,
    health_verdict,
    heartbeat_document,
    status_id,
)
from headwater.clients import backoff, delay_after
from headwater.kafka_admin import OFFSET_INVALID, PartitionOffsets

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def state() -> ConsumerState:
    s = ConsumerState("host-1", "group-a", "host", 42, NOW, member_id="m-1")
    s.assigned = [("devices", 1), ("devices", 0)]
    s.partitions = [
        PartitionOffsets("devices", 1, 10, 0, 25),
        PartitionOffsets("devices", 0, OFFSET_INVALID, 0, 7),
    ]
    s.counters.consumed = 9
    return s


def test_heartbeat_document_shows_members_partitions_lag_and_counters() -> None:
    doc = heartbeat_document(state(), NOW)
    assert doc["assigned"] == ["devices[0]", "devices[1]"]
    assert doc["partitions"] == [
        {"topic": "devices", "partition": 0, "committed": None, "high": 7, "lag": 7},
        {"topic": "devices", "partition": 1, "committed": 10, "high": 25, "lag": 15},
    ]
    assert doc["lag_total"] == 22
    assert doc["counters"]["consumed"] == 9
    assert (doc["member_id"], doc["group"], doc["heartbeat_at"]) == ("m-1", "group-a", NOW)
    assert doc["last_error"] is None and doc["store_ok"] is True


def test_total_lag_is_unknown_when_one_partition_is() -> None:
    s = state()
    s.partitions.append(PartitionOffsets("devices", 2, 5, 0, OFFSET_INVALID))
    assert heartbeat_document(s, NOW)["lag_total"] is None


def test_status_id_names_group_and_instance() -> None:
    assert status_id("g", "host-9") == "consumer|g|host-9"


def test_health_verdict() -> None:
    assert health_verdict(
        seconds_since_tick=1, stale_after_s=30, store_ok=True, phase="running"
    ) == (
        True,
        [],
    )
    ok, problems = health_verdict(
        seconds_since_tick=45, stale_after_s=30, store_ok=False, phase="running"
    )
    assert not ok
    assert problems == ["consumer loop stale: last tick 45s ago", "MongoDB unavailable"]
    assert health_verdict(seconds_since_tick=0, stale_after_s=30, store_ok=True, phase="stopped")[
        1
    ] == ["consumer is stopped"]


def test_backoff_doubles_up_to_the_cap() -> None:
    # The consumer's store retries: backoff(HEADWATER_CONSUMER_BACKOFF_INITIAL_S, ..._MAX_S).
    wait = backoff(0.5, 10)
    assert [delay_after(wait, n) for n in range(1, 8)] == [0.5, 1, 2, 4, 8, 10, 10]
    assert delay_after(wait, 10_001) == 10
