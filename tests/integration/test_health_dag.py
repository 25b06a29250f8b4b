"""The pipeline_health checks against the real stack: green when all is up, red naming the cause."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient
from pymongo.database import Database

from headwater.clients import mongo_client
from headwater.contracts import Collections
from headwater.health_checks import (
    ALL_CHECKS,
    CHECK_BROKERS,
    CHECK_HEARTBEAT,
    CHECK_LAG,
    CHECK_PARTITIONS,
)
from headwater.kafka_admin import admin_client
from headwater.settings import REPO_ROOT, Settings
from headwater.sources import get_source
from infra import stack
from producer.service import ingest_window

_DAG_TEST = """
import json
from airflow.dag_processing.dagbag import DagBag
dag = DagBag(dag_folder="dags").dags["pipeline_health"]
run = dag.test()
states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
print(json.dumps({"state": str(run.state), "run_id": run.run_id, "tasks": states}))
"""


@pytest.fixture
def db(live_stack: Settings) -> Iterator[Database]:
    with mongo_client(live_stack) as client:
        yield client[live_stack.mongo.db]


@pytest.fixture
def admin(live_stack: Settings) -> AdminClient:
    return admin_client(live_stack, log_level="0")


def _ingest_devices(settings: Settings, since: datetime, until: datetime, run_id: str) -> int:
    result = ingest_window(get_source("devices"), since, until, settings, run_id=run_id)
    return result.produced


def _ingest_recent_devices(settings: Settings, run_id: str) -> None:
    """Make the devices source fresh: the last 20 s of the simulator (the test stack's DAGs are
    paused, so nothing else keeps it flowing)."""
    until = datetime.now(UTC).replace(microsecond=0)
    assert _ingest_devices(settings, until - timedelta(seconds=20), until, run_id) > 0


def _run_until(
    run: Callable[[], dict[str, Any]], done: Callable[[dict[str, Any]], bool], timeout_s: float
) -> dict[str, Any]:
    """Run a check until `done(result)` or the timeout; returns the last result."""
    deadline = time.monotonic() + timeout_s
    while True:
        doc = run()
        if done(doc) or time.monotonic() > deadline:
            return doc
        time.sleep(1)


def test_every_check_passes_and_is_recorded_with_the_stack_up(
    live_stack: Settings, probes: ModuleType, admin: AdminClient, db: Database, unique_name: str
) -> None:
    _ingest_recent_devices(live_stack, unique_name)

    def run_all() -> dict[str, Any]:
        docs = {
            check: probes.run_and_record(
                check, live_stack, admin=admin, db=db, run_id=unique_name, try_number=1
            )
            for check in ALL_CHECKS
        }
        return {"docs": docs, "ok": all(d["ok"] for d in docs.values())}

    # The consumer stores and commits what was just produced within a few seconds.
    result = _run_until(run_all, lambda r: r["ok"], timeout_s=30)
    assert result["ok"], {c: d["detail"] for c, d in result["docs"].items() if not d["ok"]}
    stored = list(db[Collections.HEALTH_CHECKS].find({"dag_run_id": unique_name}))
    assert sorted(d["check"] for d in stored) == sorted(ALL_CHECKS)
    assert {d["_id"] for d in stored} == {f"{c}|{unique_name}|1" for c in ALL_CHECKS}
    db[Collections.HEALTH_CHECKS].delete_many({"dag_run_id": unique_name})


def test_broker_down_fails_the_broker_checks_naming_the_broker(
    live_stack: Settings, probes: ModuleType, admin: AdminClient, db: Database, unique_name: str
) -> None:
    broker2 = f"{live_stack.kafka.host}:{live_stack.kafka.broker2_port}"
    stack.kill_program(live_stack, "kafka-broker2")
    try:

        def run(check: str) -> dict[str, Any]:
            return probes.run_and_record(
                check, live_stack, admin=admin, db=db, run_id=unique_name, try_number=1
            )

        # The controller drops the broker from the metadata once its session times out.
        brokers = _run_until(lambda: run(CHECK_BROKERS), lambda d: not d["ok"], timeout_s=45)
        partitions = _run_until(lambda: run(CHECK_PARTITIONS), lambda d: not d["ok"], 30)
    finally:
        stack.start_program(live_stack, "kafka-broker2")
    assert brokers["ok"] is False
    assert broker2 in brokers["detail"], brokers["detail"]
    assert brokers["measured"]["missing"] == [broker2]
    assert partitions["ok"] is False
    assert "under-replicated" in partitions["detail"] and "isr=" in partitions["detail"]
    stored = db[Collections.HEALTH_CHECKS].find_one({"_id": f"{CHECK_BROKERS}|{unique_name}|1"})
    assert stored is not None and stored["ok"] is False
    db[Collections.HEALTH_CHECKS].delete_many({"dag_run_id": unique_name})


def test_consumer_down_fails_heartbeat_and_lag_checks(
    live_stack: Settings, probes: ModuleType, admin: AdminClient, db: Database, unique_name: str
) -> None:
    stale_after_s = 6.0
    since = datetime(2025, 4, 2, 3, 0, tzinfo=UTC)
    killed_at = time.monotonic()
    # Every member: with one left, it would take over the partitions and keep the lag down.
    members = [m.name for m in live_stack.consumer_members()]
    for name in members:
        stack.kill_program(live_stack, name)
    try:
        # 8 simulated devices x 40 s: a few hundred messages nobody consumes.
        produced = _ingest_devices(live_stack, since, since + timedelta(seconds=40), unique_name)
        # The last heartbeat is at most one heartbeat interval older than the kill.
        time.sleep(max(0.0, stale_after_s + 1 - (time.monotonic() - killed_at)))
        heartbeat = probes.run_and_record(
            CHECK_HEARTBEAT,
            live_stack,
            admin=None,
            db=db,
            run_id=unique_name,
            try_number=1,
            params={"stale_after_s": stale_after_s},
        )
        lag = probes.run_and_record(
            CHECK_LAG,
            live_stack,
            admin=admin,
            db=db,
            run_id=unique_name,
            try_number=1,
            params={"max_lag_per_topic": 100, "topics": ["devices"]},
        )
    finally:
        stack.start_programs(live_stack, members)
    assert produced >= 300
    assert heartbeat["ok"] is False
    assert "s old" in heartbeat["detail"] and "over the 6s limit" in heartbeat["detail"]
    assert heartbeat["measured"]["age_s"] > stale_after_s
    assert heartbeat["measured"]["live_members"] == 0
    assert f"0 of {len(members)} expected consumer members live" in heartbeat["detail"]
    for name in members:
        assert f"consumer {name} " in heartbeat["detail"], heartbeat["detail"]
    assert lag["ok"] is False
    assert lag["measured"]["lag"]["devices"] >= produced
    assert f"devices lag {lag['measured']['lag']['devices']} > 100" in lag["detail"]
    db[Collections.HEALTH_CHECKS].delete_many({"dag_run_id": unique_name})


def test_pipeline_health_dag_run_succeeds_and_records_every_check(
    live_stack: Settings, db: Database, unique_name: str
) -> None:
    _ingest_recent_devices(live_stack, unique_name)
    time.sleep(5)  # let the consumer store and commit them (the lag and freshness checks)
    result = subprocess.run(
        [sys.executable, "-c", _DAG_TEST],
        cwd=REPO_ROOT,
        env=stack.stack_env(live_stack),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run = json.loads(result.stdout.strip().splitlines()[-1])
    assert run["state"].endswith("success"), run
    assert set(run["tasks"]) == set(ALL_CHECKS)
    stored = list(db[Collections.HEALTH_CHECKS].find({"dag_run_id": run["run_id"]}))
    assert sorted(d["check"] for d in stored) == sorted(ALL_CHECKS)
    assert all(d["ok"] for d in stored), [d["detail"] for d in stored if not d["ok"]]
