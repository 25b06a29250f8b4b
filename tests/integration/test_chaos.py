"""Chaos: services die while a steady stream flows through the whole pipeline; nothing is lost,
nothing is doubled, and the pipeline_health DAG reports the fault while it lasts.

The stream is the devices source in real time: every second, the simulator window since the last
one is pulled from the external-API stand-in and produced to Kafka with `ingest_window` (what the
ingest DAG's task runs), retried until it lands, as an Airflow retry would. The consumer stores it.
Each scenario starts a real `pipeline_health` run (`dag.test()`, sensors poking every
HEADWATER_HEALTH_POKE_INTERVAL_S) when the fault starts and lets it finish after recovery: it must
end green and its `health_checks` documents must show the failure it saw.

Run alone with `pytest -m chaos tests/integration`.
"""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from pymongo.database import Database
from pymongo.errors import PyMongoError

from headwater.clients import mongo_client
from headwater.contracts import Collections
from headwater.health_checks import CHECK_BROKERS, CHECK_HEALTHZ
from headwater.kafka_admin import admin_client, group_offsets
from headwater.reconcile import count
from headwater.settings import REPO_ROOT, Settings
from headwater.sources import get_source, record_key
from infra import stack, supervisor
from infra.airflow import airflow_token
from producer.service import ingest_window
from producer.simulator import malformed_kind, readings
from tests.integration.landed import count_window

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(900)]
log = logging.getLogger(__name__)

DEVICES = get_source("devices")
USER_EVENTS = get_source("user-events")

_HEALTH_RUN = """
import json
from airflow.dag_processing.dagbag import DagBag
dag = DagBag(dag_folder="dags").dags["pipeline_health"]
run = dag.test()
states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
print("HEALTH_RUN " + json.dumps({"state": str(run.state), "run_id": run.run_id, "tasks": states}))
"""


@pytest.fixture
def db(live_stack: Settings) -> Iterator[Database]:
    # pymongo's default 30 s of server selection: reads right after a MongoDB restart wait for it.
    with mongo_client(live_stack, 30_000) as client:
        yield client[live_stack.mongo.db]


# --- the steady stream -----------------------------------------------------------------------


