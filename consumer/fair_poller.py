"""Batches drawn fairly from every assigned partition, merged by timestamp.

librdkafka fetches up to `max.partition.fetch.bytes` of one partition at a time into one local
queue, so a consumer reading a backlog gets thousands of messages of one partition, then of the
next: each batch is one partition's slice of the keys, and the store inserts them out of time
order. The poller drains that queue into one buffer per partition (each in offset order) and
builds each batch by merging the buffers' heads by Kafka timestamp, then arrival order.

Bounds: a partition whose buffer reaches `partition_max` messages is paused (librdkafka then stops
fetching it and drops what it had prefetched of it; on resume it fetches again from the next
offset it delivered), and resumed once its buffer is down to half. Every batch is a prefix of each
partition's buffer, so batches keep each partition's offset order, and the offsets a batch
commits never pass a message that is not in it or in an earlier batch.

The poller never commits and never writes; the service owns both. Pause and resume of the whole
assignment (MongoDB unavailable) go through `hold` and `release`, so the two reasons to pause a
partition never undo each other.
"""

from __future__ import annotations

import heapq
import itertools
import logging
from collections import deque
from collections.abc import Callable, Iterable
from typing import Protocol

from consumer.messages import InboundMessage, TopicPartition

log = logging.getLogger(__name__)

# While a write is in flight the poller waits in slices this long, to notice its end.
BUSY_SLICE_S = 0.05


class PartitionedSource(Protocol):
    """What the poller needs of the Kafka adapter."""

    def poll_batch(self, max_messages: int, timeout_s: float) -> list[InboundMessage]: ...

    def assignment(self) -> list[TopicPartition]: ...

    def pause(self, partitions: list[TopicPartition]) -> None: ...

    def resume(self, partitions: list[TopicPartition]) -> None: ...


def merge_key(message: InboundMessage, seq: int) -> tuple[int, int]:
    """Sort key of a buffered message: Kafka timestamp (none: 0), then arrival order."""
    return (message.timestamp_ms or 0, seq)


class FairPoller:
    """Per-partition buffers over a Kafka source; see the module docstring."""

    def __init__(
        self,
        source: PartitionedSource,
        partition_max: int,
        clock: Callable[[], float],
    ) -> None:
        if partition_max < 1:
            raise ValueError("partition_max must be at least 1")
        self._source = source
        self._partition_max = partition_max
        self._clock = clock
        self._buffers: dict[TopicPartition, deque[tuple[int, InboundMessage]]] = {}
        # The next offset expected per partition: a message below it was delivered already.
        self._next: dict[TopicPartition, int] = {}
        self._capped: set[TopicPartition] = set()
        self._held = False
        self._seq = itertools.count()
        self.buffered = 0
        self.pauses = 0  # partitions paused for a full buffer, since start (for metrics)
        self.duplicates = 0  # messages dropped as already delivered (should stay 0)

    # ---- reading ------------------------------------------------------------------------------

    def next_batch(
        self,
        max_messages: int,
        wait_s: float,
        write_done: Callable[[], bool] | None = None,
    ) -> list[InboundMessage]:
        """Up to max_messages, merged by timestamp across partitions.

        Returns as soon as max_messages are buffered, else after wait_s with what is buffered.
        `write_done` tells whether a write is in flight (None: none is): while one is, the wait
        runs in short slices, and an empty poller returns [] as soon as the write has ended, so
        that its offsets are committed without waiting out the batch wait.
        """
        deadline = self._clock() + wait_s
        self.drain(max_messages)
        while self.buffered < max_messages:
            remaining = deadline - self._clock()
            if remaining <= 0:
                break
            busy = write_done is not None and not write_done()
            if write_done is not None and not busy and not self.buffered:
                break
            timeout = min(remaining, BUSY_SLICE_S) if busy else remaining
            if not self._add(self._source.poll_batch(max_messages - self.buffered, timeout)):
                continue
            self.drain(max_messages)
        return self.take(max_messages)

    def poll(self, max_messages: int, timeout_s: float) -> int:
        """One wait of up to timeout_s for messages, into the buffers; how many were added."""
        return self._add(self._source.poll_batch(max_messages, timeout_s))

    def drain(self, max_messages: int) -> None:
        """Move what librdkafka already holds into the buffers, without waiting, until its
        queue is empty for every partition not paused."""
        while True:
            got = self._source.poll_batch(max_messages, 0.0)
            if not self._add(got) or len(got) < max_messages:
                return

    def take(self, max_messages: int) -> list[InboundMessage]:
        """The first max_messages of the buffers merged by timestamp (a prefix of each)."""
        if not self.buffered:
            return []
        heads = [(buf[0][0], tp) for tp, buf in self._buffers.items() if buf]
        heapq.heapify(heads)
        batch: list[InboundMessage] = []
        while heads and len(batch) < max_messages:
            _, tp = heads[0]
            buf = self._buffers[tp]
            batch.append(buf.popleft()[1])
            if buf:
                heapq.heapreplace(heads, (buf[0][0], tp))
            else:
                heapq.heappop(heads)
        self.buffered -= len(batch)
        self._resume_drained()
        return batch

    def _add(self, messages: Iterable[InboundMessage]) -> int:
        added = 0
        full: list[TopicPartition] = []
        for message in messages:
            tp = message.tp
            expected = self._next.get(tp)
            if expected is not None and message.offset < expected:
                self.duplicates += 1
                continue
            self._next[tp] = message.offset + 1
            buf = self._buffers.setdefault(tp, deque())
            buf.append((merge_key(message, next(self._seq)), message))
            added += 1
            if len(buf) >= self._partition_max and tp not in self._capped:
                full.append(tp)
        self.buffered += added
        if full:
            self._capped.update(full)
            self.pauses += len(full)
            if not self._held:
                self._source.pause(sorted(full))
        return added

    def _resume_drained(self) -> None:
        low = self._partition_max // 2
        drained = sorted(tp for tp in self._capped if len(self._buffers.get(tp, ())) <= low)
        if not drained:
            return
        self._capped.difference_update(drained)
        if not self._held:
            self._source.resume(drained)

    # ---- control ------------------------------------------------------------------------------

    def hold(self) -> None:
        """Pause every assigned partition (again: a new assignment arrives unpaused)."""
        self._held = True
        self._source.pause(self._source.assignment())

    def release(self) -> None:
        """Resume every assigned partition whose buffer is not full."""
        self._held = False
        self._source.resume([tp for tp in self._source.assignment() if tp not in self._capped])

    @property
    def held(self) -> bool:
        return self._held

    def forget(self, partitions: Iterable[TopicPartition]) -> int:
        """Drop all state of partitions assigned afresh, revoked or lost; returns how many
        buffered messages were dropped (they are not committed: their next owner reads them)."""
        dropped = 0
        for tp in partitions:
            buf = self._buffers.pop(tp, None)
            if buf:
                dropped += len(buf)
            self._next.pop(tp, None)
            self._capped.discard(tp)
        self.buffered -= dropped
        return dropped

    def buffered_by_partition(self) -> dict[TopicPartition, int]:
        return {tp: len(buf) for tp, buf in sorted(self._buffers.items()) if buf}
