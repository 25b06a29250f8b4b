"""The user-events API under load: accepted POST /events per second and their latency.

    python bench/flask_bench.py [--concurrency 16] [--duration-s 20]
    python bench/flask_bench.py --own-api [--trials 5] [--baseline-root DIR]

A fixed number of client threads on loopback, each with one keep-alive connection, post single
events as fast as the API answers for the duration. Only 201s count as accepted; anything else
(status or exception) is counted by kind.

On the running stack (the default) the events belong to `loadtest-*` users, whom the consumer's
filters keep out of `user_events`. To keep them out of the pipeline altogether, the load is
started early enough in an interval of the `ingest_user_events` DAG that it ends, and its events
are deleted from the events database again, before that interval is pulled.

With --own-api no stack is needed: the bench starts its own events APIs (the stack's gunicorn
argv, events_server.py, scratch databases) and runs interleaved trials of each arm: group commit
as configured, the same code with one transaction per request
(HEADWATER_EVENTS_GROUP_COMMIT_MAX_EVENTS=1), and with --baseline-root another checkout of the
code (e.g. `git archive` of the commit before group commit) on the same virtualenv. Each trial
reads the commit counter of /healthz before and after, so fsyncs per accepted event are
measured, not assumed (a checkout without the counter reports none).
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
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
from events_server import HOST, ApiServer, start_api
from flask_plan import per_event, rotated_order
from measures import latency_summary, percentile, rate, spread_summary

from headwater.settings import REPO_ROOT, Settings, get_settings
from infra.airflow import airflow_token
from producer.events.ids import first_id_at
from producer.events.store import EventStore
from producer.events.timing import parse_duration_ms

log = logging.getLogger("bench.flask")

USER_PREFIX = "loadtest-"
EVENT_TYPE = "bench.load"
USER_EVENTS_DAG = "ingest_user_events"
# Time kept free after the load, before the next user-events pull, for the cleanup.
CLEANUP_MARGIN_S = 20.0
# The --own-api arms.
GROUP_COMMIT = "group_commit"
PER_REQUEST = "per_request"
BASELINE = "baseline"
WARMUP_S = 2.0


@dataclass
class WorkerTally:
    """What one client thread saw."""

    latencies_201: list[float] = field(default_factory=list)
    # The server's own time on each of those 201s (its Server-Timing header), in seconds; None
    # where the server sent none (a checkout without the header).
    server_201: list[float | None] = field(default_factory=list)
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
                server_ms = parse_duration_ms(resp.getheader("Server-Timing"))
                tally.server_201.append(None if server_ms is None else server_ms / 1000)
            if resp.getheader("Connection", "").lower() == "close":
                conn.close()
                conn = http.client.HTTPConnection(host, port, timeout=30)
    finally:
        conn.close()


def normal_load(
    host: str, port: int, api_key: str, concurrency: int, duration_s: float
) -> dict[str, Any]:
    """`concurrency` keep-alive clients for `duration_s`: accepted/s, other outcomes, latency."""
    tallies = [WorkerTally() for _ in range(concurrency)]
    usage_before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    deadline = started + duration_s
    threads = [
        threading.Thread(
            target=post_events, args=(host, port, api_key, i, deadline, t), name=f"load-{i}"
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
    server: list[float] = []
    outside: list[float] = []
    for tally in tallies:
        outcomes.update(tally.outcomes)
        latencies.extend(tally.latencies_201)
        for total, own in zip(tally.latencies_201, tally.server_201, strict=True):
            if own is not None:
                server.append(own)
                outside.append(max(0.0, total - own))
    accepted = outcomes.pop("201", 0)
    return {
        "seconds": round(elapsed, 2),
        "accepted": accepted,
        "accepted_per_s": round(rate(accepted, elapsed), 1),
        "errors": dict(outcomes),
        "latency_201": latency_summary(latencies),
        # The tail, split: the server's own time (Server-Timing: from Flask getting the request
        # to its response, the group commit's fsync included) and everything outside it (the
        # client's own queueing on its GIL, the socket, the worker's event loop).
        "server_201": latency_summary(server),
        "outside_201": latency_summary(outside),
        # The load generator shares the machine's cores with the server: its own CPU use.
        "client_cpu_s": round(client_cpu, 2),
    }


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
    since_ms = int(time.time() * 1000) - 1000
    load = normal_load(
        svc.host, svc.flask_port, svc.api_key.get_secret_value(), concurrency, duration_s
    )
    outcomes = load["errors"]
    accepted, elapsed = load["accepted"], load["seconds"]
    log.info("flask load done accepted=%d other=%s seconds=%.1f", accepted, outcomes, elapsed)

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
        "accepted_per_s": load["accepted_per_s"],
        "errors": outcomes,
        "latency_201": load["latency_201"],
        "server_201": load["server_201"],
        "outside_201": load["outside_201"],
        # The load generator shares the machine's cores with the server: its own CPU use.
        "client_cpu_cores": round(load["client_cpu_s"] / elapsed, 2),
        "cleanup": cleanup,
        "started_at": datetime.fromtimestamp(since_ms / 1000 + 1, UTC).isoformat(),
    }


def commits_of(server: ApiServer) -> int | None:
    """The API's commit counter (None for a checkout that has none)."""
    resp = requests.get(f"{server.url}/healthz", timeout=30)
    resp.raise_for_status()
    commits = resp.json().get("commits")
    return int(commits) if commits is not None else None


