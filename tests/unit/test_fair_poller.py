"""The fair poller with a fake librdkafka: backlogs one partition after another in, merged out."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.fair_poller import FairPoller
from consumer.messages import InboundMessage, TopicPartition


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class ChunkySource:
    """Like librdkafka on a backlog: one queue holding each partition's prefetched messages
    after the previous partition's, so a consume of N returns one partition's run, then the next.

    Pausing a partition drops what was prefetched of it; resuming fetches again from the next
    offset delivered (as librdkafka does)."""

    def __init__(self, clock: Clock, backlog: dict[TopicPartition, list[InboundMessage]]) -> None:
        self.clock = clock
        self.backlog = {tp: list(msgs) for tp, msgs in backlog.items()}
        self.delivered: dict[TopicPartition, int] = {}
        self.paused: set[TopicPartition] = set()
        self.log: list[tuple[str, Any]] = []
        self.polls: list[tuple[int, float]] = []

    def poll_batch(self, max_messages: int, timeout_s: float) -> list[InboundMessage]:
        self.polls.append((max_messages, timeout_s))
        out: list[InboundMessage] = []
        for tp in sorted(self.backlog):
            if tp in self.paused:
                continue
            start = self.delivered.get(tp, 0)
            chunk = self.backlog[tp][start : start + max_messages - len(out)]
            self.delivered[tp] = start + len(chunk)
            out.extend(chunk)
        if not out:
            self.clock.t += timeout_s
        return out

    def assignment(self) -> list[TopicPartition]:
        return sorted(self.backlog)

    def pause(self, partitions: list[TopicPartition]) -> None:
        self.log.append(("pause", sorted(partitions)))
        self.paused |= set(partitions)

    def resume(self, partitions: list[TopicPartition]) -> None:
        self.log.append(("resume", sorted(partitions)))
        self.paused -= set(partitions)


def backlog(partitions: int, per_partition: int) -> dict[TopicPartition, list[InboundMessage]]:
    """Messages produced round-robin in time: message i of partition p has timestamp i*P + p."""
    return {
        ("t", p): [
            InboundMessage("t", p, i, b"k", b"v", timestamp_ms=1_000 + i * partitions + p)
            for i in range(per_partition)
        ]
        for p in range(partitions)
    }


def test_a_backlog_read_one_partition_at_a_time_comes_out_merged_by_timestamp() -> None:
    clock = Clock()
    source = ChunkySource(clock, backlog(3, 50))
    poller = FairPoller(source, partition_max=100, clock=clock)
    batch = poller.next_batch(30, 0.5)
    assert [m.timestamp_ms for m in batch] == list(range(1_000, 1_030))
    assert {m.partition for m in batch} == {0, 1, 2}  # each partition its share
    # A prefix of each partition, in offset order.
    for p in range(3):
        assert [m.offset for m in batch if m.partition == p] == list(range(10))


def test_a_full_partition_is_paused_and_resumed_once_down_to_half() -> None:
    clock = Clock()
    source = ChunkySource(clock, backlog(2, 40))
    poller = FairPoller(source, partition_max=10, clock=clock)
    poller.drain(10)
    assert source.log == [("pause", [("t", 0)]), ("pause", [("t", 1)])]
    assert poller.buffered_by_partition() == {("t", 0): 10, ("t", 1): 10}
    assert poller.pauses == 2
    poller.take(8)  # 4 of each: 6 left, above half
    assert source.log[-1][0] == "pause"
    poller.take(2)  # 5 of each: down to half
    assert source.log[-1] == ("resume", [("t", 0), ("t", 1)])


def test_hold_and_release_do_not_undo_a_full_buffers_pause() -> None:
    clock = Clock()
    source = ChunkySource(clock, backlog(2, 40))
    source.backlog[("t", 1)] = source.backlog[("t", 1)][:3]
    poller = FairPoller(source, partition_max=10, clock=clock)
    poller.drain(10)  # partition 0 full (paused), partition 1 has 3
    poller.hold()
    assert source.paused == {("t", 0), ("t", 1)}
    poller.take(2)
    assert source.paused == {("t", 0), ("t", 1)}  # held: nothing resumes
    poller.release()
    assert source.paused == {("t", 0)}  # still full
    poller.take(10)
    assert source.paused == set()


def test_forget_drops_a_partitions_buffer_and_its_position() -> None:
    clock = Clock()
    source = ChunkySource(clock, backlog(2, 5))
    poller = FairPoller(source, partition_max=100, clock=clock)
    poller.drain(100)
    assert poller.forget([("t", 1)]) == 5
    assert poller.buffered == 5
    # Assigned again and read from its committed offset: not taken for a duplicate.
    poller._add(source.backlog[("t", 1)][:2])
    assert poller.duplicates == 0
    assert [m.partition for m in poller.take(100)].count(1) == 2


def test_a_message_below_the_position_is_dropped_as_a_duplicate() -> None:
    clock = Clock()
    source = ChunkySource(clock, backlog(1, 5))
    poller = FairPoller(source, partition_max=100, clock=clock)
    poller.drain(100)
    poller._add(source.backlog[("t", 0)][3:])
    assert poller.duplicates == 2
    assert [m.offset for m in poller.take(100)] == [0, 1, 2, 3, 4]


def test_an_empty_poller_returns_as_soon_as_the_write_in_flight_ends() -> None:
    clock = Clock()
    source = ChunkySource(clock, {("t", 0): []})
    poller = FairPoller(source, partition_max=100, clock=clock)
    done = iter([False, False, True])
    assert poller.next_batch(10, 5.0, lambda: next(done)) == []
    assert clock.t < 1.0  # two short slices, not the whole wait
    assert all(t <= 0.05 for _, t in source.polls)


def test_without_a_write_in_flight_an_idle_poller_waits_the_whole_wait() -> None:
    clock = Clock()
    source = ChunkySource(clock, {("t", 0): []})
    poller = FairPoller(source, partition_max=100, clock=clock)
    assert poller.next_batch(10, 0.5) == []
    assert source.polls == [(10, 0.0), (10, 0.5)]


@settings(max_examples=200, deadline=None)
@given(
    sizes=st.lists(st.integers(min_value=0, max_value=40), min_size=1, max_size=5),
    batch=st.integers(min_value=1, max_value=25),
    cap=st.integers(min_value=1, max_value=30),
    stamps=st.randoms(use_true_random=False),
)
def test_every_message_comes_out_once_in_offset_order_per_partition(
    sizes: list[int], batch: int, cap: int, stamps: Any
) -> None:
    clock = Clock()
    messages = {
        ("t", p): [
            InboundMessage("t", p, i, b"k", b"v", timestamp_ms=stamps.randint(0, 50))
            for i in range(n)
        ]
        for p, n in enumerate(sizes)
    }
    source = ChunkySource(clock, messages)
    poller = FairPoller(source, partition_max=cap, clock=clock)
    out: list[InboundMessage] = []
    for _ in range(sum(sizes) + 5):
        got = poller.next_batch(batch, 0.1)
        assert len(got) <= batch
        out.extend(got)
    for tp, msgs in messages.items():
        assert [m.offset for m in out if m.tp == tp] == [m.offset for m in msgs]
    assert len(out) == sum(sizes)
    assert poller.buffered == 0
