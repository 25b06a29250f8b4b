"""What the store-at-scale bench loads: the pipeline's own documents over days of data (pure).

Readings come from the device simulator (`producer.simulator`, ~1% malformed by design) at the
`devices` source's rate, one reading per device per second (8 devices: ~690,000 a day); user
events (`bench.workload.user_event`, ~1% invalid, handed in) are spread over the same time. Every
record becomes the Kafka message the ingest DAG would produce, then the document the consumer
would store (`consumer.pipeline.process_message`): readings, user_events, rejected. The rollup
DAG's windows (`headwater.rollups.rollup_readings`) of the stored readings go to readings_rollup.
Batches cover whole minutes, so every rollup window of a batch is complete within it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from consumer.messages import InboundMessage
from consumer.pipeline import PipelineContext, Rejected, WritePlan, plan_batch, process_message
from headwater.contracts import Collections
from headwater.rollups import rollup_readings
from headwater.sources import Source
from producer.kafka_out import encode_value, message_headers, message_key
from producer.simulator import readings as simulator_readings

SINCE = datetime(2026, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
# One user event per this many readings: a small, steady share beside the readings.
READINGS_PER_EVENT = 100
# The ingest DAG pulls each interval once it has closed; documents are stamped (ingested_at,
# rejected_at) this long after the end of their batch, so those times lie in the data's span.
INGEST_LAG = timedelta(seconds=60)
# About this many readings per insert_many (rounded to whole minutes of data).
TARGET_BATCH_READINGS = 1000
RUN_ID = "bench-store"
READINGS_TOPIC = "devices"
EVENTS_TOPIC = "user-events"


@dataclass(frozen=True)
class DataSpan:
    """N readings of `devices` devices from `since` on: one per device per second."""

    since: datetime
    readings: int
    devices: int

    def __post_init__(self) -> None:
        if self.readings < 1 or self.devices < 1:
            raise ValueError(f"need readings and devices, got {self.readings}, {self.devices}")
        if self.since.tzinfo is None or self.since.microsecond:
            raise ValueError(f"since must be an aware whole second, got {self.since!r}")

    @property
    def seconds(self) -> int:
        """Seconds the readings cover (the last one may be shared by fewer devices)."""
        return -(-self.readings // self.devices)

    @property
    def until(self) -> datetime:
        return self.since + timedelta(seconds=self.seconds)

    @property
    def events(self) -> int:
        """How many user events are spread over the span."""
        return self.readings // READINGS_PER_EVENT

    def event_time(self, index: int) -> datetime:
        """When user event `index` is received: evenly spaced over the span."""
        return self.since + timedelta(microseconds=index * self.seconds * 1_000_000 // self.events)

    def events_between(self, start: datetime, end: datetime) -> range:
        """The indexes of the events received in [start, end)."""
        if self.events == 0:
            return range(0)
        span_us = self.seconds * 1_000_000

        def first_at_or_after(moment: datetime) -> int:
            offset_us = (moment - self.since) // timedelta(microseconds=1)
            # Smallest i with i * span_us // events >= offset_us.
            return min(self.events, max(0, -(-offset_us * self.events // span_us)))

        return range(first_at_or_after(start), first_at_or_after(end))


def minimum_readings(devices: int) -> int:
    """The fewest readings that still hold one whole hour of data."""
    return devices * int(HOUR.total_seconds())


def floor_hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def analysis_hour(span: DataSpan) -> tuple[datetime, datetime]:
    """The whole UTC hour [from, until) in the middle of the span, inside it.

    ValueError when the span holds no whole hour (fewer than `minimum_readings`).
    """
    middle = span.since + (span.until - span.since) / 2
    start = floor_hour(middle)
    if start < span.since:
        start += HOUR
    if start + HOUR > span.until:
        start = floor_hour(span.until) - HOUR
    if start < span.since:
        raise ValueError(
            f"{span.readings} readings of {span.devices} devices cover {span.seconds}s, no whole "
            f"hour: load at least {minimum_readings(span.devices)}"
        )
    return start, start + HOUR


def recent_since(span: DataSpan) -> datetime:
    """The start of the span's last hour (the indexed find asks for a device's readings since)."""
    return max(span.since, span.until - HOUR)


def batch_minutes(devices: int, target_readings: int = TARGET_BATCH_READINGS) -> int:
    """Whole minutes of data per batch, about `target_readings` readings (at least one minute)."""
    return max(1, round(target_readings / (60 * devices)))


@dataclass
class StoreBatch:
    """The messages of [since, until) of data time, as the consumer would read them."""

    since: datetime
    until: datetime
    now: datetime  # when the pipeline ingests them
    messages: list[InboundMessage]
    readings: int  # how many of the messages are simulator readings


Headers = tuple[tuple[str, bytes | None], ...]
# (index, received_at) -> a user event record, e.g. bench.workload.user_event.
EventBuilder = Callable[[int, datetime], dict[str, Any]]
# (first, second) -> both merged in proportion, e.g. bench.workload.interleave.
Merge = Callable[[list[InboundMessage], list[InboundMessage]], list[InboundMessage]]


@dataclass
class Offsets:
    """The next offset per topic (partitions are offset mod `partitions`, as in consumer_bench)."""

    partitions: int = 3
    next: dict[str, int] = field(default_factory=dict)

    def take(self, topic: str) -> tuple[int, int]:
        offset = self.next.get(topic, 0)
        self.next[topic] = offset + 1
        return offset % self.partitions, offset


def _message(
    topic: str, source: Source, record: dict[str, Any], headers: Headers, offsets: Offsets, ms: int
) -> InboundMessage:
    partition, offset = offsets.take(topic)
    return InboundMessage(
        topic,
        partition,
        offset,
        message_key(source, record).encode(),
        encode_value(record),
        headers,
        ms,
    )


def store_batches(
    span: DataSpan,
    sources: dict[str, Source],
    event: EventBuilder,
    merge: Merge,
    partitions: int = 3,
) -> Iterator[StoreBatch]:
    """The span's readings and user events, a few whole minutes at a time, in time order.

    `sources` maps the contract topics (`devices`, `user-events`) to their declared sources; each
    batch's two kinds of message are merged by `merge`, as a poller of both topics sees them.
    """
    step = timedelta(minutes=batch_minutes(span.devices))
    readings_source, events_source = sources[READINGS_TOPIC], sources[EVENTS_TOPIC]
    offsets = Offsets(partitions)
    left = span.readings
    start = span.since
    while left > 0:
        end = start + step
        now = end + INGEST_LAG
        # Produced when the window closed: the ingest DAG's Kafka timestamp.
        ms = int(now.timestamp() * 1000)
        reading_headers = tuple(message_headers(readings_source, start, end, RUN_ID))
        event_headers = tuple(message_headers(events_source, start, end, RUN_ID))
        records: list[dict[str, Any]] = []
        for record in simulator_readings(start, end, span.devices):
            if len(records) == left:
                break
            records.append(record)
        left -= len(records)
        reading_messages = [
            _message(READINGS_TOPIC, readings_source, r, reading_headers, offsets, ms)
            for r in records
        ]
        event_messages = [
            _message(
                EVENTS_TOPIC,
                events_source,
                event(i, span.event_time(i)),
                event_headers,
                offsets,
                ms,
            )
            for i in span.events_between(start, end)
        ]
        messages = merge(reading_messages, event_messages)
        yield StoreBatch(start, end, now, messages, len(records))
        start = end


def batch_documents(batch: StoreBatch, ctx: PipelineContext) -> dict[str, list[dict[str, Any]]]:
    """The documents (with _id) the pipeline stores for one batch, per collection.

    Each message goes through the consumer's pipeline; the stored readings are then rolled up as
    the rollup DAG does (its 10 s and 1 min windows, complete because the batch is whole minutes).
    """
    documents: dict[str, list[dict[str, Any]]] = {}
    for message in batch.messages:
        outcome = process_message(message, ctx, batch.now)
        collection = Collections.REJECTED if isinstance(outcome, Rejected) else outcome.collection
        documents.setdefault(collection, []).append({"_id": outcome.doc_id, **outcome.document})
    stored = documents.get(Collections.READINGS, [])
    # The rollup math wants readings sorted by ts; a batch holds them by (ts, device) already.
    rollups = list(rollup_readings(stored))
    if rollups:
        documents[Collections.READINGS_ROLLUP] = rollups
    return documents


def consumer_plans(
    batches: Iterable[StoreBatch], ctx: PipelineContext, per_plan: int
) -> list[WritePlan]:
    """The consumer's write plans (`plan_batch`) of the batches' messages, `per_plan` messages each
    (its batch size), each planned at the time the newest of its messages was ingested."""
    if per_plan < 1:
        raise ValueError(f"per_plan must be positive, got {per_plan}")
    plans: list[WritePlan] = []
    pending: list[InboundMessage] = []
    now: datetime | None = None
    for batch in batches:
        now = batch.now
        for message in batch.messages:
            pending.append(message)
            if len(pending) == per_plan:
                plans.append(plan_batch(pending, ctx, now))
                pending = []
    if pending and now is not None:
        plans.append(plan_batch(pending, ctx, now))
    return plans