def own_trial(
    arm: str, server: ApiServer, api_key: str, concurrency: int, duration_s: float
) -> dict[str, Any]:
    """One trial of one arm: the load, and what it cost in commits and server CPU."""
    commits_before, cpu_before = commits_of(server), server.cpu_seconds()
    figures = normal_load(HOST, server.port, api_key, concurrency, duration_s)
    commits_after, cpu_after = commits_of(server), server.cpu_seconds()
    commits = (
        commits_after - commits_before
        if commits_before is not None and commits_after is not None
        else None
    )
    fsyncs = per_event(commits, figures["accepted"])
    figures.update(
        arm=arm,
        commits=commits,
        fsyncs_per_event=round(fsyncs, 4) if fsyncs is not None else None,
        server_cpu_s=round(cpu_after - cpu_before, 2),
    )
    log.info("flask trial %s", figures)
    return figures


def _p99_spread(trials: list[dict[str, Any]], key: str) -> dict[str, Any] | None:
    values = [t[key]["p99_ms"] for t in trials if (t.get(key) or {}).get("n")]
    return spread_summary(values, 1) if values else None


def arm_summary(trials: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians with their range over one arm's trials."""
    latencies = [t["latency_201"] for t in trials if t["latency_201"].get("n")]
    fsyncs = [t["fsyncs_per_event"] for t in trials if t["fsyncs_per_event"] is not None]
    errors: Counter[str] = Counter()
    for trial in trials:
        errors.update(trial["errors"])
    return {
        "accepted_per_s": spread_summary([t["accepted_per_s"] for t in trials], 1),
        "p50_ms": spread_summary([lat["p50_ms"] for lat in latencies], 1) if latencies else None,
        "p99_ms": spread_summary([lat["p99_ms"] for lat in latencies], 1) if latencies else None,
        "server_p99_ms": _p99_spread(trials, "server_201"),
        "outside_p99_ms": _p99_spread(trials, "outside_201"),
        "fsyncs_per_event": spread_summary(fsyncs, 4) if fsyncs else None,
        "server_cpu_ms_per_event": spread_summary(
            [1000 * t["server_cpu_s"] / t["accepted"] for t in trials if t["accepted"]], 3
        ),
        "errors": dict(errors),
    }


def measure_own_api(
    settings: Settings,
    concurrency: int = 16,
    duration_s: float = 20.0,
    trials: int = 5,
    baseline_root: Path | None = None,
) -> dict[str, Any]:
    """Interleaved trials on events APIs started here: group commit vs one commit per request."""
    api_key = settings.services.api_key.get_secret_value()
    arms: dict[str, dict[str, str]] = {
        GROUP_COMMIT: {},
        PER_REQUEST: {"HEADWATER_EVENTS_GROUP_COMMIT_MAX_EVENTS": "1"},
    }
    if baseline_root is not None:
        arms[BASELINE] = {}
    order = rotated_order(list(arms), trials)
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="headwater-flask-bench-") as scratch:
        servers: dict[str, ApiServer] = {}
        try:
            for arm, env in arms.items():
                servers[arm] = start_api(
                    settings,
                    Path(scratch) / arm,
                    Path(scratch) / f"{arm}.log",
                    env={"HEADWATER_API_KEY": api_key, **env},
                    source_root=baseline_root if arm == BASELINE and baseline_root else REPO_ROOT,
                )
                # Warm up (connections, page cache, the writer connection) outside the trials.
                normal_load(HOST, servers[arm].port, api_key, concurrency, WARMUP_S)
            for arm in order:
                runs.append(own_trial(arm, servers[arm], api_key, concurrency, duration_s))
        finally:
            for server in servers.values():
                server.stop()
    by_arm = {arm: arm_summary([r for r in runs if r["arm"] == arm]) for arm in arms}
    group = [r for r in runs if r["arm"] == GROUP_COMMIT]
    group_latencies = [r["latency_201"] for r in group if r["latency_201"].get("n")]
    return {
        "method": (
            f"own events APIs (the stack's gunicorn argv, scratch databases); {concurrency} "
            f"keep-alive clients posting single events for {duration_s:g} s; {trials} rotated "
            f"rounds of the arms {', '.join(arms)}; medians of the trials with their range"
        ),
        "concurrency": concurrency,
        "trial_s": duration_s,
        "trials_each": trials,
        "baseline_root": str(baseline_root) if baseline_root else None,
        # The headline figures (report.py and chart.py read these): the group-commit arm's.
        "accepted_per_s": by_arm[GROUP_COMMIT]["accepted_per_s"]["median"],
        "latency_201": {
            "n": sum(lat["n"] for lat in group_latencies),
            **{
                f"{q}_ms": round(percentile([lat[f"{q}_ms"] for lat in group_latencies], 50), 1)
                for q in ("p50", "p95", "p99")
            },
        }
        if group_latencies
        else {"n": 0},
        "errors": by_arm[GROUP_COMMIT]["errors"],
        "arms": by_arm,
        "trials": runs,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--duration-s", type=float, default=20.0)
    parser.add_argument("--own-api", action="store_true", help="start own APIs, no stack needed")
    parser.add_argument("--trials", type=int, default=5, help="--own-api: rounds of the arms")
    parser.add_argument(
        "--baseline-root", type=Path, help="--own-api: also serve this checkout of the code"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = get_settings()
    if args.own_api:
        result = measure_own_api(
            settings, args.concurrency, args.duration_s, args.trials, args.baseline_root
        )
    else:
        result = measure(settings, args.concurrency, args.duration_s)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
