"""Kafka administration: brokers in the metadata, idempotent topic creation, replica health,
and a consumer group's offsets and lag.

The offsets and lag are shared by the consumer (its /metrics and status document) and the health
checks, so they live in the core rather than in either wing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_fixed,
)

from headwater.clients import admin_config, backoff
from headwater.settings import Settings

log = logging.getLogger(__name__)

# Topic-level settings every pipeline topic gets, whatever the broker defaults are.
TOPIC_CONFIG = {"unclean.leader.election.enable": "false"}

# librdkafka's "no offset" (nothing committed yet, or an offset it could not learn).
OFFSET_INVALID = -1001

# Topic admin requests: three attempts, 2 s then 4 s apart.
ADMIN_ATTEMPTS = 3
ADMIN_BACKOFF = backoff(2.0, 4.0)


@dataclass(frozen=True)
class PartitionState:
    """Replication state of one partition as the cluster metadata reports it."""

    topic: str
    partition: int
    leader: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]

    @property
    def offline(self) -> bool:
        return self.leader < 0

    @property
    def under_replicated(self) -> bool:
        return len(self.isr) < len(self.replicas)


def admin_client(settings: Settings, role: str = "admin", **overrides: str) -> AdminClient:
    """An AdminClient on both brokers (one is enough to answer), as the admin principal or, for
    what only reads (health checks, reconcile), as "health"."""
    return AdminClient(admin_config(settings, role, **overrides))


def cluster_brokers(admin: AdminClient, timeout_s: float = 5.0) -> dict[int, str]:
    """Broker id -> host:port of every broker currently in the cluster metadata."""
    metadata = admin.list_topics(timeout=timeout_s)
    return {b.id: f"{b.host}:{b.port}" for b in metadata.brokers.values()}


def partition_states(
    admin: AdminClient, topics: list[str] | None = None, timeout_s: float = 5.0
) -> list[PartitionState]:
    """Leader, replicas and ISR of every partition of `topics` (all non-internal topics if None)."""
    metadata = admin.list_topics(timeout=timeout_s)
    states: list[PartitionState] = []
    for name, topic in sorted(metadata.topics.items()):
        if topics is None and name.startswith("__"):
            continue
        if topics is not None and name not in topics:
            continue
        if topic.error is not None:
            raise KafkaException(topic.error)
        for pid, p in sorted(topic.partitions.items()):
            states.append(PartitionState(name, pid, p.leader, tuple(p.replicas), tuple(p.isrs)))
    return states


@dataclass(frozen=True)
class PartitionOffsets:
    """A group's committed offset in one partition and its watermarks (negative = unknown)."""

    topic: str
    partition: int
    committed: int
    low: int
    high: int


def partition_lag(committed: int, low: int, high: int) -> int | None:
    """Messages not yet committed: high watermark - committed offset; None when unknown.

    With nothing committed (any negative offset, OFFSET_INVALID among them) the group starts at the
    earliest retained message, so everything from the low watermark on is behind. A committed
    offset past `high` (watermark older than the commit) is no lag, never negative.
    """
    if high < 0:
        return None
    if committed >= 0:
        return max(0, high - committed)
    if low >= 0:
        return max(0, high - low)
    return None


def group_offsets(
    admin: AdminClient, group: str, topics: list[str], timeout_s: float = 10.0
) -> list[PartitionOffsets]:
    """Committed offset and low/high watermarks of every partition of `topics` for `group`."""
    tps = [
        TopicPartition(s.topic, s.partition)
        for s in partition_states(admin, topics, timeout_s=timeout_s)
    ]
    if not tps:
        return []
    request = [ConsumerGroupTopicPartitions(group, tps)]
    answer = admin.list_consumer_group_offsets(request, request_timeout=timeout_s)[group].result()
    committed = {(tp.topic, tp.partition): tp.offset for tp in answer.topic_partitions}
    low = _list_offsets(admin, tps, OffsetSpec.earliest(), timeout_s)
    high = _list_offsets(admin, tps, OffsetSpec.latest(), timeout_s)
    return [
        PartitionOffsets(
            tp.topic,
            tp.partition,
            committed.get((tp.topic, tp.partition), OFFSET_INVALID),
            low[(tp.topic, tp.partition)],
            high[(tp.topic, tp.partition)],
        )
        for tp in tps
    ]


