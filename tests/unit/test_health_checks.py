"""The health checks' decisions on plain data: each names what is wrong and by how much."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from headwater.health_checks import (
    ALL_CHECKS,
    CHECK_BROKERS,
    CHECK_MONGO,
    FRESHNESS_FLOOR_S,
    check_brokers_alive,
    check_healthz,
    check_heartbeat_fresh,
    check_lag_under,
    check_mongo_answers,
    check_partitions_replicated,
    check_sources_fresh,
    freshness_bound_s,
)
from headwater.kafka_admin import OFFSET_INVALID, PartitionOffsets, PartitionState

NOW = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)
B1, B2 = "127.0.0.1:9092", "127.0.0.1:9094"


def test_brokers_all_alive_passes() -> None:
    result = check_brokers_alive([B1, B2], {1: B1, 2: B2})
    assert result["check"] == CHECK_BROKERS
    assert result["ok"] is True
    assert result["measured"]["alive"] == 2


def test_missing_broker_fails_and_names_its_host_port() -> None:
    result = check_brokers_alive([B1, B2], {1: B1})
    assert result["ok"] is False
    assert B2 in result["detail"] and "1 of 2" in result["detail"]
    assert result["measured"]["missing"] == [B2]


def test_no_broker_at_all_fails() -> None:
    result = check_brokers_alive([B1, B2], {})
    assert result["ok"] is False
    assert "2 of 2" in result["detail"] and "none" in result["detail"]


def test_fully_replicated_partitions_pass() -> None:
    states = [PartitionState("devices", p, 1, (1, 2), (1, 2)) for p in range(3)]
    result = check_partitions_replicated(states)
    assert result["ok"] is True
    assert result["measured"]["partitions"] == 3


def test_under_replicated_and_offline_partitions_are_named_with_isr() -> None:
    states = [
        PartitionState("devices", 0, 1, (1, 2), (1, 2)),
        PartitionState("devices", 1, 1, (1, 2), (1,)),
        PartitionState("matches", 2, -1, (2,), ()),
    ]
    result = check_partitions_replicated(states)
    assert result["ok"] is False
    assert "devices[1] isr=[1]/replicas=[1, 2]" in result["detail"]
    assert "matches[2] isr=[]/replicas=[2] offline" in result["detail"]
    assert "1 offline and 1 under-replicated of 3" in result["detail"]


def test_fresh_heartbeat_passes_and_naive_utc_is_understood() -> None:
    docs = [
        {"instance": "old", "heartbeat_at": (NOW - timedelta(hours=1)).replace(tzinfo=None)},
        {"instance": "live", "phase": "running", "heartbeat_at": NOW - timedelta(seconds=4)},
    ]
    result = check_heartbeat_fresh(docs, NOW, stale_after_s=30)
    assert result["ok"] is True
    assert result["measured"]["instance"] == "live"
    assert result["measured"]["age_s"] == 4.0


def test_stale_heartbeat_fails_and_names_its_age() -> None:
    docs = [{"instance": "c1", "heartbeat_at": (NOW - timedelta(seconds=95)).replace(tzinfo=None)}]
    result = check_heartbeat_fresh(docs, NOW, stale_after_s=30)
    assert result["ok"] is False
    assert "95s old" in result["detail"] and "65s over the 30s limit" in result["detail"]


def test_no_heartbeat_document_fails() -> None:
    result = check_heartbeat_fresh([], NOW, stale_after_s=30)
    assert result["ok"] is False
    assert "no consumer heartbeat" in result["detail"]


def _member(name: str, age_s: float, phase: str = "running", partitions: int = 3) -> dict:
    return {
        "instance": name,
        "phase": phase,
        "heartbeat_at": NOW - timedelta(seconds=age_s),
        "assigned": [f"devices[{p}]" for p in range(partitions)],
    }


def test_every_expected_member_live_passes_and_each_is_named() -> None:
    docs = [_member("consumer-1", 2, partitions=7), _member("consumer-2", 4, partitions=8)]
    result = check_heartbeat_fresh(docs, NOW, stale_after_s=30, expected_members=2)
    assert result["ok"] is True
    assert "2 of 2 expected members live" in result["detail"]
    assert "consumer-1 (phase running) heartbeat 2s old, 7 partitions" in result["detail"]
    assert result["measured"]["live_members"] == 2
    assert [m["instance"] for m in result["measured"]["members"]] == ["consumer-1", "consumer-2"]


def test_a_member_gone_fails_while_the_survivor_holds_every_partition() -> None:
    docs = [_member("consumer-1", 45, partitions=7), _member("consumer-2", 3, partitions=15)]
    result = check_heartbeat_fresh(docs, NOW, stale_after_s=30, expected_members=2)
    assert result["ok"] is False
    assert result["detail"].startswith("1 of 2 expected consumer members live")
    assert (
        "consumer-1 (phase running) heartbeat is 45s old, 15s over the 30s limit"
        in (result["detail"])
    )
    assert (
        "still live: consumer consumer-2 (phase running) heartbeat 3s old, 15 partitions"
        in (result["detail"])
    )
    # The group-level figures are the newest heartbeat's, as with one member.
    assert result["measured"]["instance"] == "consumer-2" and result["measured"]["age_s"] == 3.0


def test_a_stopped_member_is_not_live_however_fresh_its_last_heartbeat() -> None:
    docs = [_member("consumer-1", 1, phase="stopped", partitions=0), _member("consumer-2", 2)]
    result = check_heartbeat_fresh(docs, NOW, stale_after_s=30, expected_members=2)
    assert result["ok"] is False
    assert "consumer consumer-1 (phase stopped) left the group 1s ago" in result["detail"]


def test_old_heartbeats_of_retired_instances_count_for_nothing() -> None:
    docs = [_member("host-123", 86_400), _member("consumer-1", 2)]
    assert check_heartbeat_fresh(docs, NOW, 30, expected_members=1)["ok"] is True
    result = check_heartbeat_fresh(docs, NOW, 30, expected_members=3)
    assert result["ok"] is False
    assert (
        "host-123" in result["detail"]
        and "1 expected members never heartbeated" in (result["detail"])
    )


def test_lag_is_summed_per_topic_and_within_limit_passes() -> None:
    offsets = [
        PartitionOffsets("devices", 0, committed=90, low=0, high=100),
        PartitionOffsets("devices", 1, committed=95, low=0, high=100),
        PartitionOffsets("matches", 0, committed=OFFSET_INVALID, low=0, high=0),
    ]
    result = check_lag_under(offsets, max_lag_per_topic=20)
    assert result["ok"] is True
    assert result["measured"]["lag"] == {"devices": 15, "matches": 0}


def test_lag_over_limit_fails_naming_topic_lag_and_excess() -> None:
    offsets = [
        PartitionOffsets("devices", 0, committed=10, low=0, high=300),
        PartitionOffsets("devices", 1, committed=OFFSET_INVALID, low=50, high=100),
        PartitionOffsets("matches", 0, committed=5, low=0, high=5),
    ]
    result = check_lag_under(offsets, max_lag_per_topic=100)
    assert result["ok"] is False
    assert "devices lag 340 > 100 (by 240)" in result["detail"]
    assert "matches" not in result["detail"]


def test_unknown_lag_fails() -> None:
    offsets = [PartitionOffsets("devices", 0, committed=OFFSET_INVALID, low=-1, high=-1)]
    result = check_lag_under(offsets, max_lag_per_topic=100)
    assert result["ok"] is False
    assert "devices[0]" in result["detail"]


def test_freshness_bound_is_three_intervals_with_a_floor() -> None:
    assert freshness_bound_s(3600) == 3 * 3600
    assert freshness_bound_s(10) == FRESHNESS_FLOOR_S


def test_sources_within_bound_pass() -> None:
    newest = {"devices": (NOW - timedelta(seconds=70)).replace(tzinfo=None)}
    result = check_sources_fresh(newest, {"devices": 180.0}, NOW)
    assert result["ok"] is True
    assert result["measured"]["age_s"] == {"devices": 70.0}


def test_stale_or_never_stored_source_fails_naming_source_and_age() -> None:
    newest = {"devices": NOW - timedelta(seconds=500), "matches": None}
    result = check_sources_fresh(newest, {"devices": 180.0, "matches": 259200.0}, NOW)
    assert result["ok"] is False
    assert "devices: newest is 500s old, 320s over 180s" in result["detail"]
    assert "matches: no document stored" in result["detail"]


def test_sources_not_in_bounds_are_not_checked() -> None:
    newest = {"devices": NOW, "work-orders": NOW - timedelta(days=30)}
    assert check_sources_fresh(newest, {"devices": 180.0}, NOW)["ok"] is True


def test_all_healthz_200_passes() -> None:
    answers = {
        "consumer": ("http://h:1/healthz", 200, "ok"),
        "api": ("http://h:2/healthz", 200, ""),
    }
    assert check_healthz(answers)["ok"] is True


def test_unhealthy_or_unreachable_service_fails_naming_it() -> None:
    answers = {
        "consumer": ("http://h:1/healthz", 503, "consumer loop stale"),
        "events-api": ("http://h:2/healthz", None, "ConnectionError: refused"),
        "external-api": ("http://h:3/healthz", 200, "ok"),
    }
    result = check_healthz(answers)
    assert result["ok"] is False
    assert "consumer http://h:1/healthz answered 503: consumer loop stale" in result["detail"]
    assert "events-api http://h:2/healthz did not answer" in result["detail"]
    assert "external-api" not in result["detail"]
    assert result["measured"]["status"]["events-api"] is None


def test_mongo_answering_ping_within_its_bound_passes() -> None:
    result = check_mongo_answers(0.012, None, bound_s=3)
    assert result["check"] == CHECK_MONGO and CHECK_MONGO in ALL_CHECKS
    assert result["ok"] is True
    assert result["measured"] == {"bound_s": 3, "elapsed_s": 0.012, "error": None}


def test_mongo_not_answering_ping_within_its_bound_fails_naming_the_bound_and_error() -> None:
    result = check_mongo_answers(None, "NetworkTimeout: 127.0.0.1:27017: timed out", bound_s=3)
    assert result["ok"] is False
    assert "did not answer ping within 3s" in result["detail"]
    assert "NetworkTimeout" in result["detail"]
    assert result["measured"]["elapsed_s"] is None


def test_mongo_answering_later_than_its_bound_fails() -> None:
    result = check_mongo_answers(4.5, None, bound_s=3)
    assert result["ok"] is False
    assert "4.5s, over the 3s bound" in result["detail"]
