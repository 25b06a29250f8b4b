"""Gather what each health check needs (Kafka, MongoDB, HTTP), decide it, record the result.

The sensors and the integration tests both call `run_and_record`, with a Kafka AdminClient and a
MongoDB database handed in (from the Airflow hooks in the DAG, from settings in tests).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import pymongo
import requests
from confluent_kafka.admin import AdminClient
from pymongo import ReturnDocument
from pymongo.database import Database
from pymongo.errors import PyMongoError

from headwater import health_checks as hc
from headwater.contracts import Collections
from headwater.kafka_admin import cluster_brokers, group_offsets, partition_states
from headwater.settings import Settings
from headwater.sources import load_catalog, load_sources, pipeline_topics

log = logging.getLogger(__name__)

HealthResult = hc.HealthResult
TIMEOUT_S = 10.0
# A check's MongoDB reads, and the write of its result, give up after these: a hung server then
# fails the poke instead of hanging it (pymongo has no read timeout by default).
MONGO_TIMEOUT_S = 30.0
RECORD_TIMEOUT_S = 10.0
DEFAULT_MAX_LAG_PER_TOPIC = 1000


def probe_brokers(settings: Settings, admin: AdminClient, **_: Any) -> HealthResult:
    """Expected brokers (settings) vs the brokers in the cluster metadata."""
    expected = settings.kafka.bootstrap_servers.split(",")
    return hc.check_brokers_alive(expected, cluster_brokers(admin, TIMEOUT_S))


def probe_partitions(settings: Settings, admin: AdminClient, **_: Any) -> HealthResult:
    """Leader, replicas and ISR of every non-internal topic's partitions."""
    return hc.check_partitions_replicated(partition_states(admin, timeout_s=TIMEOUT_S))


def probe_heartbeat(
    settings: Settings,
    db: Database,
    now: datetime,
    stale_after_s: float | None = None,
    expected_members: int | str | None = None,
    **_: Any,
) -> HealthResult:
    """The consumer group's heartbeat documents in pipeline_status: as many live members as the
    stack runs (HEADWATER_CONSUMER_PROCESSES) unless `expected_members` says otherwise."""
    docs = db[Collections.PIPELINE_STATUS].find(
        {"kind": "consumer", "group": _group(settings)},
        {
            "heartbeat_at": 1,
            "instance": 1,
            "member_id": 1,
            "phase": 1,
            "last_error": 1,
            "assigned": 1,
        },
    )
    limit = settings.consumer.stale_after_s if stale_after_s is None else stale_after_s
    expected = settings.consumer.processes if expected_members is None else int(expected_members)
    return hc.check_heartbeat_fresh(list(docs), now, limit, expected)


def probe_lag(
    settings: Settings,
    admin: AdminClient,
    max_lag_per_topic: int | str = DEFAULT_MAX_LAG_PER_TOPIC,
    topics: list[str] | None = None,
    **_: Any,
) -> HealthResult:
    """Committed offsets of the consumer group vs high watermarks, on the pipeline's topics.

    Computed from Kafka rather than from the heartbeat: a dead consumer's last heartbeat still
    shows the lag it had, while messages keep arriving.
    """
    offsets = group_offsets(admin, _group(settings), topics or pipeline_topics(), TIMEOUT_S)
    return hc.check_lag_under(offsets, int(max_lag_per_topic))


def probe_freshness(
    settings: Settings,
    db: Database,
    now: datetime,
    sources: list[str] | str | None = None,
    **_: Any,
) -> HealthResult:
    """Newest stored event time of each source (its declared collection) vs its bound."""
    declared = load_sources()
    if isinstance(sources, str):
        sources = [s.strip() for s in sources.split(",") if s.strip()]
    names = list(sources or hc.DEFAULT_FRESHNESS_SOURCES)
    unknown = [n for n in names if n not in declared]
    if unknown:
        raise ValueError(f"unknown sources {unknown}; declared: {sorted(declared)}")
    bounds = {n: hc.freshness_bound_s(declared[n].interval_s) for n in names}
    newest: dict[str, datetime | None] = {}
    for name in names:
        collection, time_field = declared[name].collection, declared[name].stored_time_field
        # sort + limit 1 on the (source, time) index every source collection gets
        doc = db[collection].find_one({"source": name}, {time_field: 1}, sort=[(time_field, -1)])
        newest[name] = doc.get(time_field) if doc else None
    return hc.check_sources_fresh(newest, bounds, now)


def probe_declarations(settings: Settings, db: Database, **_: Any) -> HealthResult:
    """The declaration files as they are now, and the topics the consumer reports paused."""
    catalog = load_catalog(settings)
    paused: dict[str, str] = {}
    docs = db[Collections.PIPELINE_STATUS].find(
        {"kind": "consumer", "group": _group(settings), "phase": {"$in": ["running", "starting"]}},
        {"paused_topics": 1},
    )
    for doc in docs:
        for item in doc.get("paused_topics") or []:
            paused[str(item.get("topic"))] = str(item.get("problem"))
    return hc.check_declarations(catalog.problems, catalog.file_problems, paused, catalog.sources)


