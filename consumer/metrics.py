"""Prometheus metrics of one consumer process, on a registry of its own (no global state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from consumer.pipeline import WritePlan
from consumer.status import ConsumerState
from headwater.kafka_admin import partition_lag


class ConsumerMetrics:
    """The counters and gauges /metrics serves; updated by the service loop."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.messages = Counter(
            "headwater_consumer_messages",
            "Messages consumed, by topic and outcome (stored, rejected, filtered)",
            ["topic", "outcome"],
            registry=r,
        )
        self.documents = Counter(
            "headwater_consumer_documents_written",
            "Documents upserted, by collection",
            ["collection"],
            registry=r,
        )
        self.batches = Counter("headwater_consumer_batches", "Batches written", registry=r)
        self.store_retries = Counter(
            "headwater_consumer_store_retries", "Writes retried: MongoDB unavailable", registry=r
        )
        self.commit_failures = Counter(
            "headwater_consumer_commit_failures", "Offset commits that failed", registry=r
        )
        self.batch_seconds = Histogram(
            "headwater_consumer_batch_seconds",
            "Time from a batch consumed to its offsets committed",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=r,
        )
        self.lag = Gauge(
            "headwater_consumer_lag",
            "High watermark minus committed offset",
            ["topic", "partition"],
            registry=r,
        )
        self.assigned = Gauge(
            "headwater_consumer_assigned_partitions", "Partitions assigned", registry=r
        )
        self.store_up = Gauge(
            "headwater_consumer_mongo_up", "1 when MongoDB takes writes", registry=r
        )
        self.heartbeat = Gauge(
            "headwater_consumer_last_heartbeat_timestamp_seconds",
            "When the heartbeat document was last written",
            registry=r,
        )
        self.store_up.set(1)

    def observe_batch(self, plan: WritePlan, topics: dict[str, dict[str, int]]) -> None:
        """Count one written batch: per-topic outcomes and per-collection documents."""
        for topic, outcomes in topics.items():
            for outcome, n in outcomes.items():
                self.messages.labels(topic, outcome).inc(n)
        for collection, docs in plan.upserts.items():
            self.documents.labels(collection).inc(len(docs))
        if plan.rejections:
            self.documents.labels("rejected").inc(len(plan.rejections))
        self.batches.inc()

    def observe_state(self, state: ConsumerState) -> None:
        """Gauges from the current state: lag per partition, assignment size, MongoDB up."""
        self.lag.clear()
        for p in state.partitions:
            lag = partition_lag(p.committed, p.low, p.high)
            if lag is not None:
                self.lag.labels(p.topic, str(p.partition)).set(lag)
        self.assigned.set(len(state.assigned))
        self.store_up.set(1 if state.store_ok else 0)
