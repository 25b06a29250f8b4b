"""The store bench's timed queries: db/queries scripts in mongosh, driver calls, the $group.

Each is repeated (median and spread of the runs), bounded by a client timeout and a total budget,
and skipped, said so, when the server stopped answering.
"""

from __future__ import annotations

import logging
import os
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pymongo
from measures import spread_summary
from pymongo.database import Database
from pymongo.errors import PyMongoError
from store_queries import (
    ANALYSES,
    UNBOUNDED_GROUP,
    WARMUP_SCRIPT,
    count_by_device,
    describe_output,
    device_since,
    hour_env,
    iso_z,
    parse_shell_runs,
    short_error,
    unlisted_scripts,
)
from store_server import (
    SERVER_RETURN_S,
    RssSampler,
    ServerWatch,
    mongo_pid,
    round_mib,
    server_answers,
    wait_for_server,
)
from store_targets import ANSWERED, GROUP_TIMEOUT_S, failure_kind, group_verdict, query_verdict
from store_workload import DataSpan, analysis_hour, recent_since

from headwater.settings import REPO_ROOT, Settings
from producer.simulator import device_id as simulator_device_id

log = logging.getLogger("bench.store")

MONGOSH = REPO_ROOT / "infra" / "mongosh" / "node_modules" / ".bin" / "mongosh"
QUERIES_DIR = REPO_ROOT / "db" / "queries"
REPEAT_JS = Path(__file__).with_name("mongosh_repeat.js")
# A client-side bound on one timed run, so a wedged server costs a bounded wait.
QUERY_TIMEOUT_S = 120.0
# Repetitions of one query stop once they took this long in total (a slow query at 5 M docs
# would otherwise hold the part for many minutes; the runs done still give the figure).
QUERY_BUDGET_S = 300.0
# mongosh's own start-up on a busy machine, on top of its runs' budget.
SHELL_STARTUP_S = 60.0


def repeat(run: Callable[[], Any], reps: int, budget_s: float) -> dict[str, Any]:
    """Median and spread (ms) of up to `reps` runs, stopping once they took `budget_s`; the last
    run's answer size. A failed run ends the repetitions and is recorded with its kind."""
    times: list[float] = []
    answer: Any = None
    error: str | None = None
    for _ in range(reps):
        if sum(times) > budget_s:
            break
        started = time.perf_counter()
        try:
            with pymongo.timeout(QUERY_TIMEOUT_S):
                answer = run()
        except PyMongoError as exc:
            error = f"{failure_kind(exc)} after {time.perf_counter() - started:.1f}s: " + (
                short_error(exc)
            )
            break
        times.append(time.perf_counter() - started)
    return timing(times, reps, budget_s, error, answer)


def timing(
    times_s: list[float], reps: int, budget_s: float, error: str | None, answer: Any
) -> dict[str, Any]:
    """The figure of some timed runs: ms median and spread, the answer, the error, the verdict."""
    median_s = None
    result: dict[str, Any] = {"answer": answer, "error": error}
    if times_s:
        summary = spread_summary([t * 1000 for t in times_s], 1)
        result["ms"] = summary
        median_s = summary["median"] / 1000
        if len(times_s) < reps and error is None:
            result["note"] = f"stopped after {len(times_s)} of {reps} runs ({budget_s:.0f}s budget)"
    result["verdict"] = query_verdict(median_s)
    return result


