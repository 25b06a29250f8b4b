"""One ingest run: pull a source's window and produce it to Kafka (for DAG tasks and the CLI)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from headwater.settings import Settings
from headwater.sources import Source, ensure_utc
from producer.kafka_out import ProduceResult, produce
from producer.pull import PullStats, RetryPolicy, pull

log = logging.getLogger(__name__)


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
    config = {**settings.kafka.producer_config(), **(producer_overrides or {})}
    log.info(
        "ingest start source=%s topic=%s since=%s until=%s run_id=%s",
        source.name,
        source.topic,
        since.isoformat(),
        until.isoformat(),
        run_id,
    )
    records = pull(source, since, until, settings, policy=policy, stats=stats)
    on_record = (lambda n: progress(n, stats)) if progress is not None else None
    return produce(
        records,
        source,
        config,
        since=since,
        until=until,
        run_id=run_id,
        progress=on_record,
    )
