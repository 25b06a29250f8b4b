"""Kafka adapter: a confluent-kafka consumer in a group, seen as batches of InboundMessage."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any, Protocol

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from consumer.messages import InboundMessage
from consumer.messages import TopicPartition as TP
from headwater.clients import consumer_config as consumer_config  # re-exported for bootstrap
from headwater.kafka_admin import OFFSET_INVALID, PartitionOffsets

log = logging.getLogger(__name__)

# Commit failures that a later commit of the same offsets can cure.
_RETRIABLE_COMMIT = {
    KafkaError.REQUEST_TIMED_OUT,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError.NOT_COORDINATOR,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError._TIMED_OUT,
    KafkaError._TRANSPORT,
    KafkaError._WAIT_COORD,
    KafkaError.REBALANCE_IN_PROGRESS,
}


class CommitError(RuntimeError):
    """Offsets were not committed; `retriable` says whether trying again later can help."""

    def __init__(self, message: str, retriable: bool) -> None:
        super().__init__(message)
        self.retriable = retriable


class RebalanceListener(Protocol):
    """What the service does when the group moves partitions."""

    def on_assigned(self, partitions: list[TP]) -> None: ...

    def on_revoked(self, partitions: list[TP]) -> None: ...

    def on_lost(self, partitions: list[TP]) -> None: ...


def to_inbound(msg: Message) -> InboundMessage:
    """A confluent Message as plain data."""
    kind, stamp = msg.timestamp()
    # confluent-kafka gives a list of (name, value) tuples already: one copy, no unpacking.
    headers = tuple(msg.headers() or ())
    return InboundMessage(
        topic=msg.topic() or "",
        partition=msg.partition() or 0,
        offset=msg.offset() or 0,
        key=msg.key(),
        value=msg.value(),
        headers=headers,
        timestamp_ms=stamp if kind != 0 else None,
    )


def _tps(partitions: Iterable[TopicPartition]) -> list[TP]:
    return sorted((p.topic, p.partition) for p in partitions)


class KafkaSource:
    """A group member: subscribe, consume batches, commit exact offsets, pause and resume."""

    def __init__(self, config: dict[str, str | int | bool]) -> None:
        self._consumer = Consumer(config)
        self._listener: RebalanceListener | None = None

    def subscribe(self, topics: list[str], listener: RebalanceListener) -> None:
        """Join the group on `topics`; the listener hears every assignment change."""
        self._listener = listener
        if not topics:
            # Every declaration invalid (or none yet): read nothing until one is fixed.
            self._consumer.unsubscribe()
            return
        self._consumer.subscribe(
            topics, on_assign=self._assigned, on_revoke=self._revoked, on_lost=self._lost
        )

    # The client calls these from inside consume(); after each returns it (incrementally)
    # assigns or unassigns the partitions itself.
    def _assigned(self, _consumer: Any, partitions: list[TopicPartition]) -> None:
        if self._listener is not None:
            self._listener.on_assigned(_tps(partitions))

    def _revoked(self, _consumer: Any, partitions: list[TopicPartition]) -> None:
        if self._listener is not None:
            self._listener.on_revoked(_tps(partitions))

    def _lost(self, _consumer: Any, partitions: list[TopicPartition]) -> None:
        if self._listener is not None:
            self._listener.on_lost(_tps(partitions))

    def poll_batch(self, max_messages: int, timeout_s: float) -> list[InboundMessage]:
        """Up to max_messages, returning early when full, else after timeout_s."""
        batch: list[InboundMessage] = []
        for msg in self._consumer.consume(num_messages=max_messages, timeout=timeout_s):
            err = msg.error()
            if err is None:
                batch.append(to_inbound(msg))
            elif err.fatal():
                raise KafkaException(err)
            else:
                # Broker restarts and the like: librdkafka recovers by itself; say it once here.
                log.warning(
                    "kafka error topic=%s partition=%s: %s", msg.topic(), msg.partition(), err
                )
        return batch

    def commit(self, offsets: dict[TP, int]) -> None:
        """Commit the next offset to read per partition, synchronously; CommitError on failure."""
        if not offsets:
            return
        wanted = [TopicPartition(t, p, o) for (t, p), o in sorted(offsets.items())]
        try:
            result = self._consumer.commit(offsets=wanted, asynchronous=False)
        except KafkaException as exc:
            err = exc.args[0]
            code = err.code() if isinstance(err, KafkaError) else None
            raise CommitError(str(err), code in _RETRIABLE_COMMIT) from None
        failed = [p for p in result or [] if p.error is not None]
        if failed:
            retriable = all(p.error.code() in _RETRIABLE_COMMIT for p in failed)
            details = ", ".join(f"{p.topic}[{p.partition}]: {p.error}" for p in failed)
            raise CommitError(details, retriable)

    def assignment(self) -> list[TP]:
        return _tps(self._consumer.assignment())

    def pause(self, partitions: list[TP]) -> None:
        if partitions:
            self._consumer.pause([TopicPartition(t, p) for t, p in partitions])

    def resume(self, partitions: list[TP]) -> None:
        if partitions:
            self._consumer.resume([TopicPartition(t, p) for t, p in partitions])

    def member_id(self) -> str | None:
        try:
            return self._consumer.memberid()
        except RuntimeError:
            return None

    def partition_offsets(self, partitions: list[TP], timeout_s: float) -> list[PartitionOffsets]:
        """Committed offset and watermarks of each partition; KafkaException when unreachable."""
        if not partitions:
            return []
        committed = self._consumer.committed(
            [TopicPartition(t, p) for t, p in partitions], timeout=timeout_s
        )
        result = []
        for tp in committed:
            # Cached: the high watermark of the last fetch response, no request needed.
            low, high = self._consumer.get_watermark_offsets(tp, cached=True)
            if high < 0 or (tp.offset < 0 and low < 0):
                low, high = self._consumer.get_watermark_offsets(tp, timeout=1.0, cached=False)
            offset = tp.offset if tp.offset >= 0 else OFFSET_INVALID
            result.append(PartitionOffsets(tp.topic, tp.partition, offset, low, high))
        return result

    def close(self) -> None:
        """Leave the group (revoking, so the listener commits what is written) and close."""
        self._consumer.close()
