"""One ingest DAG per source declared in sources.yaml: pull the run's window into its topic.

Scheduled and backfill runs pull exactly their data interval; a manual run takes the `since` and
`until` params (its own data interval can be empty). `catchup=False`: after downtime the scheduler
runs only the latest interval, and past ones are filled deliberately with a backfill, so an outage
never floods the cluster unasked. `pull_and_produce` returns (pulled, produced, bytes, seconds,
window) as its XCom, visible in the UI; `reconcile` then waits (bounded) until MongoDB holds the
window and fails the run, with the numbers in its log, unless pulled == produced == stored +
rejected, and on success emits an asset event for the source's collection naming the window
(rollup_readings is scheduled on it). A source that refuses the request (a 4xx other than 429)
or answers something that is not a page fails `pull_and_produce` at once with the source's
answer, without retries.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import DAG, dag, get_current_context, task
from airflow.timetables.interval import DeltaDataIntervalTimetable

from headwater.airflow_errors import fail_without_retry
from headwater.assets import collection_asset
from headwater.dag_defaults import START, default_args, window_params
from headwater.reconcile import reconciled_extra
from headwater.sources import Source, load_sources


def dag_id_for(source: Source) -> str:
    return "ingest_" + source.name.replace("-", "_")


def build_ingest_dag(source: Source) -> DAG:
    """The ingest DAG of one source (wiring only: the work is producer.service.ingest_run)."""

    @dag(
        dag_id=dag_id_for(source),
        description=f"Pull {source.name} into topic {source.topic}: {source.description}",
        # Explicitly a data-interval timetable: in Airflow 3 a bare timedelta or cron string
        # gives trigger timetables whose runs have zero-width intervals (backfills too).
        schedule=DeltaDataIntervalTimetable(timedelta(seconds=source.interval_s)),
        start_date=START,
        catchup=False,
        max_active_runs=2,
        default_args=default_args(),
        tags=["headwater", "ingest", source.name],
        params=window_params(),
        doc_md=__doc__,
    )
    def ingest() -> None:
        @task(task_id="pull_and_produce")
        def pull_and_produce() -> dict[str, Any]:
            from producer.pull import SourceError
            from producer.service import ingest_run

            context = get_current_context()
            # A 4xx (other than 429) or a malformed answer fails the task at once: retrying asks
            # the same question again. 5xx, timeouts and 429 keep the retries of default_args.
            with fail_without_retry(SourceError):
                return ingest_run(
                    source.name,
                    context.get("data_interval_start"),
                    context.get("data_interval_end"),
                    dict(context["params"]),
                    context["run_id"],
                )

        # The source's collection as an asset: a reconciled window is an asset event, with the
        # window in its extra, for scheduled, manual and backfill runs alike (rollup_readings
        # is scheduled on the readings asset and recomputes exactly that window).
        collection = collection_asset(source.collection)

        @task(task_id="reconcile", outlets=[collection])
        def reconcile(ingested: dict[str, Any]) -> dict[str, Any]:
            from producer.service import reconcile_run

            tally = reconcile_run(source.name, ingested)
            get_current_context()["outlet_events"][collection].extra = reconciled_extra(
                source, ingested, tally
            )
            return tally

        reconcile(pull_and_produce())

    return ingest()


for _source in load_sources().values():
    globals()[dag_id_for(_source)] = build_ingest_dag(_source)
