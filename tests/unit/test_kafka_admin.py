"""A consumer group's offsets and lag: the "nothing committed" sentinel is never counted as lag."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from confluent_kafka import ConsumerGroupState, TopicPartition
from confluent_kafka.admin import OffsetSpec

from headwater.kafka_admin import (
    OFFSET_INVALID,
    GroupMember,
    PartitionOffsets,
    group_members,
    group_offsets,
    partition_lag,
    wait_replicated,
)


@pytest.mark.parametrize(
    ("committed", "low", "high", "lag"),
    [
        (100, 0, 150, 50),  # high watermark - committed
        (150, 0, 150, 0),  # caught up
        (160, 0, 150, 0),  # watermark older than the commit: never negative
        (OFFSET_INVALID, 20, 150, 130),  # nothing committed: all retained messages are behind
        (-1, 20, 150, 130),  # any negative offset means nothing committed
        (OFFSET_INVALID, 0, 0, 0),  # nothing committed, nothing to read
        (OFFSET_INVALID, OFFSET_INVALID, 150, None),  # unknown low watermark
        (100, 0, OFFSET_INVALID, None),  # unknown high watermark
        (0, 0, 0, 0),  # empty partition
    ],
)
def test_partition_lag(committed: int, low: int, high: int, lag: int | None) -> None:
    assert partition_lag(committed, low, high) == lag


def test_lag_of_an_uncommitted_partition_is_what_is_retained_not_the_sentinel() -> None:
    # high - OFFSET_INVALID would be 1101 messages that do not exist.
    assert partition_lag(OFFSET_INVALID, 95, 100) == 5


@dataclass
class _Done:
    value: Any

    def result(self) -> Any:
        return self.value


@dataclass
class _Partition:
    leader: int = 1
    replicas: list[int] = field(default_factory=lambda: [1, 2])
    isrs: list[int] = field(default_factory=lambda: [1, 2])


@dataclass
class _Topic:
    partitions: dict[int, _Partition]
    error: Any = None


@dataclass
class _Metadata:
    topics: dict[str, _Topic]


@dataclass
class _GroupAnswer:
    topic_partitions: list[TopicPartition]


@dataclass
class _Offset:
    offset: int


class FakeAdmin:
    """An AdminClient's answers for one topic of three partitions; only partition 0 is committed."""

    def __init__(self) -> None:
        self.low = {0: 10, 1: 40, 2: 0}
        self.high = {0: 100, 1: 60, 2: 7}

    def list_topics(self, timeout: float) -> _Metadata:
        return _Metadata({"devices": _Topic({p: _Partition() for p in range(3)})})

    def list_consumer_group_offsets(self, request: list[Any], request_timeout: float) -> dict:
        # A partition the group never committed: OFFSET_INVALID (1), or left out of the answer (2).
        answer = [TopicPartition("devices", 0, 90), TopicPartition("devices", 1, OFFSET_INVALID)]
        return {request[0].group_id: _Done(_GroupAnswer(answer))}

    def list_offsets(self, requests: dict[TopicPartition, Any], request_timeout: float) -> dict:
        earliest = all(isinstance(spec, type(OffsetSpec.earliest())) for spec in requests.values())
        source = self.low if earliest else self.high
        return {tp: _Done(_Offset(source[tp.partition])) for tp in requests}


def test_group_offsets_are_partition_offsets_with_the_sentinel_when_uncommitted() -> None:
    offsets = group_offsets(FakeAdmin(), "g", ["devices"])  # type: ignore[arg-type]
    assert all(isinstance(o, PartitionOffsets) for o in offsets)
    by_partition = {o.partition: o for o in offsets}
    assert by_partition[0].committed == 90
    assert by_partition[1].committed == by_partition[2].committed == OFFSET_INVALID
    assert [partition_lag(o.committed, o.low, o.high) for o in offsets] == [10, 20, 7]


@dataclass
class _Assignment:
    topic_partitions: list[TopicPartition]


@dataclass
class _Member:
    member_id: str
    client_id: str
    host: str
    assignment: _Assignment | None


@dataclass
class _Description:
    state: ConsumerGroupState
    members: list[_Member]


class GroupAdmin:
    """An AdminClient describing a group mid-rebalance: one member has nothing assigned yet."""

    def describe_consumer_groups(self, groups: list[str], request_timeout: float) -> dict:
        members = [
            _Member("m-2", "headwater-consumer-consumer-2", "/127.0.0.1", None),
            _Member(
                "m-1",
                "headwater-consumer-consumer-1",
                "/127.0.0.1",
                _Assignment([TopicPartition("devices", 0), TopicPartition("devices", 2)]),
            ),
        ]
        return {groups[0]: _Done(_Description(ConsumerGroupState.COMPLETING_REBALANCING, members))}


def test_group_members_are_each_members_partitions_by_client_id() -> None:
    state, members = group_members(GroupAdmin(), "g")  # type: ignore[arg-type]
    assert state == "COMPLETING_REBALANCING"
    assert members == [
        GroupMember(
            "m-1",
            "headwater-consumer-consumer-1",
            "/127.0.0.1",
            frozenset({("devices", 0), ("devices", 2)}),
        ),
        GroupMember("m-2", "headwater-consumer-consumer-2", "/127.0.0.1", frozenset()),
    ]


@dataclass
class _Part:
    id: int
    leader: int
    isrs: list[int]


class ReplicatingAdmin:
    """Metadata whose topic appears, then gets its leader, then its second in-sync replica."""

    def __init__(self) -> None:
        self.answers = [
            {},
            {"t": _Topic({0: _Part(0, -1, [])})},
            {"t": _Topic({0: _Part(0, 1, [1])})},
            {"t": _Topic({0: _Part(0, 1, [1, 2])})},
        ]
        self.calls = 0

    def list_topics(self, timeout: float) -> _Metadata:
        self.calls += 1
        return _Metadata(self.answers[min(self.calls, len(self.answers)) - 1])


def test_wait_replicated_returns_once_every_partition_has_its_full_isr() -> None:
    admin = ReplicatingAdmin()
    wait_replicated(admin, ["t"], replication_factor=2, timeout_s=10)  # type: ignore[arg-type]
    assert admin.calls == 4


def test_wait_replicated_gives_up_with_what_is_missing() -> None:
    admin = ReplicatingAdmin()
    admin.answers = admin.answers[:3]  # the second replica never joins
    with pytest.raises(RuntimeError, match=r"t\[0\]: leader 1 isr \[1\]"):
        wait_replicated(admin, ["t"], replication_factor=2, timeout_s=0.5)  # type: ignore[arg-type]
