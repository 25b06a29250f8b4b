"""What every Headwater DAG shares: start date, owner and retry policy, and the window Params.

Only the DAG files import this (it needs Airflow's task SDK); the logic the DAGs run lives in
the other headwater modules.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import Param

OWNER = "headwater"
# A fixed past start: with catchup=False the scheduler only ever runs the latest interval.
START = datetime(2026, 1, 1)


def default_args(retries: int = 3, retry_delay_s: float = 20) -> dict[str, Any]:
    """Owner and retries; retries back off exponentially up to 5 minutes."""
    return {
        "owner": OWNER,
        "retries": retries,
        "retry_delay": timedelta(seconds=retry_delay_s),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=5),
    }


def window_params(unit: str = "") -> dict[str, Param]:
    """`since`/`until` for manual runs (their own data interval can be empty); the trigger form
    shows them as date-time pickers. `unit` adds a constraint to the description."""
    extra = f", {unit}" if unit else ""
    return {
        "since": Param(
            None,
            type=["null", "string"],
            format="date-time",
            description=f"Manual runs: window start (inclusive{extra}), ISO-8601 UTC.",
        ),
        "until": Param(
            None,
            type=["null", "string"],
            format="date-time",
            description=f"Manual runs: window end (exclusive{extra}), ISO-8601 UTC.",
        ),
    }