@dataclass
class Stream:
    """Real-time devices windows, one per second, each retried until it lands."""

    settings: Settings
    started: datetime = field(default_factory=lambda: datetime.now(UTC).replace(microsecond=0))
    landed_until: datetime | None = None
    windows: int = 0
    failed_attempts: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __post_init__(self) -> None:
        self.landed_until = self.started
        self._thread = threading.Thread(target=self._run, name="chaos-stream", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            since = self.landed_until
            assert since is not None
            until = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
            if until <= since:
                self._stop.wait(0.5)
                continue
            try:
                ingest_window(
                    DEVICES, since, until, self.settings, run_id=f"chaos-stream-{self.windows}"
                )
            except Exception as exc:  # noqa: BLE001 - a failed window is retried, like a task
                self.failed_attempts += 1
                log.warning("stream window %s..%s failed (will retry): %s", since, until, exc)
                self._stop.wait(1.0)
                continue
            self.landed_until = until
            self.windows += 1
            self._stop.wait(1.0)

    def covered(self) -> timedelta:
        """How much of real time has landed so far."""
        assert self.landed_until is not None
        return self.landed_until - self.started

    def stop(self) -> tuple[datetime, datetime]:
        """Stop after the window in flight; returns the range [started, landed_until) offered."""
        self._stop.set()
        assert self._thread is not None
        self._thread.join(timeout=120)
        assert not self._thread.is_alive(), "stream did not stop"
        assert self.landed_until is not None
        return self.started, self.landed_until


def expected_devices(settings: Settings, since: datetime, until: datetime) -> tuple[int, set[str]]:
    """(valid readings, keys of the malformed ones) the simulator offers in [since, until)."""
    valid, invalid = 0, set()
    for record in readings(since, until, settings.services.simulator_devices):
        if malformed_kind(record["device_id"], record["ts"]) is None:
            valid += 1
        else:
            invalid.add(record_key(DEVICES, record))
    return valid, invalid


def devices_landed(db: Database, since: datetime, until: datetime) -> tuple[int, set[str]]:
    """(stored readings, rejected keys) for devices records of [since, until)."""
    stored, _ = count_window(db, DEVICES, since, until)
    rejected = {
        str(doc.get("key"))
        for doc in db[Collections.REJECTED].find(
            {"topic": DEVICES.topic, "rejected_at": {"$gte": since}},
            {"key": 1},
        )
    }
    return stored, rejected


def assert_stream_exact(settings: Settings, db: Database, stream: Stream) -> int:
    """Every offered record is stored exactly once (or quarantined once); returns the count."""
    since, until = stream.stop()
    assert until - since >= timedelta(seconds=20), (since, until)
    valid, invalid = expected_devices(settings, since, until)
    deadline = time.monotonic() + 180
    stored, rejected = -1, set()
    while True:
        try:
            stored, rejected = devices_landed(db, since, until)
        except PyMongoError as exc:  # a pooled connection from before a MongoDB restart
            log.info("counting again after %s", exc)
        if (stored == valid and invalid <= rejected) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert stored == valid, f"stored {stored} of {valid} readings in {since}..{until}"
    assert invalid <= rejected, f"malformed keys not quarantined: {sorted(invalid - rejected)[:5]}"
    # Quiet for a moment longer: nothing else arrives (no late duplicates of any kind).
    time.sleep(3)
    assert devices_landed(db, since, until)[0] == valid
    return valid


# --- the health DAG --------------------------------------------------------------------------


class HealthRun:
    """A real pipeline_health run (`dag.test()` in a subprocess), started when a fault starts."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        self.started = datetime.now(UTC)
        self.log_path = log_path
        self._log = log_path.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _HEALTH_RUN],
            cwd=REPO_ROOT,
            env=stack.stack_env(settings),
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def output(self) -> str:
        return self.log_path.read_text()

    def finish(self, timeout_s: float = 300) -> tuple[dict[str, Any], str]:
        """Wait for the run to end (sensors time out after 3 minutes); (summary, output)."""
        try:
            self.proc.wait(timeout=timeout_s)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(timeout=30)
            self._log.close()
        output = self.log_path.read_text()
        lines = [line for line in output.splitlines() if line.startswith("HEALTH_RUN ")]
        assert self.proc.returncode == 0 and lines, output[-4000:]
        return json.loads(lines[-1].removeprefix("HEALTH_RUN ")), output


def health_doc(db: Database, check: str, run_id: str) -> dict[str, Any]:
    docs = list(db[Collections.HEALTH_CHECKS].find({"check": check, "dag_run_id": run_id}))
    assert docs, f"no {check} result recorded for {run_id}"
    return max(docs, key=lambda d: d["_id"])


def assert_reported(
    db: Database, summary: dict[str, Any], check: str, *needles: str
) -> dict[str, Any]:
    """The run ended green after recovery, and `check` recorded the fault with `needles`."""
    assert summary["state"].endswith("success"), summary
    doc = health_doc(db, check, summary["run_id"])
    assert doc["ok"] is True, doc
    assert doc["failures"] >= 1, f"{check} never saw the fault: {doc}"
    for needle in needles:
        assert needle in doc["last_failure"]["detail"], doc["last_failure"]
    return doc


def recorded_failure(db: Database, check: str, since: datetime, needle: str) -> bool:
    """A health run started at `since` has recorded `check` failing with `needle` in it."""
    doc = db[Collections.HEALTH_CHECKS].find_one(
        {
            "check": check,
            "failures": {"$gte": 1},
            "checked_at": {"$gte": since},
        },
        sort=[("checked_at", -1)],
    )
    return doc is not None and needle in doc["last_failure"]["detail"]


def hold_fault(min_s: float, reported: Callable[[], bool], timeout_s: float = 180) -> float:
    """Keep the fault for at least `min_s` and until the health run has reported it; returns how
    long it lasted. (A run's first poke comes ~20 s after its start on a loaded 2-core box.)"""
    started = time.monotonic()
    time.sleep(min_s)
    while not reported():
        lasted = time.monotonic() - started
        assert lasted < timeout_s, f"the health run did not report the fault in {lasted:.0f}s"
        time.sleep(1)
    return time.monotonic() - started


def warm_up(stream: Stream, seconds: float = 10) -> None:
    """Let the stream flow (and the consumer keep up) before the fault."""
    time.sleep(seconds)
    assert stream.windows >= 3, f"stream not flowing: {stream.windows} windows"


# --- scenarios -------------------------------------------------------------------------------


def test_broker_sigkilled_and_restarted_20s_later(
    live_stack: Settings, db: Database, tmp_path: Path
) -> None:
    stream = Stream(live_stack)
    warm_up(stream)
    broker2 = f"{live_stack.kafka.host}:{live_stack.kafka.broker2_port}"
    stack.kill_program(live_stack, "kafka-broker2")
    health = HealthRun(live_stack, tmp_path / "health.log")
    try:
        hold_fault(20, lambda: recorded_failure(db, CHECK_BROKERS, health.started, broker2))
    finally:
        stack.start_program(live_stack, "kafka-broker2")
    time.sleep(5)
    offered = assert_stream_exact(live_stack, db, stream)
    summary, _ = health.finish()
    assert_reported(db, summary, CHECK_BROKERS, broker2)
    log.info("broker chaos: %d readings exact, %d failed attempts", offered, stream.failed_attempts)


def test_every_consumer_member_sigkilled_and_restarted(
    live_stack: Settings, db: Database, tmp_path: Path
) -> None:
    # The whole group at once: nothing consumes until they are back (one member lost, the
    # others take over: test_consumer_group.py).
    stream = Stream(live_stack)
    warm_up(stream)
    members = live_stack.consumer_members()
    for member in members:
        stack.kill_program(live_stack, member.name)
    health = HealthRun(live_stack, tmp_path / "health.log")
    down = [f"{m.name} {m.url}/healthz did not answer" for m in members]
    try:
        hold_fault(
            15, lambda: all(recorded_failure(db, CHECK_HEALTHZ, health.started, d) for d in down)
        )
    finally:
        stack.start_programs(live_stack, [m.name for m in members])
    time.sleep(5)
    assert_stream_exact(live_stack, db, stream)
    summary, _ = health.finish()
    assert_reported(db, summary, CHECK_HEALTHZ, *down)


def test_mongodb_stopped_for_15s(live_stack: Settings, db: Database, tmp_path: Path) -> None:
    stream = Stream(live_stack)
    warm_up(stream)
    rpc = supervisor.rpc(live_stack, timeout_s=120)
    rpc.supervisor.stopProcess("mongo", True)
    health = HealthRun(live_stack, tmp_path / "health.log")

    def logged_failing() -> bool:
        # MongoDB is the fault, so the run cannot store the result there: its log has it.
        return any(
            f"health check={CHECK_HEALTHZ} ok=False" in line and "MongoDB unavailable" in line
            for line in health.output().splitlines()
        )

    try:
        hold_fault(15, logged_failing)
    finally:
        stack.start_program(live_stack, "mongo")
    assert_stream_exact(live_stack, db, stream)
    summary, output = health.finish()
    assert summary["state"].endswith("success"), summary
    # The failing poke's result is either logged as not recorded (MongoDB still down when its
    # bounded write gave up) or recorded once MongoDB was back within that bound: either way the
    # fault it saw is kept, never silently lost.
    not_recorded = f"health check={CHECK_HEALTHZ} run_id={summary['run_id']} not recorded" in output
    stored = db[Collections.HEALTH_CHECKS].find_one(
        {"check": CHECK_HEALTHZ, "dag_run_id": summary["run_id"]}
    )
    recorded_failure = (
        stored is not None
        and stored["failures"] >= 1
        and "MongoDB unavailable" in stored["last_failure"]["detail"]
    )
    assert not_recorded or recorded_failure, (stored, output[-2000:])


def _post_burst(settings: Settings, user_prefix: str, n: int) -> set[str]:
    """POST n events concurrently; returns the event ids the API acknowledged with 201."""
    url = f"http://{settings.services.host}:{settings.services.flask_port}/events"
    headers = {"X-API-Key": settings.services.api_key.get_secret_value()}

    def post(i: int) -> str | None:
        body = {"user_id": f"{user_prefix}-{i % 7}", "event_type": "page.view", "properties": {}}
        resp = requests.post(url, json=body, headers=headers, timeout=30)
        return str(resp.json()["event"]["event_id"]) if resp.status_code == 201 else None

    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = list(pool.map(post, range(n)))
    assert None not in ids, "every event of the burst should be accepted"
    return {i for i in ids if i}


def test_flask_api_sigkilled_right_after_a_burst_of_201s(
    live_stack: Settings, db: Database, tmp_path: Path
) -> None:
    stream = Stream(live_stack)
    warm_up(stream)
    prefix = f"chaos-{random.randrange(10**9)}"
    burst_since = datetime.now(UTC) - timedelta(seconds=1)
    accepted = _post_burst(live_stack, prefix, 300)
    stack.kill_program(live_stack, "events-api")
    health = HealthRun(live_stack, tmp_path / "health.log")
    try:
        hold_fault(5, lambda: recorded_failure(db, CHECK_HEALTHZ, health.started, "events-api"))
    finally:
        stack.start_program(live_stack, "events-api")
    burst_until = datetime.now(UTC) + timedelta(seconds=1)
    # The ingest DAG's work for the burst's window, twice (a retried or re-run interval).
    for attempt in range(2):
        result = ingest_window(
            USER_EVENTS, burst_since, burst_until, live_stack, run_id=f"{prefix}-{attempt}"
        )
        assert result.produced >= len(accepted)
    deadline = time.monotonic() + 120
    query = {"user_id": {"$regex": f"^{prefix}-"}}
    while time.monotonic() < deadline:
        if count(db, Collections.USER_EVENTS, query) >= len(accepted):
            break
        time.sleep(1)
    stored = [d["event_id"] for d in db[Collections.USER_EVENTS].find(query, {"event_id": 1})]
    assert len(stored) == len(set(stored)) == len(accepted)
    assert set(stored) == accepted
    assert_stream_exact(live_stack, db, stream)
    summary, _ = health.finish()
    assert_reported(db, summary, CHECK_HEALTHZ, "events-api")


# --- an Airflow ingest task killed mid-produce -----------------------------------------------


def _api(settings: Settings) -> tuple[str, dict[str, str]]:
    return settings.airflow.base_url, {"Authorization": f"Bearer {airflow_token(settings)}"}


def _set_paused(settings: Settings, dag_id: str, paused: bool) -> None:
    base, headers = _api(settings)
    resp = requests.patch(
        f"{base}/api/v2/dags/{dag_id}", json={"is_paused": paused}, headers=headers, timeout=10
    )
    assert resp.status_code == 200, resp.text


def _devices_end_offsets(settings: Settings) -> int:
    """Sum of the devices topic's high watermarks: how many messages it has ever received."""
    group = settings.consumer.group or settings.kafka.consumer_group
    return sum(o.high for o in group_offsets(admin_client(settings), group, [DEVICES.topic]))


def _task_process(ti_id: str) -> int | None:
    """PID of the process running task instance `ti_id` (its title names the TI's id)."""
    title = f"airflow worker -- {ti_id}".encode()
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if cmdline.read_bytes().startswith(title):
                return int(cmdline.parent.name)
        except OSError:
            continue
    return None


def test_an_ingest_task_sigkilled_mid_produce_retries_and_lands_exactly(
    live_stack: Settings, db: Database
) -> None:
    dag_id = "ingest_devices"
    # Two past hours: ~57,600 records, several seconds of producing to kill the task in.
    since = datetime(2023, 1, 1, tzinfo=UTC) + timedelta(hours=2 * random.randrange(4000))
    until = since + timedelta(hours=2)
    valid, invalid = expected_devices(live_stack, since, until)
    base, headers = _api(live_stack)
    # Runs other tests left active on the paused DAG would hold its max_active_runs slots.
    for state in ("running", "queued"):
        for run in requests.get(
            f"{base}/api/v2/dags/{dag_id}/dagRuns",
            params={"state": state, "limit": 100},
            headers=headers,
            timeout=10,
        ).json()["dag_runs"]:
            requests.patch(
                f"{base}/api/v2/dags/{dag_id}/dagRuns/{run['dag_run_id']}",
                json={"state": "failed"},
                headers=headers,
                timeout=10,
            )
    stream = Stream(live_stack)
    _set_paused(live_stack, dag_id, False)
    try:
        offsets_before = _devices_end_offsets(live_stack)
        run_id = f"chaos-{since:%Y%m%dT%H}"
        resp = requests.post(
            f"{base}/api/v2/dags/{dag_id}/dagRuns",
            json={
                "dag_run_id": run_id,
                "logical_date": None,
                "conf": {"since": since.isoformat(), "until": until.isoformat()},
            },
            headers=headers,
            timeout=10,
        )
        assert resp.status_code == 200, resp.text
        ti_url = f"{base}/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/pull_and_produce"
        killed = None
        deadline = time.monotonic() + 180
        while killed is None and time.monotonic() < deadline:
            ti = requests.get(ti_url, headers=headers, timeout=10).json()
            pid = _task_process(ti["id"]) if ti.get("state") == "running" else None
            # Mid-produce: part of the window is in Kafka (the stream adds ~8 records/s).
            if pid and _devices_end_offsets(live_stack) - offsets_before > 2000:
                os.kill(pid, signal.SIGKILL)
                killed = pid
            time.sleep(0.2)
        assert killed, f"never caught the task mid-produce: {ti}"
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            run = requests.get(
                f"{base}/api/v2/dags/{dag_id}/dagRuns/{run_id}", headers=headers, timeout=10
            ).json()
            if run["state"] in ("success", "failed"):
                break
            time.sleep(3)
        assert run["state"] == "success", run
        tries = requests.get(f"{ti_url}/tries", headers=headers, timeout=10).json()
        states = [
            t["state"] for t in sorted(tries["task_instances"], key=lambda t: t["try_number"])
        ]
        assert states[0] != "success" and states[-1] == "success", states
    finally:
        _set_paused(live_stack, dag_id, True)
    stored, rejected = count_window(db, DEVICES, since, until)
    assert (stored, rejected) == (valid, len(invalid))
    assert_stream_exact(live_stack, db, stream)
