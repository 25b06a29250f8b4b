"""The DAG files under Airflow itself: they import cleanly without I/O; an ingest run is exact."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest
import requests

from headwater.clients import mongo_client
from headwater.reconcile import count
from headwater.settings import REPO_ROOT, Settings
from headwater.sources import get_source, load_sources
from infra import stack
from producer.simulator import malformed_kind, readings
from tests.integration.landed import count_window

_DAGBAG = """
import json, sys
from airflow.dag_processing.dagbag import DagBag
# Every network call made while the DAG files are parsed (MongoDB, Kafka, HTTP, the metadata DB).
connects = []
def audit(event, args):
    if event in ("socket.connect", "socket.getaddrinfo") and parsing:
        connects.append([event, repr(args[1] if event == "socket.connect" else args[:2])])
parsing = False
sys.addaudithook(audit)
parsing = True
bag = DagBag(dag_folder="dags")
parsing = False
dags = {}
for dag_id, dag in bag.dags.items():
    dags[dag_id] = {
        "owner": dag.owner,
        "tags": sorted(dag.tags),
        "timetable": type(dag.timetable).__name__,
        "retries": [t.retries for t in dag.tasks],
        "params": sorted(dag.params.keys()),
    }
stats = [{"file": s.file, "seconds": s.duration.total_seconds()} for s in bag.dagbag_stats]
print(json.dumps({"errors": bag.import_errors, "dags": dags, "stats": stats, "connects": connects}))
"""

_DAG_TEST = """
import json, sys
from airflow.dag_processing.dagbag import DagBag
dag = DagBag(dag_folder="dags").get_dag(sys.argv[1])
run = dag.test(run_conf={"since": sys.argv[2], "until": sys.argv[3]})
print(json.dumps({"state": str(run.state)}))
"""


def _airflow_python(settings: Settings, code: str, *args: str) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=REPO_ROOT,
        env=stack.stack_env(settings),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


# Triggered by hand only: no schedule, so no data interval that could be zero-width.
MANUAL_ONLY = {"replay_rejected"}
ASSET_SCHEDULED = {"rollup_readings"}


def test_dag_files_import_cleanly_without_io_and_declare_their_contract(
    live_stack: Settings,
) -> None:
    bag = _airflow_python(live_stack, _DAGBAG)
    assert bag["errors"] == {}
    # No I/O at import time (the scheduler re-parses every file every few seconds): parsing them
    # opens no connection to anything. (Checked by audit events, not by timing the parse.)
    assert {s["file"] for s in bag["stats"]} >= {"ingest.py", "archive.py"}
    assert bag["connects"] == []
    expected = {"ingest_" + name.replace("-", "_") for name in load_sources()}
    assert expected <= set(bag["dags"])
    for dag_id, dag in bag["dags"].items():
        assert dag["owner"] == "headwater", dag_id
        assert "headwater" in dag["tags"], dag_id
        assert all(r >= 1 for r in dag["retries"]), dag_id
        if dag_id in MANUAL_ONLY:
            assert dag["timetable"] == "NullTimetable", dag_id
        elif dag_id in ASSET_SCHEDULED:
            # Runs on asset events (readings reconciled, late-data notices), not on a clock.
            assert dag["timetable"] == "AssetTriggeredTimetable", dag_id
        else:
            assert dag["timetable"] in ("DeltaDataIntervalTimetable", "CronDataIntervalTimetable")
    for dag_id in expected:
        assert bag["dags"][dag_id]["params"] == ["since", "until"]


def _stored_readings(settings: Settings, since: datetime, until: datetime) -> int:
    with mongo_client(settings) as client:
        window = {"$gte": since, "$lt": until}
        return count(client[settings.mongo.db], "readings", {"source": "devices", "ts": window})


def test_ingest_dag_run_for_a_past_window_lands_exactly_and_rerun_changes_nothing(
    live_stack: Settings,
) -> None:
    since = datetime(2025, 3, 7, 6, 30, tzinfo=UTC)
    until = since + timedelta(minutes=2)
    n = live_stack.services.simulator_devices
    valid = sum(
        1 for r in readings(since, until, n) if malformed_kind(r["device_id"], r["ts"]) is None
    )
    args = (since.isoformat(), until.isoformat())

    for attempt in (1, 2):
        run = _airflow_python(live_stack, _DAG_TEST, "ingest_devices", *args)
        assert run["state"].endswith("success"), run
        deadline = time.monotonic() + 60
        while _stored_readings(live_stack, since, until) < valid and time.monotonic() < deadline:
            time.sleep(1)
        assert _stored_readings(live_stack, since, until) == valid, f"run {attempt}"


# A fixed past window per file-backed source (the stand-in's data spans 2021-06-22..25 and the
# 2025/26 season); user-events is covered by posting events and pulling their window.
PAST_WINDOWS = {
    "ingest_machine_metrics": (
        "machine-metrics",
        "2021-06-22T06:00:00+00:00",
        "2021-06-22T07:00:00+00:00",
    ),
    "ingest_work_orders": ("work-orders", "2021-06-22T00:00:00+00:00", "2021-06-22T06:00:00+00:00"),
    "ingest_matches": ("matches", "2025-08-16T00:00:00+00:00", "2025-08-18T00:00:00+00:00"),
}


def _landed(settings: Settings, source_name: str, since: datetime, until: datetime) -> tuple:
    with mongo_client(settings) as client:
        return count_window(client[settings.mongo.db], get_source(source_name), since, until)


@pytest.mark.parametrize("dag_id", sorted(PAST_WINDOWS))
def test_each_file_source_dag_run_is_exact_and_rerun_changes_nothing(
    live_stack: Settings, dag_id: str
) -> None:
    source_name, since_text, until_text = PAST_WINDOWS[dag_id]
    since, until = datetime.fromisoformat(since_text), datetime.fromisoformat(until_text)
    landed = []
    for _ in (1, 2):
        # Success includes the reconcile task: pulled == produced == stored + rejected.
        run = _airflow_python(live_stack, _DAG_TEST, dag_id, since_text, until_text)
        assert run["state"].endswith("success"), run
        landed.append(_landed(live_stack, source_name, since, until))
    stored, rejected = landed[0]
    assert stored + rejected > 0
    assert landed[1] == landed[0]


def test_user_events_dag_run_is_exact_and_rerun_changes_nothing(live_stack: Settings) -> None:
    svc = live_stack.services
    since = datetime.now(UTC).replace(microsecond=0)
    for i in range(12):
        resp = requests.post(
            f"http://{svc.host}:{svc.flask_port}/events",
            json={"user_id": f"dagtest-{i % 3}", "event_type": "page_view"},
            headers={"X-API-Key": svc.api_key.get_secret_value()},
            timeout=10,
        )
        assert resp.status_code == 201, resp.text
    until = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
    landed = []
    for _ in (1, 2):
        run = _airflow_python(
            live_stack, _DAG_TEST, "ingest_user_events", since.isoformat(), until.isoformat()
        )
        assert run["state"].endswith("success"), run
        landed.append(_landed(live_stack, "user-events", since, until))
    assert landed[0][0] >= 12
    assert landed[1] == landed[0]