def probe_healthz(settings: Settings, **_: Any) -> HealthResult:
    """GET /healthz of the external API stand-in, the events API and every consumer member."""
    svc = settings.services
    urls = {
        "external-api": f"http://{svc.host}:{svc.external_api_port}/healthz",
        "events-api": f"http://{svc.host}:{svc.flask_port}/healthz",
        **{m.name: f"{m.url}/healthz" for m in settings.consumer_members()},
    }
    answers: dict[str, tuple[str, int | None, str]] = {}
    for name, url in urls.items():
        try:
            resp = requests.get(url, timeout=5)
            answers[name] = (url, resp.status_code, resp.text)
        except requests.RequestException as exc:
            answers[name] = (url, None, f"{type(exc).__name__}: {exc}")
    return hc.check_healthz(answers)


def probe_mongo(settings: Settings, db: Database, **_: Any) -> HealthResult:
    """`ping` on the pipeline's MongoDB, answered within MONGO_PING_TIMEOUT_S or failed.

    A server that is alive but hung still accepts connections; the timeout bounds server
    selection and the wait for the answer alike, so the poke fails instead of hanging.
    """
    bound_s = settings.mongo.ping_timeout_s
    started = time.monotonic()
    try:
        with pymongo.timeout(bound_s):
            db.command("ping")
    except PyMongoError as exc:
        return hc.check_mongo_answers(None, f"{type(exc).__name__}: {exc}", bound_s)
    return hc.check_mongo_answers(time.monotonic() - started, None, bound_s)


PROBES: dict[str, Callable[..., HealthResult]] = {
    hc.CHECK_BROKERS: probe_brokers,
    hc.CHECK_PARTITIONS: probe_partitions,
    hc.CHECK_HEARTBEAT: probe_heartbeat,
    hc.CHECK_LAG: probe_lag,
    hc.CHECK_FRESHNESS: probe_freshness,
    hc.CHECK_HEALTHZ: probe_healthz,
    hc.CHECK_MONGO: probe_mongo,
    hc.CHECK_DECLARATIONS: probe_declarations,
}
# Which checks need which handle: the sensor only opens the connections a check uses.
NEEDS_KAFKA = frozenset({hc.CHECK_BROKERS, hc.CHECK_PARTITIONS, hc.CHECK_LAG})
NEEDS_MONGO_DATA = frozenset({hc.CHECK_HEARTBEAT, hc.CHECK_FRESHNESS})


def run_check(
    check: str,
    settings: Settings,
    *,
    admin: AdminClient | None,
    db: Database,
    now: datetime,
    params: Mapping[str, Any] | None = None,
) -> HealthResult:
    """Run one check; an error while gathering its data is a failed result naming the error."""
    try:
        with pymongo.timeout(MONGO_TIMEOUT_S):
            return PROBES[check](settings, admin=admin, db=db, now=now, **dict(params or {}))
    except Exception as exc:  # noqa: BLE001 - a health check reports every failure as unhealthy
        log.warning("health check error check=%s error=%s: %s", check, type(exc).__name__, exc)
        return hc.health_result(check, False, f"check error {type(exc).__name__}: {exc}", {})


def record_result(
    db: Database, result: HealthResult, *, run_id: str, try_number: int, now: datetime
) -> dict[str, Any]:
    """Upsert the result into health_checks under `check|run_id|try`; returns the document.

    The latest poke's result wins, but a failure is never overwritten by a later pass: the
    document counts `failures` and keeps `last_failure` (when, what, how much), so a run that
    ended green still shows the fault it saw while it lasted.
    """
    doc_id = f"{result['check']}|{run_id}|{try_number}"
    current = {**result, "checked_at": now, "dag_run_id": run_id}
    update: dict[str, Any] = {"$set": current}
    if result["ok"]:
        update["$setOnInsert"] = {"failures": 0}
    else:
        failure = {"at": now, "detail": result["detail"], "measured": result["measured"]}
        update["$set"] = {**current, "last_failure": failure}
        update["$inc"] = {"failures": 1}
    with pymongo.timeout(RECORD_TIMEOUT_S):
        stored = db[Collections.HEALTH_CHECKS].find_one_and_update(
            {"_id": doc_id}, update, upsert=True, return_document=ReturnDocument.AFTER
        )
    return dict(stored)


def run_and_record(
    check: str,
    settings: Settings,
    *,
    admin: AdminClient | None,
    db: Database,
    run_id: str,
    try_number: int,
    params: Mapping[str, Any] | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Run one check and store its result, pass or fail; returns the stored document."""
    now = now or datetime.now(UTC)
    result = run_check(check, settings, admin=admin, db=db, now=now, params=params)
    log.info(
        "health check=%s ok=%s run_id=%s detail=%s", check, result["ok"], run_id, result["detail"]
    )
    try:
        return record_result(db, result, run_id=run_id, try_number=try_number, now=now)
    except PyMongoError as exc:
        # MongoDB itself may be the fault: the check still reports (log, task state), unrecorded.
        log.warning(
            "health check=%s run_id=%s not recorded: %s: %s", check, run_id, type(exc).__name__, exc
        )
        return {**result, "checked_at": now, "dag_run_id": run_id, "recorded": False}


def _group(settings: Settings) -> str:
    return settings.consumer.group or settings.kafka.consumer_group
