"""Recompute the 10 s and 1 min rollups of `readings` for each 5-minute interval.

Idempotent: each window's document is replaced whole, so any interval can run again (a backfill,
a retry, a late reading) without changing what is already right. A manual run takes the `since`
and `until` params (whole minutes). `catchup=False`: after downtime only the latest interval runs;
past ones are filled deliberately with a backfill. The task's counts are its XCom.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import dag, get_current_context, task
from airflow.timetables.interval import DeltaDataIntervalTimetable

from headwater.dag_defaults import START, default_args, window_params


@dag(
    dag_id="rollup_readings",
    description="Recompute 10 s and 1 min rollups of readings into readings_rollup",
    # Explicitly a data-interval timetable: a bare timedelta is a trigger timetable in Airflow 3,
    # whose runs have zero-width intervals. 5 minutes is a whole number of every window size.
    schedule=DeltaDataIntervalTimetable(timedelta(minutes=5)),
    start_date=START,
    catchup=False,
    # One at a time: two runs over neighbouring intervals never race on the same collection.
    max_active_runs=1,
    default_args=default_args(),
    tags=["headwater", "rollups"],
    params=window_params("whole minute"),
    doc_md=__doc__,
)
def rollup_readings() -> None:
    @task(task_id="recompute_rollups")
    def recompute() -> dict[str, Any]:
        from headwater.rollups import rollup_run

        context = get_current_context()
        return rollup_run(
            context.get("data_interval_start"),
            context.get("data_interval_end"),
            dict(context["params"]),
        )

    recompute()


rollup_readings()
