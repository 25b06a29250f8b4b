"""The consumer loop: poll a batch, plan it, write it, then commit exactly its offsets.

Written before committed, always: a crash between the two re-delivers a batch whose documents are
already there, and the `_id` upserts make the second write change nothing. MongoDB unavailable:
the assigned partitions are paused (the group keeps us, no new messages pile up), the same batch is
retried with capped backoff, and consumption resumes once it is written.

Batches come from a FairPoller (per-partition buffers merged by timestamp). With `write_overlap`
(the default) batch N is written on one writer thread while the loop polls and plans batch N+1;
N+1 is handed to the writer only after N's write was acknowledged and N's offsets committed, so
there is never more than one write in flight, each partition is written in offset order, and no
offset is committed before its batch is written. A rebalance waits for the write in flight before
it commits or gives up partitions.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from confluent_kafka import KafkaException

from consumer.config import ConsumerConfig
from consumer.fair_poller import FairPoller
from consumer.kafka_source import CommitError, RebalanceListener
from consumer.messages import InboundMessage, TopicPartition
from consumer.metrics import ConsumerMetrics
from consumer.mongo_store import StoreUnavailable
from consumer.pipeline import (
    PipelineContext,
    WritePlan,
    describe_offsets,
    plan_batch,
    without_failed_writes,
)
from consumer.status import (
    ConsumerState,
    health_verdict,
    heartbeat_document,
    status_id,
)
from headwater.clients import backoff, delay_after
from headwater.declarations import to_millis
from headwater.kafka_admin import PartitionOffsets
from headwater.sources import Catalog

log = logging.getLogger(__name__)

ERROR_TEXT_MAX = 500


class MessageSource(Protocol):
    """What the loop needs from Kafka (consumer.kafka_source.KafkaSource in production)."""

    def subscribe(self, topics: list[str], listener: RebalanceListener) -> None: ...

    def poll_batch(self, max_messages: int, timeout_s: float) -> list[InboundMessage]: ...

    def commit(self, offsets: dict[TopicPartition, int]) -> None: ...

    def assignment(self) -> list[TopicPartition]: ...

    def pause(self, partitions: list[TopicPartition]) -> None: ...

    def resume(self, partitions: list[TopicPartition]) -> None: ...

    def member_id(self) -> str | None: ...

    def partition_offsets(
        self, partitions: list[TopicPartition], timeout_s: float
    ) -> list[PartitionOffsets]: ...

    def close(self) -> None: ...


class DocumentStore(Protocol):
    """What the loop needs from MongoDB (consumer.mongo_store.MongoStore in production)."""

    def write(self, plan: WritePlan) -> dict[tuple[str, str], str]: ...

    def write_status(self, doc_id: str, document: dict[str, Any]) -> None: ...


def utc_now() -> datetime:
    """Now, in UTC, at the millisecond precision MongoDB stores."""
    return to_millis(datetime.now(UTC))


def write_plan(
    store: DocumentStore, plan: WritePlan, ctx: PipelineContext, now: Callable[[], datetime]
) -> WritePlan:
    """Write a plan; documents the server refuses for good are quarantined (the plan is updated
    to say so). StoreUnavailable when the whole write must be retried. Runs on the writer."""
    refused = store.write(plan)
    if refused:
        repair = without_failed_writes(plan, refused, ctx, now())
        store.write(repair)
        for collection, doc_id in refused:
            plan.upserts[collection].pop(doc_id, None)
        moved = repair.counts["rejected"]
        plan.counts["stored"] -= moved
        plan.counts["rejected"] += moved
        plan.rejections.update(repair.rejections)
        for topic, counts in repair.topic_counts.items():
            plan.topic_counts[topic]["stored"] -= counts["rejected"]
            plan.topic_counts[topic]["rejected"] += counts["rejected"]
        log.warning("store refused %d documents, quarantined: %s", moved, refused)
    return plan


@dataclass
class InFlight:
    """The batch the writer thread is writing."""

    messages: list[InboundMessage]
    future: Future[WritePlan]
    started: float
    retries_before: int


class Reloader:
    """Follows the source declarations: the catalog as it is now, the pipeline context it gives,
    and what makes a new topic readable (topic, collection, indexes)."""

    def __init__(
        self,
        load: Callable[[], Catalog],
        context: Callable[[Catalog], tuple[PipelineContext, dict[str, str]]],
        prepare: Callable[[Catalog, list[str]], None] | None = None,
        *,
        first: Catalog | None = None,
    ) -> None:
        self.load = load
        self.context = context
        self.prepare = prepare
        self.current = first


class ConsumerService:
    """One group member's loop; also the rebalance listener of its source."""

    def __init__(
        self,
        config: ConsumerConfig,
        ctx: PipelineContext,
        source: MessageSource,
        store: DocumentStore,
        state: ConsumerState,
        metrics: ConsumerMetrics,
        *,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = utc_now,
        catalog: Reloader | None = None,
    ) -> None:
        self.config = config
        self.ctx = ctx
        self.source = source
        self.store = store
        self.state = state
        self.metrics = metrics
        self._clock = clock
        self._now = now
        self._pending: list[InboundMessage] = []
        # Written to MongoDB but not yet committed (a commit failed): next offset per partition.
        self._uncommitted: dict[TopicPartition, int] = {}
        self._retrying = False
        self._stop = False
        self._stop_reason = ""
        self._stop_deadline = float("inf")
        self._last_tick = clock()
        self._last_heartbeat = float("-inf")
        self._last_commit_attempt = float("-inf")
        self._reloader = catalog
        self._last_reload = clock()
        self.abandoned = False
        self.poller = FairPoller(
            source, config.partition_buffer_messages or 2 * config.batch_max_messages, clock
        )
        self._writer = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="mongo-writer")
            if config.write_overlap
            else None
        )
        self._inflight: InFlight | None = None
        # Messages of an overlapped write that failed (MongoDB unavailable), in poll order:
        # written (with retries) by the sequential path before anything newer.
        self._carry: list[InboundMessage] = []
        self._carry_error: StoreUnavailable | None = None

    # ---- control ------------------------------------------------------------------------------

    def request_stop(self, why: str = "requested") -> None:
        """Finish (write and commit) the current batch, then stop; safe from a signal handler."""
        if not self._stop:
            self._stop = True
            self._stop_reason = why
            self._stop_deadline = self._clock() + self.config.shutdown_grace_s

    @property
    def stopping(self) -> bool:
        return self._stop

    def health(self) -> tuple[bool, dict[str, object]]:
        """The /healthz verdict and body (called from the HTTP thread; reads only)."""
        since_tick = self._clock() - self._last_tick
        ok, problems = health_verdict(
            seconds_since_tick=since_tick,
            stale_after_s=self.config.stale_after_s,
            store_ok=self.state.store_ok,
            phase=self.state.phase,
        )
        body: dict[str, object] = {
            "ok": ok,
            "problems": problems,
            "phase": self.state.phase,
            "member_id": self.state.member_id,
            "assigned": [f"{t}[{p}]" for t, p in self.state.assigned],
            "seconds_since_tick": round(since_tick, 3),
            "counters": self.state.counters.as_dict(),
            "last_error": self.state.last_error.message,
            # Not a reason for 503: the other topics flow. pipeline_health reports them.
            "paused_topics": dict(self.state.paused_topics),
            "buffered": self.poller.buffered,
            "write_in_flight": self._inflight is not None,
            "declaration_problems": list(self.state.declaration_problems),
        }
        return ok, body

    def run(self) -> int:
        """Consume until request_stop(); 0 when every consumed message was written and committed."""
        self.source.subscribe(sorted(self.ctx.topic_map), self)
        self.state.phase = "running"
        log.info(
            "consumer started group=%s instance=%s topics=%s",
            self.config.group_id,
            self.config.instance,
            ",".join(f"{a}={c}" if a != c else a for a, c in sorted(self.ctx.topic_map.items())),
        )
        for topic, why in sorted(self.state.paused_topics.items()):
            log.warning("topic paused topic=%s problem=%s", topic, why)
        try:
            while not self._stop:
                self.step()
            self.finish_writes()
        finally:
            self.shutdown()
        return 1 if self.abandoned else 0

    def step(self) -> None:
        """One turn of the loop: poll a batch, write and commit it, heartbeat when due."""
        self._tick()
        self._settle(block=False)
        if self._carry:
            self._retry_carried()
        else:
            inflight = self._inflight
            messages = self.poller.next_batch(
                self.config.batch_max_messages,
                self.config.batch_max_wait_s,
                None if inflight is None else inflight.future.done,
            )
            if messages:
                self.handle_batch(messages)
            else:
                self._settle(block=True)
        self.maybe_reload()
        self.maybe_heartbeat()

    def finish_writes(self) -> None:
        """Wait for the write in flight and commit it (retrying it, within the shutdown grace,
        while MongoDB is unavailable)."""
        self._settle(block=True)
        if self._carry:
            self._retry_carried()

    def _retry_carried(self) -> None:
        carried, self._carry = self._carry, []
        failed, self._carry_error = self._carry_error, None
        self._handle_sequential(carried, failed)

    def shutdown(self) -> None:
        """Leave the group (committing what is written) and write a last heartbeat."""
        log.info("consumer stopping (%s)", self._stop_reason or "loop ended")
        self.state.phase = "stopping"
        try:
            self.source.close()
        except (KafkaException, RuntimeError) as exc:
            log.warning("closing the Kafka consumer failed: %s", exc)
        if self._writer is not None:
            self._writer.shutdown(wait=True)
        self.state.phase = "stopped"
        self.state.assigned = []
        self._last_heartbeat = float("-inf")
        if self.state.store_ok:
            self._write_heartbeat(refresh=False)
        log.info("consumer stopped counters=%s", self.state.counters.as_dict())

    # ---- rebalance listener -------------------------------------------------------------------

    def on_assigned(self, partitions: list[TopicPartition]) -> None:
        self.state.assigned = sorted(set(self.state.assigned) | set(partitions))
        self.poller.forget(partitions)
        for tp in partitions:
            self._uncommitted.pop(tp, None)
        if partitions:  # the cooperative protocol also reports empty increments
            log.info("partitions assigned %s", _names(partitions))

    def on_revoked(self, partitions: list[TopicPartition]) -> None:
        # What is written may be committed now; what is not stays for the next owner to read.
        revoked = set(partitions)
        if not revoked:
            return
        # A write in flight may hold their messages: its offsets are theirs to commit now.
        self._settle(block=True, commit=False)
        written = {tp: o for tp, o in self._uncommitted.items() if tp in revoked}
        if written:
            try:
                self.source.commit(written)
                self.state.counters.commits += 1
            except CommitError as exc:
                self._note_commit_failure(exc)
        self._forget(revoked)
        log.info("partitions revoked %s committed=%s", _names(partitions), written or "-")

    def on_lost(self, partitions: list[TopicPartition]) -> None:
        # Lost, not revoked: another member may own them already, so nothing is committed.
        self._settle(block=True, commit=False)
        self._forget(set(partitions))
        log.warning("partitions lost %s", _names(partitions))

    def _forget(self, partitions: set[TopicPartition]) -> None:
        self.state.assigned = [tp for tp in self.state.assigned if tp not in partitions]
        self.state.partitions = [
            p for p in self.state.partitions if (p.topic, p.partition) not in partitions
        ]
        for tp in partitions:
            self._uncommitted.pop(tp, None)
        dropped = len([m for m in self._pending if m.tp in partitions])
        dropped += len([m for m in self._carry if m.tp in partitions])
        self._pending = [m for m in self._pending if m.tp not in partitions]
        self._carry = [m for m in self._carry if m.tp not in partitions]
        dropped += self.poller.forget(partitions)
        if dropped:
            log.info("dropped %d unwritten messages of revoked partitions", dropped)

    # ---- the write path -----------------------------------------------------------------------

    def handle_batch(self, messages: list[InboundMessage]) -> None:
        """Write a batch and commit its offsets: on the writer thread (overlapping the next
        poll) when `write_overlap` is on, else here, retrying while MongoDB is unavailable."""
        if self._writer is None:
            self._handle_sequential(messages)
            return
        started = self._clock()
        retries_before = self.state.counters.store_retries
        # Planned while the previous batch is still being written: the overlap.
        plan = plan_batch(messages, self.ctx, self._now())
        settled = self._inflight is not None
        if not self._settle(block=True):
            # The previous write failed: both batches are retried, in order, by the next step.
            self._carry.extend(messages)
            return
        if settled:
            self.maybe_heartbeat()  # between two writes: see maybe_heartbeat
        future = self._writer.submit(write_plan, self.store, plan, self.ctx, self._now)
        self._inflight = InFlight(messages, future, started, retries_before)

    def _settle(self, block: bool, commit: bool = True) -> bool:
        """Finish the write in flight, if any (when block is False, only if it has ended):
        count it and commit its offsets (commit=False: only note them as written). False when
        it failed because MongoDB is unavailable; its messages are then carried to the retry."""
        inflight = self._inflight
        if inflight is None or (not block and not inflight.future.done()):
            return True
        self._inflight = None
        try:
            plan = inflight.future.result()
        except StoreUnavailable as exc:
            assigned = set(self.source.assignment())
            self._carry = [m for m in inflight.messages if m.tp in assigned] + self._carry
            self._carry_error = exc
            self._store_failed(exc)
            return False
        self._store_recovered()
        self._count(plan)
        if commit:
            self._commit(plan.offsets)
        else:
            self._note_written(plan.offsets)
        self._log_batch(plan, inflight.started, inflight.retries_before)
        return True

    def _handle_sequential(
        self, messages: list[InboundMessage], failed: StoreUnavailable | None = None
    ) -> None:
        started = self._clock()
        self._pending = list(messages)
        retries_before = self.state.counters.store_retries
        plan = self._write_pending(failed)
        self._pending = []
        if plan is None:
            return
        self._commit(plan.offsets)
        self._log_batch(plan, started, retries_before)

    def _log_batch(self, plan: WritePlan, started: float, retries_before: int) -> None:
        seconds = self._clock() - started
        self.metrics.batch_seconds.observe(seconds)
        c = plan.counts
        log.info(
            "batch consumed=%d stored=%d rejected=%d filtered=%d docs=%d retries=%d ms=%d "
            "buffered=%d offsets %s",
            plan.messages,
            c["stored"],
            c["rejected"],
            c["filtered"],
            plan.documents,
            self.state.counters.store_retries - retries_before,
            seconds * 1000,
            self.poller.buffered,
            describe_offsets(plan),
        )

    def _write_pending(self, failed: StoreUnavailable | None = None) -> WritePlan | None:
        """Write self._pending, retrying while MongoDB is unavailable; `failed` is the error of
        an attempt already made (on the writer thread): the first retry then waits its backoff."""
        attempt = 0
        error = failed
        while True:
            if error is None:
                plan = plan_batch(self._pending, self.ctx, self._now())
                if not self._pending:
                    # Everything pending belonged to revoked partitions: nothing left to write.
                    if self._retrying:
                        self.poller.release()
                        self._retrying = False
                    return plan
                try:
                    write_plan(self.store, plan, self.ctx, self._now)
                    self._store_recovered()
                    self._count(plan)
                    return plan
                except StoreUnavailable as exc:
                    error = exc
            self._store_failed(error)
            if self._stop and self._clock() >= self._stop_deadline:
                self.abandoned = True
                log.error(
                    "stopping with an unwritten batch of %d messages (not committed; they "
                    "will be read again): %s",
                    len(self._pending),
                    error,
                )
                return None
            attempt += 1
            delay = delay_after(
                backoff(self.config.backoff_initial_s, self.config.backoff_max_s), attempt
            )
            self.state.counters.store_retries += 1
            self.metrics.store_retries.inc()
            log.warning("MongoDB unavailable, retry %d in %.1fs: %s", attempt, delay, error)
            self._wait_paused(delay)
            error = None

    def _wait_paused(self, seconds: float) -> None:
        # Keep polling while paused: it serves rebalances and keeps us in the group; a message
        # that still arrives (fetched before the pause, or from a new assignment) joins the batch.
        end = self._clock() + seconds
        while True:
            remaining = end - self._clock()
            if remaining <= 0 or (self._stop and self._clock() >= self._stop_deadline):
                return
            self._tick()
            self.poller.hold()
            # Buffered, not added to the batch: it is written after the batch, in offset order.
            self.poller.poll(self.config.batch_max_messages, min(0.5, remaining))
            self.maybe_heartbeat()

    def _store_failed(self, exc: Exception) -> None:
        if not self._retrying:
            self.poller.hold()
            self._retrying = True
        self.state.store_ok = False
        self.state.phase = "store-unavailable"
        self.metrics.store_up.set(0)
        self._note_error(f"MongoDB unavailable: {exc}")

    def _store_recovered(self) -> None:
        if self._retrying:
            self.poller.release()
            self._retrying = False
            log.info("MongoDB available again; partitions resumed")
        self.state.store_ok = True
        if self.state.phase == "store-unavailable":
            self.state.phase = "running"
        self.metrics.store_up.set(1)

    def _count(self, plan: WritePlan) -> None:
        counters = self.state.counters
        counters.consumed += plan.messages
        counters.stored += plan.counts["stored"]
        counters.rejected += plan.counts["rejected"]
        counters.filtered += plan.counts["filtered"]
        counters.written += plan.documents
        counters.batches += 1
        self.metrics.observe_batch(plan, {t: dict(c) for t, c in plan.topic_counts.items()})

    def _note_written(self, offsets: dict[TopicPartition, int]) -> None:
        for tp, offset in offsets.items():
            self._uncommitted[tp] = max(offset, self._uncommitted.get(tp, -1))

    def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        self._note_written(offsets)
        assigned = set(self.source.assignment())
        due = {tp: o for tp, o in self._uncommitted.items() if tp in assigned}
        if not due:
            return
        self._last_commit_attempt = self._clock()
        try:
            self.source.commit(due)
        except CommitError as exc:
            # Kept: the next batch's commit (or the revocation) carries these offsets again.
            self._note_commit_failure(exc)
            return
        self.state.counters.commits += 1
        for tp, offset in due.items():
            if self._uncommitted.get(tp) == offset:
                del self._uncommitted[tp]

    def _note_commit_failure(self, exc: CommitError) -> None:
        self.state.counters.commit_failures += 1
        self.metrics.commit_failures.inc()
        self._note_error(f"offset commit failed (retriable={exc.retriable}): {exc}")

    # ---- declarations -------------------------------------------------------------------------

    def maybe_reload(self) -> None:
        """Follow the source declarations: subscribe to new topics (once their topic and
        collection exist), pause the topics whose declaration became invalid, apply changed
        contracts and filters to the next batch. Between batches only, never while retrying."""
        reloader = self._reloader
        if reloader is None or self._retrying or self._carry:
            return
        if self._clock() - self._last_reload < self.config.reload_interval_s:
            return
        self._last_reload = self._clock()
        catalog = reloader.load()
        if catalog is reloader.current:
            return
        if catalog.file_problems:
            # A file caught mid-edit (or broken): keep reading what was declared before.
            problems = [f"{path}: {why}" for path, why in sorted(catalog.file_problems.items())]
            if problems != self.state.declaration_problems:
                log.error("declarations unreadable, kept the previous ones: %s", problems)
            self.state.declaration_problems = problems
            reloader.current = catalog
            return
        ctx, paused = reloader.context(catalog)
        added = sorted(set(ctx.topic_map) - set(self.ctx.topic_map))
        if added and reloader.prepare is not None:
            try:
                reloader.prepare(catalog, added)
            except Exception as exc:  # noqa: BLE001 - Kafka or MongoDB away: retried next interval
                self._note_error(f"could not prepare new topics {added}: {exc}")
                log.warning("new topics not ready topics=%s: %s", ",".join(added), exc)
                return
        before = set(self.ctx.topic_map)
        reloader.current = catalog
        self.ctx = ctx
        self.state.declaration_problems = []
        for topic in sorted(set(paused) - set(self.state.paused_topics)):
            log.warning("topic paused topic=%s problem=%s", topic, paused[topic])
        for topic in sorted(set(self.state.paused_topics) - set(paused)):
            log.info("topic no longer paused topic=%s", topic)
        self.state.paused_topics = paused
        if set(ctx.topic_map) != before:
            removed = sorted(before - set(ctx.topic_map))
            log.info(
                "subscription changed added=%s removed=%s topics=%s",
                ",".join(added) or "-",
                ",".join(removed) or "-",
                ",".join(sorted(ctx.topic_map)),
            )
            self.source.subscribe(sorted(ctx.topic_map), self)
        else:
            log.info("declarations reloaded topics=%s", ",".join(sorted(ctx.topic_map)))

    # ---- heartbeat ----------------------------------------------------------------------------

    def maybe_heartbeat(self) -> None:
        """Refresh lag and write the pipeline_status document when the interval has passed."""
        if self._clock() - self._last_heartbeat < self.config.heartbeat_interval_s:
            return
        if self._inflight is not None:
            # The write in flight is the probe of MongoDB: the heartbeat waits for the moment
            # between two writes (handle_batch calls back here then), never blocking the overlap.
            return
        self._last_heartbeat = self._clock()
        quiet = self._clock() - self._last_commit_attempt >= self.config.heartbeat_interval_s
        if self._uncommitted and quiet and not self._retrying:
            # A commit that failed after the last batch of a burst gets no next batch to ride on.
            self._commit({})
        # While the write path is retrying, it is the probe of MongoDB; a second one would only
        # stall the loop for another server-selection timeout.
        self._write_heartbeat(refresh=True, write=not self._retrying)

    def _write_heartbeat(self, refresh: bool, write: bool = True) -> None:
        if refresh:
            self._refresh_offsets()
        self.metrics.observe_state(self.state)
        if not write:
            return
        try:
            self.store.write_status(
                status_id(self.config.group_id, self.config.instance),
                heartbeat_document(self.state, self._now()),
            )
        except StoreUnavailable as exc:
            self.state.store_ok = False
            self.metrics.store_up.set(0)
            self._note_error(f"MongoDB unavailable (heartbeat): {exc}")
            return
        self.state.store_ok = True
        self.metrics.store_up.set(1)
        self.metrics.heartbeat.set(time.time())

    def _refresh_offsets(self) -> None:
        self.state.member_id = self.source.member_id()
        self.state.assigned = self.source.assignment()
        try:
            self.state.partitions = self.source.partition_offsets(self.state.assigned, 2.0)
        except KafkaException as exc:
            log.warning("lag refresh failed (kept the previous values): %s", exc)

    # ---- small helpers ------------------------------------------------------------------------

    def _tick(self) -> None:
        self._last_tick = self._clock()

    def _note_error(self, message: str) -> None:
        self.state.last_error.message = message[:ERROR_TEXT_MAX]
        self.state.last_error.at = self._now()


def _names(partitions: list[TopicPartition]) -> str:
    return ",".join(f"{t}[{p}]" for t, p in sorted(partitions)) or "-"