@dataclass(frozen=True)
class GroupMember:
    """One member of a consumer group and the partitions the group coordinator assigned it."""

    member_id: str
    client_id: str
    host: str
    partitions: frozenset[tuple[str, int]]


def group_members(
    admin: AdminClient, group: str, timeout_s: float = 10.0
) -> tuple[str, list[GroupMember]]:
    """The group's state as its coordinator reports it (STABLE, PREPARING_REBALANCING, EMPTY, ...)
    and its members, by client id. A killed member stays listed until its session times out."""
    description = admin.describe_consumer_groups([group], request_timeout=timeout_s)[group].result()
    members = [
        GroupMember(
            m.member_id,
            m.client_id,
            m.host,
            frozenset(
                (tp.topic, tp.partition)
                for tp in (m.assignment.topic_partitions if m.assignment else [])
            ),
        )
        for m in description.members
    ]
    return description.state.name, sorted(members, key=lambda m: m.client_id)


def _list_offsets(
    admin: AdminClient, tps: list[TopicPartition], spec: OffsetSpec, timeout_s: float
) -> dict[tuple[str, int], int]:
    futures = admin.list_offsets({tp: spec for tp in tps}, request_timeout=timeout_s)
    return {(tp.topic, tp.partition): f.result().offset for tp, f in futures.items()}


# Admin requests answered this way right after a broker (re)joins are worth another try.
_TRANSIENT_ADMIN_ERRORS = frozenset(
    {KafkaError._TIMED_OUT, KafkaError.REQUEST_TIMED_OUT, KafkaError.NOT_CONTROLLER}
)


def _is_transient(exc: BaseException) -> bool:
    return (
        isinstance(exc, KafkaException)
        and bool(exc.args)
        and exc.args[0].code() in _TRANSIENT_ADMIN_ERRORS
    )


