"""End-to-end latency: simulator reading's event time -> visible in MongoDB, through Airflow.

    python bench/e2e_bench.py [--windows 4] [--window-s 12]

The simulator produces one reading per device per second, in real time. For a few consecutive
short windows, each as soon as it has closed, the bench triggers the `ingest_devices` DAG through
the Airflow REST API with the window as its `since`/`until` params (what a person does with the
trigger form), while a poller reads MongoDB every --poll-s seconds and notes when each valid
reading of those windows first becomes visible. The windows lie inside one minute of the DAG's
own schedule (bench/schedule.py), so its scheduled run of that minute, which pulls the same
readings, starts only after the bench's runs. Per document:

- event -> visible: visible_at - the reading's `ts` (includes waiting for its window to close);
- window end -> visible: visible_at - the window's end (Airflow scheduling + pull + produce +
  consume);
- Kafka -> visible, the consumer's share: visible_at - the Kafka timestamp (produce time) of the
  message that wrote the document (found by the document's ingest topic/partition/offset).
Documents first written by another run (the scheduled `ingest_devices` pulls the same minute) are
counted and left out. visible_at is the end of the first poll that saw the document: an upper
bound, within one poll period (the poll asks only for the documents of closed windows not seen
yet, by _id). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import requests
from confluent_kafka import Consumer, TopicPartition
from measures import latency_summary
from pymongo import MongoClient
from pymongo.errors import PyMongoError
from schedule import windows_in_one_interval

from headwater.clients import kafka_security, mongo_client
from headwater.contracts import Collections
from headwater.settings import Settings, get_settings
from headwater.sources import Source, format_time, get_source, record_key
from infra.airflow import airflow_token
from producer.simulator import malformed_kind, readings

log = logging.getLogger("bench.e2e")

TERMINAL_STATES = frozenset({"success", "failed"})


def ingest_dag_id(source: Source) -> str:
    """The ingest DAG of a source (dags/ingest.py names them so)."""
    return "ingest_" + source.name.replace("-", "_")


def expected_ids(source: Source, since: datetime, until: datetime, devices: int) -> set[str]:
    """_ids of the readings of [since, until) that the consumer stores (valid ones only)."""
    return {
        record_key(source, r)
        for r in readings(since, until, devices)
        if malformed_kind(r["device_id"], r["ts"]) is None
    }


@dataclass
class Sighting:
    """When a document was first seen, and which message had written it."""

    visible_at: float
    ts: datetime
    run_id: str | None
    topic: str
    partition: int
    offset: int


@dataclass
class Poller:
    """Polls MongoDB for the readings of closed windows and notes each one's first sighting.

    Only documents not seen yet are asked for (by _id), so a poll gets cheaper as windows land.
    """

    client: MongoClient
    db_name: str
    windows: dict[tuple[datetime, datetime], set[str]]  # (since, until) -> expected _ids
    interval_s: float
    seen: dict[str, Sighting] = field(default_factory=dict)
    polls: int = 0
    poll_seconds: float = 0.0
    errors: int = 0
    complete: threading.Event = field(default_factory=threading.Event)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="e2e-poller", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)

    def _pending(self, now: datetime) -> list[str]:
        return [
            doc_id
            for (_, until), ids in self.windows.items()
            if until <= now
            for doc_id in ids
            if doc_id not in self.seen
        ]

    def _run(self) -> None:
        readings_coll = self.client[self.db_name][Collections.READINGS]
        total = sum(len(ids) for ids in self.windows.values())
        while not self._stop.is_set():
            started = time.time()
            pending = self._pending(datetime.now(UTC))
            docs = []
            if pending:
                try:
                    query = {"_id": {"$in": pending}}
                    docs = list(readings_coll.find(query, {"ts": 1, "ingest": 1}))
                except PyMongoError as exc:  # the poller outlives a blip; counted and reported
                    self.errors += 1
                    log.warning("poll failed: %s", exc)
                now = time.time()
                self.polls += 1
                self.poll_seconds += now - started
            else:
                now = time.time()
            for doc in docs:
                ingest = doc.get("ingest") or {}
                self.seen[doc["_id"]] = Sighting(
                    visible_at=now,
                    ts=doc["ts"],
                    run_id=ingest.get("run_id"),
                    topic=ingest.get("topic", ""),
                    partition=int(ingest.get("partition", -1)),
                    offset=int(ingest.get("offset", -1)),
                )
            if len(self.seen) >= total:
                self.complete.set()
                return
            self._stop.wait(max(0.0, self.interval_s - (now - started)))


def kafka_timestamps(
    settings: Settings, wanted: set[tuple[str, int, int]], timeout_s: float = 60
) -> dict[tuple[str, int, int], float]:
    """Kafka timestamp (epoch seconds) of each (topic, partition, offset) in `wanted`."""
    if not wanted:
        return {}
    first: dict[tuple[str, int], int] = {}
    last: dict[tuple[str, int], int] = {}
    for topic, partition, offset in wanted:
        key = (topic, partition)
        first[key] = min(first.get(key, offset), offset)
        last[key] = max(last.get(key, offset), offset)
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka.bootstrap_servers,
            # A measuring tool, not the pipeline: the admin principal reads any topic.
            **kafka_security(settings, "admin"),
            "group.id": f"bench-e2e-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    found: dict[tuple[str, int, int], float] = {}
    try:
        consumer.assign([TopicPartition(t, p, o) for (t, p), o in first.items()])
        done: set[tuple[str, int]] = set()
        deadline = time.monotonic() + timeout_s
        while len(done) < len(first) and time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=1000, timeout=1.0):
                if msg.error():
                    continue
                where = (msg.topic(), msg.partition(), msg.offset())
                if where in wanted:
                    found[where] = msg.timestamp()[1] / 1000
                if msg.offset() >= last[(msg.topic(), msg.partition())]:
                    done.add((msg.topic(), msg.partition()))
    finally:
        consumer.close()
    return found


class AirflowApi:
    """The few REST calls the bench makes (token from the settings login)."""

    def __init__(self, settings: Settings) -> None:
        self.base = f"{settings.airflow.base_url}/api/v2"
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {airflow_token(settings)}"

    def dag(self, dag_id: str) -> dict[str, Any]:
        resp = self.session.get(f"{self.base}/dags/{dag_id}", timeout=30)
        resp.raise_for_status()
        return dict(resp.json())

    def trigger(self, dag_id: str, run_id: str, conf: dict[str, Any], attempts: int = 3) -> int:
        """Create a manual run; returns the attempts it took.

        A timed-out POST may still have created the run (the API server waits on the metadata
        DB's writer lock), so a retry that answers 409 for our own run id is a success.
        """
        body = {"dag_run_id": run_id, "logical_date": None, "conf": conf}
        url = f"{self.base}/dags/{dag_id}/dagRuns"
        for attempt in range(1, attempts + 1):
            try:
                resp = self.session.post(url, json=body, timeout=60)
            except requests.Timeout as exc:
                problem = f"timeout: {exc}"
            else:
                if resp.status_code < 300 or (attempt > 1 and resp.status_code == 409):
                    return attempt
                problem = f"HTTP {resp.status_code}: {resp.text[:300]}"
                if resp.status_code < 500:
                    break
            log.warning(
                "trigger retry dag_id=%s run_id=%s attempt=%d %s", dag_id, run_id, attempt, problem
            )
        raise RuntimeError(f"could not trigger {dag_id} run {run_id}: {problem}")

    def run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        resp = self.session.get(f"{self.base}/dags/{dag_id}/dagRuns/{run_id}", timeout=30)
        resp.raise_for_status()
        return dict(resp.json())


def _parse_api_time(value: str | None) -> float | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def measure(
    settings: Settings,
    windows: int = 4,
    window_s: int = 12,
    poll_s: float = 0.25,
    settle_timeout_s: float = 90.0,
) -> dict[str, Any]:
    """Run the end-to-end bench on the running stack; the result as a JSON-ready dict."""
    source = get_source("devices")
    dag_id = ingest_dag_id(source)
    devices = settings.services.simulator_devices
    api = AirflowApi(settings)
    if api.dag(dag_id).get("is_paused"):
        raise RuntimeError(f"DAG {dag_id} is paused: its runs would wait (make up unpauses it)")
    bounds = [
        (datetime.fromtimestamp(a, UTC), datetime.fromtimestamp(b, UTC))
        for a, b in windows_in_one_interval(time.time(), window_s, windows, source.interval_s)
    ]
    log.info(
        "e2e windows %s .. %s (%d x %ds inside one %ds interval of the scheduled ingest)",
        bounds[0][0].isoformat(),
        bounds[-1][1].isoformat(),
        windows,
        window_s,
        source.interval_s,
    )
    expected = {w: expected_ids(source, *w, devices) for w in bounds}
    window_of = {doc_id: w for w, ids in expected.items() for doc_id in ids}
    tag = uuid.uuid4().hex[:6]
    triggered: list[dict[str, Any]] = []
    with mongo_client(settings) as client:
        poller = Poller(client, settings.mongo.db, expected, poll_s)
        poller.start()
        try:
            for k, (since, until) in enumerate(bounds):
                # The window is pulled once it has closed, as a scheduled run would.
                time.sleep(max(0.0, until.timestamp() - time.time()))
                run_id = f"bench_e2e_{tag}_{k}"
                conf = {
                    "since": format_time(since, "iso8601"),
                    "until": format_time(until, "iso8601"),
                }
                asked = time.time()
                attempts = api.trigger(dag_id, run_id, conf)
                triggered.append(
                    {
                        "run_id": run_id,
                        "triggered_at": asked,
                        "trigger_call_s": round(time.time() - asked, 2),
                        "trigger_attempts": attempts,
                        **conf,
                    }
                )
                log.info("e2e triggered run_id=%s since=%s until=%s", run_id, *conf.values())
            poller.complete.wait(settle_timeout_s)
        finally:
            poller.stop()
    missing = sorted(set(window_of) - set(poller.seen))
    log.info(
        "e2e visible=%d expected=%d missing=%d", len(poller.seen), len(window_of), len(missing)
    )

    ours = {t["run_id"] for t in triggered}
    measured = {i: s for i, s in poller.seen.items() if i in window_of and s.run_id in ours}
    other = sorted({s.run_id or "" for s in poller.seen.values() if s.run_id not in ours})
    stamps = kafka_timestamps(
        settings, {(s.topic, s.partition, s.offset) for s in measured.values()}
    )
    event_lat, window_lat, kafka_lat = [], [], []
    for doc_id, seen in measured.items():
        event_lat.append(seen.visible_at - seen.ts.timestamp())
        window_lat.append(seen.visible_at - window_of[doc_id][1].timestamp())
        stamp = stamps.get((seen.topic, seen.partition, seen.offset))
        if stamp is not None:
            kafka_lat.append(seen.visible_at - stamp)

    if not measured:
        states = [(t["run_id"], api.run(dag_id, t["run_id"]).get("state")) for t in triggered]
        raise RuntimeError(
            f"no document of the {len(triggered)} triggered windows became visible in "
            f"{settle_timeout_s:.0f}s; runs: {states} (see the DAG runs' task logs)"
        )
    runs = _run_details(api, dag_id, triggered, timeout_s=60 if missing else 120)
    return {
        "dag_id": dag_id,
        "devices": devices,
        "window_s": window_s,
        "windows": runs,
        "poll_interval_s": poll_s,
        "mean_poll_s": round(poller.poll_seconds / max(poller.polls, 1), 3),
        "poll_errors": poller.errors,
        "docs_expected": len(window_of),
        "docs_measured": len(measured),
        "docs_first_written_by_other_runs": len(poller.seen) - len(measured),
        "other_run_ids": other[:5],
        "docs_missing": len(missing),
        "kafka_timestamps_found": len(kafka_lat),
        "event_to_visible": latency_summary(event_lat),
        "window_end_to_visible": latency_summary(window_lat),
        "kafka_to_visible": latency_summary(kafka_lat),
    }


def _run_details(
    api: AirflowApi, dag_id: str, triggered: list[dict[str, Any]], timeout_s: float = 120
) -> list[dict[str, Any]]:
    """Each triggered run's state and timings (waiting, bounded, for them to finish)."""
    deadline = time.time() + timeout_s
    details = []
    for item in triggered:
        run = api.run(dag_id, item["run_id"])
        while run.get("state") not in TERMINAL_STATES and time.time() < deadline:
            time.sleep(2)
            run = api.run(dag_id, item["run_id"])
        queued = _parse_api_time(run.get("queued_at"))
        start = _parse_api_time(run.get("start_date"))
        end = _parse_api_time(run.get("end_date"))
        details.append(
            {
                "run_id": item["run_id"],
                "since": item["since"],
                "until": item["until"],
                "state": run.get("state"),
                "trigger_call_s": item["trigger_call_s"],
                "trigger_attempts": item["trigger_attempts"],
                "trigger_to_start_s": round(start - item["triggered_at"], 2) if start else None,
                "queued_to_start_s": round(start - queued, 2) if start and queued else None,
                "run_s": round(end - start, 2) if start and end else None,
            }
        )
    return details


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--windows", type=int, default=4)
    parser.add_argument("--window-s", type=int, default=12)
    parser.add_argument("--poll-s", type=float, default=0.25)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    result = measure(get_settings(), args.windows, args.window_s, args.poll_s)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
