"""One archive DAG per collection that holds source records: its closed days to Parquet, then prune.

Daily data-interval timetable (UTC midnight to midnight), backfillable: a scheduled or backfill
run archives exactly its day; a manual run archives the whole UTC days in its `since`/`until`
params. `wait_until_closed` holds a run until its day ended HEADWATER_ARCHIVE_GRACE_S ago (late
pulls and the consumer's lag land first; a backfill of older days passes at once).
`archive_days` writes each source's day to <root>/<collection>/source=<source>/date=<day>/
data.parquet (zstd, schema from the declared contracts), atomically, reads it back and fails the
run unless its row count and key checksum equal what MongoDB holds for the day; only then is the
day's manifest written (headwater.archive_store). `prune` then deletes from MongoDB the days
older than the collection's retention whose archive verifies, and fails the run, after pruning
the rest, naming every day it refused (no archive, a changed or unreadable file, or documents
the archive lacks). One run at a time per collection. Counts are each task's XCom.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import DAG, Asset, PokeReturnValue, dag, get_current_context, task
from airflow.timetables.interval import CronDataIntervalTimetable

from headwater.dag_defaults import START, default_args, window_params
from headwater.sources import load_sources


def dag_id_for(collection: str) -> str:
    return f"archive_{collection}"


def archive_asset(collection: str) -> Asset:
    """The Parquet archive of one collection (an event per archived run, with its days)."""
    return Asset(
        name=f"{collection}_archive", uri=f"headwater://archive/{collection}", group="archive"
    )


def build_archive_dag(collection: str, sources: list[str]) -> DAG:
    """The archive DAG of one collection (wiring only: the work is headwater.archive_runs)."""

    @dag(
        dag_id=dag_id_for(collection),
        description=f"Archive {collection} ({', '.join(sources)}) to Parquet per day; prune",
        # A data-interval timetable: each run is one whole UTC day (a bare cron string would
        # give zero-width intervals in Airflow 3, backfills too).
        schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
        start_date=START,
        catchup=False,
        max_active_runs=1,
        default_args=default_args(),
        tags=["headwater", "archive", collection],
        params=window_params("whole UTC days"),
        doc_md=__doc__,
    )
    def archive() -> None:
        @task.sensor(
            task_id="wait_until_closed", poke_interval=300, mode="reschedule", timeout=6 * 3600
        )
        def wait_until_closed() -> PokeReturnValue:
            from headwater.archive_runs import archive_days, closed

            context = get_current_context()
            days = archive_days(
                context.get("data_interval_start"),
                context.get("data_interval_end"),
                dict(context["params"]),
            )
            return PokeReturnValue(is_done=closed(days))

        outlet = archive_asset(collection)

        @task(task_id="archive_days", outlets=[outlet])
        def archive_days_task() -> dict[str, Any]:
            from headwater.archive_runs import archive_run

            context = get_current_context()
            result = archive_run(
                collection,
                context.get("data_interval_start"),
                context.get("data_interval_end"),
                dict(context["params"]),
                context["run_id"],
            )
            context["outlet_events"][outlet].extra = {
                "days": result["days"],
                "rows": result["rows"],
            }
            return result

        @task(task_id="prune")
        def prune_task() -> dict[str, Any]:
            from headwater.archive_runs import prune_run

            return prune_run(collection)

        wait_until_closed() >> archive_days_task() >> prune_task()

    return archive()


_collections: dict[str, list[str]] = {}
for _source in load_sources().values():
    _collections.setdefault(_source.collection, []).append(_source.name)
for _collection, _names in sorted(_collections.items()):
    globals()[dag_id_for(_collection)] = build_archive_dag(_collection, sorted(_names))