def _admin_retrying(what: str, context: Callable[[], str] = lambda: "") -> Retrying:
    """Retry transient admin errors ADMIN_ATTEMPTS times; then (or at once if not) re-raise."""

    def note(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        log.warning("%s retry attempt=%d%s error=%s", what, state.attempt_number, context(), error)

    return Retrying(
        stop=stop_after_attempt(ADMIN_ATTEMPTS),
        wait=ADMIN_BACKOFF,
        retry=retry_if_exception(_is_transient),
        before_sleep=note,
        reraise=True,
    )


def ensure_topics(
    admin: AdminClient,
    topics: list[str],
    partitions: int,
    replication_factor: int,
    timeout_s: float = 30.0,
) -> list[str]:
    """Create the topics that do not exist yet; returns the names created by this call."""
    return _admin_retrying("topic admin")(
        _create_missing, admin, topics, partitions, replication_factor, timeout_s
    )


class TopicNotReplicated(RuntimeError):
    """A topic's partitions have not all got their full ISR yet."""


def wait_replicated(
    admin: AdminClient, topics: list[str], replication_factor: int, timeout_s: float = 30.0
) -> None:
    """Wait until every partition of `topics` has a leader and `replication_factor` in-sync
    replicas: every replica broker has then applied the topic's records, and the ACL records
    granted before them, so no client is refused by a broker still catching up the metadata log
    (seen: a producer's first metadata request denied DESCRIBE by a lagging broker, which the
    producer does not retry)."""

    def check() -> None:
        metadata = admin.list_topics(timeout=timeout_s).topics
        for topic in topics:
            info = metadata.get(topic)
            if info is None or info.error is not None or not info.partitions:
                raise TopicNotReplicated(f"{topic}: not in the metadata yet")
            for p in info.partitions.values():
                if p.leader < 0 or len(p.isrs) < replication_factor:
                    raise TopicNotReplicated(f"{topic}[{p.id}]: leader {p.leader} isr {p.isrs}")

    Retrying(
        stop=stop_after_delay(timeout_s),
        wait=wait_fixed(0.1),
        retry=retry_if_exception_type((TopicNotReplicated, KafkaException)),
        reraise=True,
    )(check)


class TopicNotAuthorized(RuntimeError):
    """A broker does not yet let a role see a topic it was granted."""


def wait_authorized(
    settings: Settings,
    topics: list[str],
    roles: tuple[str, ...] = ("producer", "consumer"),
    timeout_s: float = 30.0,
) -> None:
    """Wait until every broker lets each of `roles` describe `topics`.

    A full ISR is not enough: a broker applies a metadata delta's ACLs and its partitions through
    separate publishers, so for a moment it may host a new topic and still refuse it to the role
    granted it just before (seen under load: a bench's producer, 0.4 s after the topic's ISR was
    full, got TOPIC_AUTHORIZATION_FAILED, which librdkafka does not retry). Each probe is a fresh
    client bootstrapped on one broker only, so its metadata request goes to that broker.
    """
    brokers = [b.strip() for b in settings.kafka.bootstrap_servers.split(",") if b.strip()]

    def check() -> None:
        for role in roles:
            for broker in brokers:
                probe = AdminClient(admin_config(settings, role, **{"bootstrap.servers": broker}))
                metadata = probe.list_topics(timeout=min(timeout_s, 10.0)).topics
                for topic in topics:
                    info = metadata.get(topic)
                    if info is None or info.error is not None:
                        error = info.error if info is not None else "absent"
                        raise TopicNotAuthorized(f"{topic} on {broker} as {role}: {error}")

    Retrying(
        stop=stop_after_delay(timeout_s),
        wait=wait_fixed(0.2),
        retry=retry_if_exception_type((TopicNotAuthorized, KafkaException)),
        reraise=True,
    )(check)


def _create_missing(
    admin: AdminClient,
    topics: list[str],
    partitions: int,
    replication_factor: int,
    timeout_s: float,
) -> list[str]:
    existing = set(admin.list_topics(timeout=timeout_s).topics)
    missing = [t for t in topics if t not in existing]
    if not missing:
        return []
    futures = admin.create_topics(
        [NewTopic(t, partitions, replication_factor, config=TOPIC_CONFIG) for t in missing],
        operation_timeout=timeout_s,
        request_timeout=timeout_s,
    )
    created: list[str] = []
    for topic, future in futures.items():
        try:
            future.result()
            created.append(topic)
            log.info(
                "topic created topic=%s partitions=%d replication_factor=%d",
                topic,
                partitions,
                replication_factor,
            )
        except KafkaException as exc:
            # Another caller may have created it between our list and create: that is success.
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    return created


def delete_topics(admin: AdminClient, topics: list[str], timeout_s: float = 30.0) -> None:
    """Delete topics (tests use this to clean up what they made); missing ones are ignored."""
    pending = list(topics)

    def delete_pending() -> None:
        # Each attempt deletes only what the previous one left; a transient failure retries those.
        failed: list[str] = []
        error: KafkaException | None = None
        if pending:
            futures = admin.delete_topics(pending, operation_timeout=timeout_s)
            for topic, future in futures.items():
                try:
                    future.result()
                except KafkaException as exc:
                    if exc.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                        continue
                    if not _is_transient(exc):
                        raise
                    failed.append(topic)
                    error = exc
        pending[:] = failed
        if error is not None:
            raise error

    _admin_retrying("topic delete", lambda: f" topics={pending}")(delete_pending)
