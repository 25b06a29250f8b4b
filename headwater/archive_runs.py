"""What the archive DAGs' tasks run (dags/archive.py stays wiring): archive days, then prune."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime
from typing import Any

from headwater.archive import ArchiveError, day_closed, days_of, parse_retention, retention_days
from headwater.archive_store import ArchiveFiles, archive_day, prune, sources_by_collection
from headwater.clients import mongo_client
from headwater.settings import Settings, get_settings
from headwater.sources import Source, load_sources
from headwater.windows import run_window

log = logging.getLogger(__name__)


def collection_sources(collection: str) -> list[Source]:
    """The declared sources stored in a collection; ArchiveError when none is."""
    grouped = sources_by_collection(load_sources())
    if collection not in grouped:
        raise ArchiveError(f"no declared source is stored in collection {collection!r}")
    return grouped[collection]


def archive_days(
    interval_start: datetime | None,
    interval_end: datetime | None,
    params: dict[str, Any],
) -> list[date]:
    """The UTC days a run archives: its data interval (one day), or a manual run's since/until."""
    since, until = run_window(interval_start, interval_end, params)
    return days_of(since, until)


def closed(days: list[date], settings: Settings | None = None) -> bool:
    """Whether the last of a run's days ended at least the archive grace ago."""
    settings = settings or get_settings()
    return day_closed(max(days), datetime.now(UTC), settings.archive.grace_s)


def collection_retention(collection: str, settings: Settings | None = None) -> int | None:
    settings = settings or get_settings()
    return retention_days(
        collection,
        parse_retention(settings.archive.retention),
        settings.archive.retention_default,
        settings.mongo.embedded,
    )


def archive_run(
    collection: str,
    interval_start: datetime | None,
    interval_end: datetime | None,
    params: dict[str, Any],
    run_id: str | None,
) -> dict[str, Any]:
    """Archive each of the run's days for every source stored in the collection."""
    settings = get_settings()
    sources = collection_sources(collection)
    days = archive_days(interval_start, interval_end, params)
    files = ArchiveFiles(settings.archive_root)
    client = mongo_client(settings, appname="headwater-archive")
    results = []
    failed: list[str] = []
    try:
        db = client[settings.mongo.db]
        for day in days:
            for source in sources:
                # One source's failure (a day that changed while archiving, an unreadable old
                # archive) does not keep the others unarchived; the task still fails after.
                try:
                    result = archive_day(
                        db,
                        files,
                        sources,
                        source,
                        day,
                        run_id=run_id,
                        batch=settings.archive.batch_docs,
                    )
                except ArchiveError as exc:
                    log.error(
                        "archive failed collection=%s source=%s date=%s reason=%s",
                        collection,
                        source.name,
                        day,
                        exc,
                    )
                    failed.append(str(exc))
                    continue
                results.append(result.as_dict())
    finally:
        client.close()
    if failed:
        raise ArchiveError(f"{len(failed)} source day(s) not archived: " + "; ".join(failed))
    return {
        "collection": collection,
        "root": files.root,
        "days": [d.isoformat() for d in days],
        "rows": sum(r["rows"] for r in results),
        "file_bytes": sum(r["file_bytes"] for r in results),
        "bson_bytes": sum(r["bson_bytes"] for r in results),
        "archived": results,
    }


def prune_run(collection: str, now: datetime | None = None) -> dict[str, Any]:
    """Prune the collection's days past its retention; ArchiveError (after pruning every day
    that could be) naming each day it refused."""
    settings = get_settings()
    sources = collection_sources(collection)
    retention = collection_retention(collection, settings)
    if retention is None:
        log.info("prune off collection=%s (retention off)", collection)
        return {"collection": collection, "retention_days": None, "pruned": [], "deleted": 0}
    files = ArchiveFiles(settings.archive_root)
    client = mongo_client(settings, appname="headwater-prune")
    try:
        report = prune(
            client[settings.mongo.db], files, sources, retention, now or datetime.now(UTC)
        )
    finally:
        client.close()
    summary = report.as_dict()
    if report.blocked:
        lines = "; ".join(b["reason"] for b in report.blocked)
        raise ArchiveError(
            f"prune of {collection} blocked for {len(report.blocked)} day(s), "
            f"pruned {len(report.pruned)} ({summary['deleted']} documents): {lines}. "
            f"Archive those days first (backfill archive_{collection} over them)."
        )
    return summary
