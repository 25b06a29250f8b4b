"""The consumer's half of late data: after a batch is written, notice the rolled-up windows it hit.

`NotifyingStore` wraps the MongoDB store: once MongoDB acknowledged a plan, the 1-minute windows
of its stored readings that already have a rollup are published as one notice
(headwater.late_data) to `kafka.late_notices_topic`, acks=all and idempotent, and the write
returns only when Kafka acknowledged the notice. The batch's offsets are committed after that
(the service commits only what `write` returned from), so a notice is never lost to a crash: a
batch whose notice failed is written again (harmless, by _id) and noticed again. A failed notice
raises StoreUnavailable, so the loop backs off and retries as for MongoDB being down.

Whether a window has a rollup is one indexed find_one per distinct minute of the batch
((window, start) index on readings_rollup); windows known to be rolled up are cached (rollups are
never deleted, so a positive answer never goes stale).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from consumer.mongo_store import StoreUnavailable
from consumer.pipeline import WritePlan
from headwater.contracts import Collections
from headwater.late_data import MAX_RANGES, NOTICE_WINDOW, coalesce, encode_notice
from headwater.rollups import window_start

log = logging.getLogger(__name__)

ROLLUP_WINDOW_NAME = "1m"


def stored_window_starts(plan: WritePlan, refused: Mapping[tuple[str, str], str]) -> set[datetime]:
    """The 1-minute windows of the readings a plan stored (refused documents excluded)."""
    starts: set[datetime] = set()
    for doc_id, doc in plan.upserts.get(Collections.READINGS, {}).items():
        if (Collections.READINGS, doc_id) in refused:
            continue
        ts = doc.get("ts")
        if isinstance(ts, datetime):
            starts.add(window_start(ts, NOTICE_WINDOW))
    return starts


class RollupIndex(Protocol):
    def has_rollup(self, start: datetime) -> bool: ...


class MongoRollupIndex:
    """Does a 1-minute window have a rollup? Positive answers cached (bounded)."""

    def __init__(self, db: Any, cache_size: int = 100_000) -> None:
        self._rollups = db[Collections.READINGS_ROLLUP]
        self._known: OrderedDict[datetime, None] = OrderedDict()
        self._cache_size = cache_size

    def has_rollup(self, start: datetime) -> bool:
        if start in self._known:
            self._known.move_to_end(start)
            return True
        found = self._rollups.find_one({"window": ROLLUP_WINDOW_NAME, "start": start}, {"_id": 1})
        if found is None:
            return False
        self._known[start] = None
        if len(self._known) > self._cache_size:
            self._known.popitem(last=False)
        return True


class NoticeSink(Protocol):
    def publish(self, key: str, value: bytes) -> None:
        """Deliver one message, acknowledged by every in-sync replica; raise on any failure."""


class KafkaNoticeSink:
    """An idempotent acks=all producer for the notices topic, created on first use."""

    def __init__(self, topic: str, config: Mapping[str, Any], timeout_s: float = 30.0) -> None:
        self._topic = topic
        self._config = dict(config)
        self._timeout_s = timeout_s
        self._producer: Any = None

    def publish(self, key: str, value: bytes) -> None:
        from confluent_kafka import Producer

        if self._producer is None:
            self._producer = Producer(self._config)
        errors: list[Any] = []

        def delivered(err: Any, _msg: Any) -> None:
            if err is not None:
                errors.append(err)

        self._producer.produce(self._topic, key=key.encode(), value=value, on_delivery=delivered)
        remaining = self._producer.flush(self._timeout_s)
        if errors or remaining:
            raise RuntimeError(
                f"late notice to {self._topic} not delivered: "
                f"{errors[0] if errors else f'{remaining} still queued after {self._timeout_s}s'}"
            )

    def close(self) -> None:
        if self._producer is not None:
            self._producer.flush(self._timeout_s)
            self._producer = None


class LateNotifier:
    """Publishes the rolled-up windows a written plan touched; counts what it did."""

    def __init__(
        self,
        index: RollupIndex,
        sink: NoticeSink,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.index = index
        self.sink = sink
        self._now = now
        self.notices = 0
        self.windows = 0

    def late_windows(self, starts: Iterable[datetime]) -> list[datetime]:
        return sorted(s for s in set(starts) if self.index.has_rollup(s))

    def notify(self, plan: WritePlan, refused: Mapping[tuple[str, str], str]) -> int:
        """Publish the notices of `plan`; returns how many windows were named."""
        late = self.late_windows(stored_window_starts(plan, refused))
        if not late:
            return 0
        ranges = coalesce(late, NOTICE_WINDOW)
        for i in range(0, len(ranges), MAX_RANGES):
            chunk = ranges[i : i + MAX_RANGES]
            self.sink.publish(
                Collections.READINGS, encode_notice(Collections.READINGS, chunk, self._now())
            )
            self.notices += 1
        self.windows += len(late)
        log.info(
            "late notice published collection=%s windows=%d ranges=%d first=%s last=%s",
            Collections.READINGS,
            len(late),
            len(ranges),
            late[0].isoformat(),
            late[-1].isoformat(),
        )
        return len(late)


class DocumentStore(Protocol):
    def write(self, plan: WritePlan) -> dict[tuple[str, str], str]: ...

    def write_status(self, doc_id: str, document: dict[str, Any]) -> None: ...


class NotifyingStore:
    """A DocumentStore that notices late data once a plan is written (see the module doc)."""

    def __init__(self, inner: DocumentStore, notifier: LateNotifier) -> None:
        self.inner = inner
        self.notifier = notifier

    def write(self, plan: WritePlan) -> dict[tuple[str, str], str]:
        refused = self.inner.write(plan)
        try:
            self.notifier.notify(plan, refused)
        except StoreUnavailable:
            raise
        except Exception as exc:
            # Kafka (or the rollup lookup) failed: the batch must not be committed without its
            # notice. Written again on retry, which changes nothing in MongoDB.
            raise StoreUnavailable(f"late notice: {exc}") from exc
        return refused

    def write_status(self, doc_id: str, document: dict[str, Any]) -> None:
        self.inner.write_status(doc_id, document)