def run_analysis(
    uri: str, script: Path, env: dict[str, str], reps: int, budget_s: float, workdir: Path
) -> dict[str, Any]:
    """One db/queries script, `reps` times in one mongosh (bench/mongosh_repeat.js)."""
    warmup = workdir / "warmup.js"
    warmup.write_text(WARMUP_SCRIPT)
    shell_env = dict(
        os.environ,
        **env,
        BENCH_SCRIPT=str(script),
        BENCH_WARMUP=str(warmup),
        BENCH_REPS=str(reps),
        BENCH_BUDGET_MS=str(int(budget_s * 1000)),
    )
    hard_limit_s = budget_s + QUERY_TIMEOUT_S + SHELL_STARTUP_S
    started = time.perf_counter()
    try:
        done = subprocess.run(
            [str(MONGOSH), "--quiet", uri, str(REPEAT_JS)],
            env=shell_env,
            capture_output=True,
            text=True,
            timeout=hard_limit_s,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        runs = parse_shell_runs(out)
        error = f"mongosh killed after {hard_limit_s:.0f}s ({len(runs.elapsed_ms)} runs done)"
        return timing([ms / 1000 for ms in runs.elapsed_ms], reps, budget_s, error, None)
    shell_s = time.perf_counter() - started
    runs = parse_shell_runs(done.stdout)
    error = None
    if done.returncode != 0:
        tail = " ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
        error = f"mongosh exited {done.returncode}: {tail[:300]}"
    answer = describe_output(runs.last_output) if runs.elapsed_ms else None
    result = timing([ms / 1000 for ms in runs.elapsed_ms], reps, budget_s, error, answer)
    result["shell_wall_s"] = round(shell_s, 1)
    return result


def guarded(watch: ServerWatch, name: str, measure: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """`measure`, unless the server stopped answering (waited for, bounded): then n/a."""
    why = watch.unavailable()
    if why is not None:
        log.error("store bench %s skipped: %s", name, why)
        return {"verdict": "n/a", "error": why}
    log.info("store bench timing %s", name)
    result = measure()
    summary = result.get("ms") or {}
    log.info(
        "store bench %s median_ms=%s min_ms=%s max_ms=%s n=%s answer=%s error=%s",
        name,
        summary.get("median"),
        summary.get("min"),
        summary.get("max"),
        summary.get("n"),
        result.get("answer"),
        result.get("error"),
    )
    return result


def time_queries(
    settings: Settings,
    watch: ServerWatch,
    db: Database,
    span: DataSpan,
    reps: int,
    budget_s: float,
) -> dict[str, Any]:
    """Every timed query: the db/queries scripts, readings per device in one hour, indexed find."""
    hour = analysis_hour(span)
    since = recent_since(span)
    device_id = simulator_device_id(0)
    uri = settings.mongo.uri.rstrip("/") + "/" + db.name
    queries: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="store-bench-") as tmp:
        for analysis in ANALYSES:
            script = QUERIES_DIR / analysis.script
            key = analysis.script.removesuffix(".js")
            if not MONGOSH.exists():
                queries[key] = {"verdict": "n/a", "error": f"{MONGOSH} missing (make install)"}
                continue
            env = hour_env(*hour) if analysis.one_hour else {}
            queries[key] = guarded(
                watch,
                key,
                lambda s=script, e=env: run_analysis(uri, s, e, reps, budget_s, Path(tmp)),
            )
            queries[key].update(
                kind="db/queries in mongosh",
                window="one hour" if analysis.one_hour else "whole collection, no time bound",
                reads=analysis.collection,
            )
            if not analysis.one_hour:
                queries[key]["verdict"] = "n/a"  # the < 1 s target is for one-hour analyses
    for script_name in unlisted_scripts(p.name for p in QUERIES_DIR.glob("*.js")):
        queries[script_name.removesuffix(".js")] = {
            "verdict": "n/a",
            "error": "not run: this bench does not know the script's parameters",
        }
    pipeline = count_by_device(*hour)
    queries["count_by_device_hour"] = guarded(
        watch,
        "count_by_device_hour",
        lambda: repeat(
            lambda: sum(g["readings"] for g in db.readings.aggregate(pipeline)), reps, budget_s
        ),
    )
    queries["count_by_device_hour"].update(kind="aggregate $match ts + $group device_id")
    find_filter = device_since(device_id, since)
    queries["indexed_find"] = guarded(
        watch,
        "indexed_find",
        lambda: repeat(lambda: len(list(db.readings.find(find_filter))), reps, budget_s),
    )
    queries["indexed_find"].update(
        kind="find device_id + ts >= (readings.device_ts)", device_id=device_id, since=iso_z(since)
    )
    return {"hour": [iso_z(hour[0]), iso_z(hour[1])], "queries": queries}


def unbounded_group(
    settings: Settings, watch: ServerWatch, db: Database, sampler: RssSampler
) -> dict[str, Any]:
    """The $group over every reading, bounded by a client timeout; then whether ping answers."""
    why = watch.unavailable()
    if why is not None:
        return {"verdict": "n/a", "error": f"before the $group: {why}"}
    pid_before = mongo_pid(settings)
    outcome, error, groups = ANSWERED, None, None
    log.info("store bench unbounded $group over readings, timeout %.0fs", GROUP_TIMEOUT_S)
    started = time.perf_counter()
    try:
        with pymongo.timeout(GROUP_TIMEOUT_S):
            groups = len(list(db.readings.aggregate(UNBOUNDED_GROUP)))
    except PyMongoError as exc:
        outcome, error = failure_kind(exc), short_error(exc)
    seconds = time.perf_counter() - started
    ping_ok = server_answers(settings)
    # A server that died is restarted by supervisord: wait (bounded) to see it back, and its PID.
    back_after_s = None if ping_ok else wait_for_server(settings, SERVER_RETURN_S)
    pid_after = mongo_pid(settings)
    log.info(
        "store bench unbounded $group outcome=%s seconds=%.1f groups=%s ping_after=%s error=%s",
        outcome,
        seconds,
        groups,
        ping_ok,
        error,
    )
    return {
        "pipeline": "$group by device_id + sensor: $avg, $min, $max, $sum of value",
        "outcome": outcome,
        "seconds": round(seconds, 1),
        "groups": groups,
        "error": error,
        "ping_after": ping_ok,
        "server_pid_before": pid_before,
        "server_pid_after": pid_after,
        "server_restarted": bool(pid_before and pid_after and pid_before != pid_after),
        "answered_again_after_s": back_after_s,
        "rss_after_mib": round_mib(sampler.current_mib()),
        "timeout_s": GROUP_TIMEOUT_S,
        "verdict": group_verdict(outcome, seconds, ping_ok),
    }
