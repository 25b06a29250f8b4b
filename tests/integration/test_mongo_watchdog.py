"""A MongoDB server that lives but does not answer: reported within its bound, restarted by the
stack's watchdog, and the consumer lands a stream produced across the outage exactly."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from types import ModuleType

import pytest

from headwater.clients import mongo_client
from headwater.health_checks import CHECK_MONGO
from headwater.settings import Settings
from infra import stack, supervisor
from infra.health import check_mongo
from tests.integration.test_consumer_chaos import device_records, expected_split, quick_total
from tests.integration.test_consumer_support import (
    ConsumerProcess,
    counts,
    db_name,
    heartbeat,
    kafka_topics,
    mongo_database,
    offsets_committed_to_the_end,
    produce_records,
    require_kafka_and_mongo,
    running_consumers,
    wait_for,
)

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(900)]

CHUNK_SECONDS = 25  # 8 simulated devices x 25 s = 200 records a chunk, one chunk a second
CHUNKS = 60
# The last chunks wait until the server is back, so the stream spans the whole outage.
AFTER_RECOVERY = 15


def watchdog_log(settings: Settings) -> str:
    path = settings.stack.log_dir / "mongo-watchdog.log"
    return path.read_text(errors="replace") if path.exists() else ""


class SteadyStream:
    """CHUNKS chunks of device readings, one a second, each acknowledged before the next."""

    def __init__(self, settings: Settings, topic: str, recovered: threading.Event) -> None:
        self.chunks = [device_records(i * CHUNK_SECONDS, CHUNK_SECONDS) for i in range(CHUNKS)]
        self.acked = 0
        self.error: BaseException | None = None
        self._settings, self._topic, self._recovered = settings, topic, recovered
        self._thread = threading.Thread(target=self._run, name="watchdog-stream", daemon=True)
        self._thread.start()

    @property
    def records(self) -> list[dict]:
        return [r for chunk in self.chunks for r in chunk]

    def _run(self) -> None:
        try:
            for i, chunk in enumerate(self.chunks):
                if i == CHUNKS - AFTER_RECOVERY:
                    self._recovered.wait(300)
                produce_records(self._settings, "devices", self._topic, chunk, run_id=f"c{i}")
                self.acked += len(chunk)
                time.sleep(1)
        except BaseException as exc:  # noqa: BLE001 - reported by join()
            self.error = exc

    def join(self, timeout_s: float) -> int:
        self._thread.join(timeout_s)
        assert not self._thread.is_alive(), f"stream still producing after {timeout_s:.0f}s"
        assert self.error is None, f"stream failed: {self.error!r}"
        return self.acked


def test_sigstopped_mongo_is_restarted_by_the_watchdog_and_the_stream_lands_exactly(
    settings: Settings, probes: ModuleType, unique_name: str, tmp_path: Path
) -> None:
    if not settings.mongo.embedded:
        pytest.fail("this test stops the stack's own MongoDB; MONGO_URI points elsewhere")
    live = require_kafka_and_mongo(settings)
    m = live.mongo
    rpc = supervisor.rpc(live, timeout_s=30)
    assert rpc.supervisor.getProcessInfo("mongo-watchdog")["statename"] == "RUNNING"
    pid = stack.program_pid(live, "mongo")
    # The watchdog has seen this PID answer: its start-up grace no longer applies.
    wait_for(
        lambda: f"answering program=mongo pid={pid}" in watchdog_log(live),
        m.watchdog_interval_s * 4 + 30,
        f"the watchdog to see mongo pid {pid} answer",
    )
    topic = f"{unique_name}-dev"
    recovered = threading.Event()
    stopped: int | None = None
    with (
        kafka_topics(live, [topic]),
        mongo_database(live, db_name(unique_name)) as db,
    ):
        consumer = ConsumerProcess(
            live, {topic: "devices"}, unique_name, db.name, tmp_path / "consumer.log"
        )
        with running_consumers(consumer):
            stream = SteadyStream(live, topic, recovered)
            try:
                wait_for(lambda: quick_total(db) >= 1000, 180, "1,000 documents before the stop")
                probe_client = mongo_client(m.uri, 2000)
                probe_client.admin.command("ping")
                os.kill(pid, signal.SIGSTOP)
                stopped, stopped_at = pid, time.monotonic()

                # make status: the hung server is unhealthy within its ping bound.
                started = time.monotonic()
                status_check = check_mongo(live)
                status_s = time.monotonic() - started
                # pipeline_health's mongo_ping: a failed check, and the poke does not hang.
                started = time.monotonic()
                health = probes.run_and_record(
                    CHECK_MONGO,
                    live,
                    admin=None,
                    db=probe_client[db.name],
                    run_id=unique_name,
                    try_number=1,
                )
                health_s = time.monotonic() - started
                probe_client.close()

                # Within failures x (interval + timeout) the watchdog SIGKILLs it; supervisord
                # restarts it on a new PID that answers ping.
                kill_bound_s = m.watchdog_failures * (m.watchdog_interval_s + m.ping_timeout_s)
                wait_for(
                    lambda: not stack.alive(pid),
                    kill_bound_s + 30,
                    f"the watchdog to kill the stopped server (pid {pid})",
                )
                killed_s = time.monotonic() - stopped_at
                stopped = None
                new_pid = wait_for(
                    lambda: (p := stack.program_pid(live, "mongo")) != pid and p > 0 and p,
                    60,
                    "supervisord to restart mongo",
                )
                wait_for(lambda: check_mongo(live).ok, 120, f"mongo pid {new_pid} to answer ping")
                back_s = time.monotonic() - stopped_at
                wait_for(
                    lambda: f"answering program=mongo pid={new_pid}" in watchdog_log(live),
                    m.watchdog_interval_s * 4 + 30,
                    f"the watchdog to watch the new pid {new_pid}",
                )
            finally:
                if stopped is not None and stack.alive(stopped):
                    os.kill(stopped, signal.SIGCONT)  # the test ends early: let the server run
                recovered.set()
            offered = stream.join(300)

            wait_for(lambda: quick_total(db) >= offered, 300, f"all {offered} records")
            wait_for(
                lambda: offsets_committed_to_the_end(live, unique_name, [topic]),
                60,
                "offsets committed to the end",
            )
            wait_for(
                lambda: (hb := heartbeat(db, unique_name, "member-1")) and hb["store_ok"],
                30,
                "a healthy heartbeat after the restart",
            )
            assert consumer.alive(), "the consumer must resume by itself, not be restarted"

        assert status_check.ok is False, status_check
        assert status_s < m.ping_timeout_s + 2, f"make status took {status_s:.1f}s"
        assert health["ok"] is False and health.get("recorded") is False, health
        assert f"did not answer ping within {m.ping_timeout_s:g}s" in health["detail"]
        assert health_s < m.ping_timeout_s + probes.RECORD_TIMEOUT_S + 5, f"poke {health_s:.1f}s"
        log = watchdog_log(live)
        assert f"killed program=mongo pid={pid} signal=SIGKILL" in log
        records = stream.records
        assert offered == len(records)
        valid, invalid = expected_split(records)
        assert counts(db) == {
            "readings": len(valid),
            "user_events": 0,
            "work_orders": 0,
            "matches": 0,
            "rejected": invalid,
        }
        assert {d["_id"] for d in db.readings.find({}, {"_id": 1})} == valid
        print(
            f"stopped pid {pid}: status FAIL in {status_s:.1f}s, mongo_ping FAIL in "
            f"{health_s:.1f}s, killed after {killed_s:.1f}s, pid {new_pid} answering after "
            f"{back_s:.1f}s; {offered} offered = {len(valid)} stored + {invalid} rejected"
        )
