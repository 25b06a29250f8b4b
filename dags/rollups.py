"""Recompute the 10 s and 1 min rollups of `readings` for exactly the windows whose data changed.

Scheduled on assets, not on a clock: `readings` (each ingest DAG's reconcile emits an event
naming the window it reconciled: scheduled, manual and backfill runs alike) or `late_readings`
(an AssetWatcher turns each late-data notice the consumer publishes into an event naming the
rolled-up windows a stored reading changed). A run recomputes every window its events name, each
once, however many events a burst queued (headwater.rollups.windows_to_recompute). A manual run
with the `since` and `until` params (whole minutes) recomputes that range instead: the way to
rebuild any range by hand. Idempotent: each window's document is replaced whole. One run at a
time, so two runs never race on a window. The task's counts and windows are its XCom.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import dag, get_current_context, task

from headwater.assets import READINGS, READINGS_ROLLUP, late_readings_asset
from headwater.dag_defaults import START, default_args, window_params


@dag(
    dag_id="rollup_readings",
    description="Recompute 10 s and 1 min rollups of the readings windows that changed",
    schedule=READINGS | late_readings_asset(),
    start_date=START,
    catchup=False,
    # One at a time: two runs over neighbouring windows never race on the same documents, and
    # events queued meanwhile are coalesced into the next run.
    max_active_runs=1,
    default_args=default_args(),
    tags=["headwater", "rollups"],
    params=window_params("whole minute"),
    doc_md=__doc__,
)
def rollup_readings() -> None:
    @task(task_id="recompute_rollups", outlets=[READINGS_ROLLUP])
    def recompute() -> dict[str, Any]:
        from headwater.rollups import rollup_events_run

        context = get_current_context()
        extras = [
            dict(event.extra or {})
            for events in context["triggering_asset_events"].values()
            for event in events
        ]
        result = rollup_events_run(extras, dict(context["params"]))
        context["outlet_events"][READINGS_ROLLUP].extra = {
            "windows": result["windows"],
            "rollups": result["rollups"],
        }
        return result

    recompute()


rollup_readings()
