"""replay_rejected: re-run quarantined messages through the contracts and filters declared now.

Manual only (no schedule). The Params select rejects: `topic`, `stage`, `reason_pattern` (a regular
expression on the reason) and `rejected_since` / `rejected_until` (a range of `rejected_at`, UTC);
unset means any. `dry_run` (default true) changes nothing and reports how many selected rejects
would be stored, filtered or still rejected, per reason. With `dry_run` false, the ones that pass
now are stored under their natural key, as the consumer would store them, and deleted from
`rejected` once the write is acknowledged; the others stay as they are. Rejects whose raw value
was truncated when quarantined cannot be rebuilt: counted as unreplayable and left. Replaying
again changes nothing. The task's summary (counts by outcome and reason) is its XCom.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import Param, dag, get_current_context, task

from consumer.documents import STAGES
from headwater.dag_defaults import START, default_args


@dag(
    dag_id="replay_rejected",
    description="Re-run rejected messages through today's contracts and filters",
    schedule=None,
    start_date=START,
    catchup=False,
    # One at a time: two replays of the same rejects would race on their writes and deletes.
    max_active_runs=1,
    default_args=default_args(),
    tags=["headwater", "replay"],
    params={
        "topic": Param(None, type=["null", "string"], description="Only rejects of this topic."),
        "stage": Param(
            None,
            type=["null", "string"],
            enum=[None, *STAGES],
            description="Only rejects of this stage.",
        ),
        "reason_pattern": Param(
            None,
            type=["null", "string"],
            description="Only rejects whose reason matches this regular expression.",
        ),
        "rejected_since": Param(
            None,
            type=["null", "string"],
            format="date-time",
            description="Only rejects with rejected_at at or after this time (ISO-8601 UTC).",
        ),
        "rejected_until": Param(
            None,
            type=["null", "string"],
            format="date-time",
            description="Only rejects with rejected_at before this time (ISO-8601 UTC).",
        ),
        "dry_run": Param(
            True,
            type="boolean",
            description="Report what a replay would do and change nothing.",
        ),
    },
    doc_md=__doc__,
)
def replay_rejected() -> None:
    @task(task_id="replay")
    def replay() -> dict[str, Any]:
        from consumer.replay import SelectionError
        from consumer.replay_service import replay_run
        from headwater.airflow_errors import fail_without_retry

        context = get_current_context()
        # A bad param fails at once: retrying asks the same question again.
        with fail_without_retry(SelectionError):
            return replay_run(dict(context["params"]), context["run_id"])

    replay()


replay_rejected()
