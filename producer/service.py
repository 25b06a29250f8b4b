"""One ingest run: pull a source's window and produce it to Kafka (for DAG tasks and the CLI)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import closing
from datetime import UTC, datetime
from typing import Any

from headwater.clients import mongo_client, producer_config
from headwater.kafka_admin import admin_client, group_offsets
from headwater.reconcile import Tally, reconcile, wait_for_commits
from headwater.reconcile_log import reconcile_and_record, record_reconcile
from headwater.settings import Settings, get_settings
from headwater.sources import Source, ensure_utc, get_source
from headwater.windows import run_window
from producer.kafka_out import ProduceResult, produce
from producer.pull import PullStats, RetryPolicy, pull

log = logging.getLogger(__name__)

# Pages fetched ahead of the produce: the next pages download while the current one is produced,
# and a run never holds more than this many pages (plus the one being produced) in memory.
PREFETCH_PAGES = 2
# How long reconcile waits for the consumer to store a window before it fails the run.
RECONCILE_TIMEOUT_S = 180.0


def ingest_window(
    source: Source,
    since: datetime,
    until: datetime,
    settings: Settings,
    *,
    run_id: str,
    policy: RetryPolicy | None = None,
    progress: Callable[[int, PullStats], None] | None = None,
    producer_overrides: dict[str, str | int | bool] | None = None,
) -> ProduceResult:
    """Pull exactly [since, until) from `source` and produce every record; raises on any loss."""
    since, until = ensure_utc(since), ensure_utc(until)
    stats = PullStats()
    config = producer_config(settings, producer_overrides)
    log.info(
        "ingest start source=%s topic=%s since=%s until=%s run_id=%s",
        source.name,
        source.topic,
        since.isoformat(),
        until.isoformat(),
        run_id,
    )
    on_record = (lambda n: progress(n, stats)) if progress is not None else None
    records = pull(
        source, since, until, settings, policy=policy, stats=stats, prefetch=PREFETCH_PAGES
    )
    # Closed explicitly, not whenever the generator is collected: if the produce fails, the
    # pulling thread stops now instead of fetching on.
    with closing(records):
        return produce(
            records,
            source,
            config,
            since=since,
            until=until,
            run_id=run_id,
            progress=on_record,
        )


def ingest_run(
    source_name: str,
    interval_start: datetime | None,
    interval_end: datetime | None,
    params: dict[str, Any],
    run_id: str,
) -> dict[str, Any]:
    """What an ingest DAG task does: pick the run's window, ingest it, return the counts."""
    since, until = run_window(interval_start, interval_end, params)
    result = ingest_window(get_source(source_name), since, until, get_settings(), run_id=run_id)
    return {
        **result.as_dict(),
        "since": since.isoformat(),
        "until": until.isoformat(),
        "run_id": run_id,
    }


def reconcile_run(source_name: str, ingested: dict[str, Any]) -> dict[str, Any]:
    """What an ingest DAG's reconcile task does: wait until the consumer committed past what the
    run produced, then count the run's own keys in MongoDB and compare. Its outcome, passed or
    failed, is recorded in reconcile_runs (the Headwater page in the Airflow UI shows it)."""
    settings = get_settings()
    source = get_source(source_name)

    def record(doc: dict[str, Any]) -> None:
        with mongo_client(settings) as client:
            record_reconcile(client[settings.mongo.db], doc)

    tally = reconcile_and_record(
        source,
        ingested,
        run=lambda: _reconcile(settings, source, ingested),
        record=record,
        now=lambda: datetime.now(UTC),
    )
    return tally.as_dict()


def _reconcile(settings: Settings, source: Source, ingested: dict[str, Any]) -> Tally:
    source_name = source.name
    # Reading watermarks and the group's commits is the health principal's (describe only).
    admin = admin_client(settings, "health")
    group = settings.consumer.group or settings.kafka.consumer_group

    def offsets() -> tuple[dict[tuple[str, int], int], dict[tuple[str, int], int]]:
        answer = group_offsets(admin, group, [source.topic])
        return (
            {(o.topic, o.partition): o.high for o in answer},
            # No commit yet is Kafka's -1001 sentinel: the group starts at the low watermark.
            {(o.topic, o.partition): o.committed if o.committed >= 0 else o.low for o in answer},
        )

    gaps = wait_for_commits(offsets, timeout_s=RECONCILE_TIMEOUT_S)
    log.info(
        "reconcile source=%s topic=%s consumer %s",
        source_name,
        source.topic,
        f"behind {gaps}" if gaps else "committed past the window",
    )
    with mongo_client(settings) as client:
        tally = reconcile(
            client[settings.mongo.db],
            source,
            ingested["run_id"],
            pulled=ingested["pulled"],
            produced=ingested["produced"],
            # Caught up: the counts should add up at once (a little slack for a late batch).
            # Still behind after the wait: count briefly and fail with the numbers.
            timeout_s=10.0 if gaps else 60.0,
            poll_s=3.0,
        )
    return tally
