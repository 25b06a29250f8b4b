"""The Airflow REST calls the integration tests share: pause, trigger, list and wait for runs."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import requests

from headwater.settings import Settings
from infra.airflow import airflow_token

TERMINAL = {"success", "failed"}


def api(settings: Settings) -> tuple[str, dict[str, str]]:
    return settings.airflow.base_url, {"Authorization": f"Bearer {airflow_token(settings)}"}


def wait_for_backfill(settings: Settings, dag_id: str, timeout_s: float = 900) -> dict[str, Any]:
    """The DAG's newest backfill, once Airflow marks it completed (polled every 5 s)."""
    base, headers = api(settings)
    deadline = time.monotonic() + timeout_s
    while True:
        backfills = requests.get(
            f"{base}/api/v2/backfills", params={"dag_id": dag_id}, headers=headers, timeout=10
        ).json()["backfills"]
        newest = max(backfills, key=lambda b: b["id"])
        if newest["completed_at"]:
            return newest
        assert time.monotonic() < deadline, f"backfill of {dag_id} still running"
        time.sleep(5)


def set_paused(settings: Settings, dag_id: str, paused: bool) -> None:
    base, headers = api(settings)
    resp = requests.patch(
        f"{base}/api/v2/dags/{dag_id}", json={"is_paused": paused}, headers=headers, timeout=10
    )
    assert resp.status_code == 200, resp.text


@contextmanager
def unpaused(settings: Settings, *dag_ids: str) -> Iterator[None]:
    """Runs of a paused DAG stay queued (and its asset watchers do not run): unpause for the
    test, pause again after."""
    for dag_id in dag_ids:
        set_paused(settings, dag_id, False)
    try:
        yield
    finally:
        for dag_id in dag_ids:
            set_paused(settings, dag_id, True)


def trigger(settings: Settings, dag_id: str, conf: dict[str, Any]) -> str:
    """A manual run with `conf` as its params; returns its run id."""
    base, headers = api(settings)
    resp = requests.post(
        f"{base}/api/v2/dags/{dag_id}/dagRuns",
        json={"logical_date": None, "conf": conf},
        headers=headers,
        timeout=10,
    )
    assert resp.status_code == 200, resp.text
    return resp.json()["dag_run_id"]


def dag_runs(settings: Settings, dag_id: str, **params: Any) -> list[dict[str, Any]]:
    base, headers = api(settings)
    resp = requests.get(
        f"{base}/api/v2/dags/{dag_id}/dagRuns",
        params={"limit": 100, "order_by": "-run_after", **params},
        headers=headers,
        timeout=10,
    )
    resp.raise_for_status()
    return resp.json()["dag_runs"]


def wait_run(settings: Settings, dag_id: str, run_id: str, timeout_s: float = 300) -> str:
    """Wait (bounded) until the run ends; returns its state."""
    base, headers = api(settings)
    deadline = time.monotonic() + timeout_s
    while True:
        resp = requests.get(
            f"{base}/api/v2/dags/{dag_id}/dagRuns/{run_id}", headers=headers, timeout=10
        )
        resp.raise_for_status()
        state = resp.json()["state"]
        if state in TERMINAL:
            return state
        assert time.monotonic() < deadline, f"{dag_id} run {run_id} still {state}"
        time.sleep(2)


def xcom(settings: Settings, dag_id: str, run_id: str, task_id: str) -> Any:
    base, headers = api(settings)
    resp = requests.get(
        f"{base}/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}"
        "/xcomEntries/return_value",
        headers=headers,
        timeout=10,
    )
    resp.raise_for_status()
    return resp.json()["value"]


def asset_event_ids(settings: Settings, source_dag_id: str, since: str) -> set[int]:
    """The ids of the asset events a DAG's tasks emitted at or after `since` (ISO-8601)."""
    base, headers = api(settings)
    resp = requests.get(
        f"{base}/api/v2/assets/events",
        params={"source_dag_id": source_dag_id, "timestamp_gte": since, "limit": 1000},
        headers=headers,
        timeout=10,
    )
    resp.raise_for_status()
    return {e["id"] for e in resp.json()["asset_events"]}


def consumed_event_ids(settings: Settings, dag_id: str, run_id: str) -> set[int]:
    """The asset events that triggered (were consumed by) one run."""
    base, headers = api(settings)
    resp = requests.get(
        f"{base}/api/v2/dags/{dag_id}/dagRuns/{run_id}/upstreamAssetEvents",
        headers=headers,
        timeout=10,
    )
    resp.raise_for_status()
    return {e["id"] for e in resp.json()["asset_events"]}
