"""The user-events API under load: accepted POST /events per second and their latency.

    python bench/flask_bench.py [--concurrency 16] [--duration-s 20]

A fixed number of client threads on loopback, each with one keep-alive connection, post single
events as fast as the API answers for the duration. Only 201s count as accepted; anything else
(status or exception) is counted by kind. The events belong to `loadtest-*` users, whom the
consumer's filters keep out of `user_events`. To keep them out of the pipeline altogether, the
load is started early enough in an interval of the `ingest_user_events` DAG that it ends, and its
events are deleted from the events database again, before that interval is pulled.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import resource
import sqlite3
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
from measures import latency_summary, rate

from headwater.settings import Settings, get_settings
from infra.airflow import airflow_token
from producer.events.ids import first_id_at
from producer.events.store import EventStore

log = logging.getLogger("bench.flask")

USER_PREFIX = "loadtest-"
EVENT_TYPE = "bench.load"
USER_EVENTS_DAG = "ingest_user_events"
# Time kept free after the load, before the next user-events pull, for the cleanup.
CLEANUP_MARGIN_S = 20.0


@dataclass
class WorkerTally:
    """What one client thread saw."""

    latencies_201: list[float] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)


def post_events(
    host: str, port: int, api_key: str, worker: int, deadline: float, tally: WorkerTally
) -> None:
    """Post events on one keep-alive connection until `deadline` (time.perf_counter)."""
    headers = {"Content-Type": "application/json", "X-API-Key": api_key}
    conn = http.client.HTTPConnection(host, port, timeout=30)
    seq = 0
    try:
        while time.perf_counter() < deadline:
            seq += 1
            body = json.dumps(
                {
                    "user_id": f"{USER_PREFIX}{worker:02d}",
                    "event_type": EVENT_TYPE,
                    "properties": {"worker": worker, "seq": seq},
                }
            )
            started = time.perf_counter()
            try:
                conn.request("POST", "/events", body, headers)
                resp = conn.getresponse()
                resp.read()
            except (OSError, http.client.HTTPException) as exc:
                tally.outcomes[type(exc).__name__] += 1
                conn.close()
                conn = http.client.HTTPConnection(host, port, timeout=30)
                continue
            elapsed = time.perf_counter() - started
            tally.outcomes[str(resp.status)] += 1
            if resp.status == 201:
                tally.latencies_201.append(elapsed)
            if resp.getheader("Connection", "").lower() == "close":
                conn.close()
                conn = http.client.HTTPConnection(host, port, timeout=30)
    finally:
        conn.close()


def next_user_events_pull(settings: Settings) -> float | None:
    """Epoch seconds when the next scheduled user-events pull may start (None if unknown)."""
    try:
        resp = requests.get(
            f"{settings.airflow.base_url}/api/v2/dags/{USER_EVENTS_DAG}",
            headers={"Authorization": f"Bearer {airflow_token(settings)}"},
            timeout=30,
        )
        resp.raise_for_status()
    except (OSError, requests.RequestException) as exc:
        log.warning("next user-events pull unknown: %s", exc)
        return None
    body = resp.json()
    if body.get("is_paused"):
        return None
    after = body.get("next_dagrun_run_after") or body.get("next_dagrun_data_interval_end")
    return datetime.fromisoformat(after.replace("Z", "+00:00")).timestamp() if after else None


def wait_for_room(settings: Settings, needed_s: float) -> float | None:
    """Sleep past the next user-events pull when it would come before `needed_s` have passed."""
    pull_at = next_user_events_pull(settings)
    if pull_at is not None and pull_at - time.time() < needed_s:
        wait = max(0.0, pull_at - time.time()) + 5
        log.info("waiting %.0fs for the user-events pull at %s to pass", wait, pull_at)
        time.sleep(wait)
        pull_at = next_user_events_pull(settings)
    return pull_at


def delete_load_events(database: Path, since_ms: int) -> int:
    """Delete the loadtest events received since `since_ms` from the events database."""
    store = EventStore(database)
    # The API's own write lock: this delete queues behind its writers instead of racing them.
    with store.write_lock.hold():
        conn = sqlite3.connect(database, timeout=30, isolation_level=None)
        try:
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("BEGIN IMMEDIATE")
            cursor = conn.execute(
                "DELETE FROM events WHERE event_id >= ? AND user_id LIKE ?",
                (first_id_at(since_ms), USER_PREFIX + "%"),
            )
            conn.commit()
            return cursor.rowcount
        finally:
            conn.close()


def measure(settings: Settings, concurrency: int = 16, duration_s: float = 20.0) -> dict[str, Any]:
    """Run the events API load on the running stack; the result as a JSON-ready dict."""
    svc = settings.services
    pull_at = wait_for_room(settings, duration_s + CLEANUP_MARGIN_S)
    tallies = [WorkerTally() for _ in range(concurrency)]
    since_ms = int(time.time() * 1000) - 1000
    usage_before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    deadline = started + duration_s
    threads = [
        threading.Thread(
            target=post_events,
            args=(svc.host, svc.flask_port, svc.api_key.get_secret_value(), i, deadline, t),
            name=f"load-{i}",
        )
        for i, t in enumerate(tallies)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    usage_after = resource.getrusage(resource.RUSAGE_SELF)
    client_cpu = (usage_after.ru_utime - usage_before.ru_utime) + (
        usage_after.ru_stime - usage_before.ru_stime
    )

    outcomes: Counter[str] = Counter()
    latencies: list[float] = []
    for tally in tallies:
        outcomes.update(tally.outcomes)
        latencies.extend(tally.latencies_201)
    accepted = outcomes.pop("201", 0)
    log.info("flask load done accepted=%d other=%s seconds=%.1f", accepted, dict(outcomes), elapsed)

    database = settings.stack.data_dir / "events" / "events.db"
    cleanup: dict[str, Any] = {"database": str(database)}
    if database.exists():
        cleanup["deleted"] = delete_load_events(database, since_ms)
        cleanup["before_next_pull"] = pull_at is None or time.time() < pull_at
    else:
        cleanup["deleted"] = 0
        cleanup["note"] = "events database not on this machine: loadtest events left in place"
    log.info("flask cleanup %s", cleanup)
    return {
        "url": f"http://{svc.host}:{svc.flask_port}/events",
        "concurrency": concurrency,
        "duration_s": round(elapsed, 2),
        "requests": accepted + sum(outcomes.values()),
        "accepted": accepted,
        "accepted_per_s": round(rate(accepted, elapsed), 1),
        "errors": dict(outcomes),
        "latency_201": latency_summary(latencies),
        # The load generator shares the machine's cores with the server: its own CPU use.
        "client_cpu_cores": round(client_cpu / elapsed, 2),
        "cleanup": cleanup,
        "started_at": datetime.fromtimestamp(since_ms / 1000 + 1, UTC).isoformat(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--duration-s", type=float, default=20.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    print(json.dumps(measure(get_settings(), args.concurrency, args.duration_s), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
