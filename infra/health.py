"""Health probes of the stack's services, each answering (ok, detail) and never raising."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import requests
from pymongo.errors import PyMongoError

from headwater.clients import mongo_client, redact_uri
from headwater.kafka_admin import admin_client, cluster_brokers, partition_states
from headwater.settings import Settings
from infra import airflow_db
from infra.airflow import HEALTH_COMPONENTS, airflow_health


@dataclass(frozen=True)
class Check:
    """The result of one probe."""

    name: str
    ok: bool
    detail: str


def check_kafka(settings: Settings, timeout_s: float = 3.0) -> Check:
    """Both brokers are in the cluster metadata and no partition is offline or under-replicated."""
    expected = len(settings.kafka.broker_ports)
    try:
        # librdkafka logs every refused connection while brokers start; the Check says it once.
        admin = admin_client(settings, log_level="0")
        brokers = set(cluster_brokers(admin, timeout_s).values())
        if len(brokers) != expected:
            return Check(
                "kafka", False, f"{len(brokers)}/{expected} brokers in metadata: {sorted(brokers)}"
            )
        bad = [
            f"{p.topic}[{p.partition}] isr={list(p.isr)}/{list(p.replicas)}"
            for p in partition_states(admin, timeout_s=timeout_s)
            if p.offline or p.under_replicated
        ]
        if bad:
            return Check("kafka", False, "under-replicated or offline: " + ", ".join(bad[:5]))
        return Check("kafka", True, f"{len(brokers)} brokers: {', '.join(sorted(brokers))}")
    except Exception as exc:  # noqa: BLE001 - a probe reports every failure as unhealthy
        return Check("kafka", False, f"{type(exc).__name__}: {exc}")


def check_mongo(settings: Settings, timeout_s: float | None = None) -> Check:
    """The MongoDB server answers `ping` within timeout_s (default MONGO_PING_TIMEOUT_S)."""
    ms = int((settings.mongo.ping_timeout_s if timeout_s is None else timeout_s) * 1000)
    try:
        # A server that accepts connections but never answers (SIGSTOPped, wedged) must fail
        # the probe within the bound: every phase of the ping is timed, not only the connect.
        with mongo_client(settings, ms, connect_timeout_ms=ms, socket_timeout_ms=ms) as client:
            client.admin.command("ping")
        return Check("mongo", True, f"ping ok ({redact_uri(settings.mongo.uri)})")
    except PyMongoError as exc:
        return Check("mongo", False, f"{type(exc).__name__}: {exc}")


AIRFLOW_COMPONENTS = HEALTH_COMPONENTS


def check_airflow(settings: Settings, timeout_s: float = 10.0) -> Check:
    """Every Airflow component is healthy and the execution API (what tasks call) answers."""
    try:
        states = airflow_health(settings, timeout_s)
    except (OSError, ValueError) as exc:
        return Check("airflow", False, f"{type(exc).__name__}: {exc}")
    bad = {c: s for c, s in states.items() if s != "healthy"}
    if bad:
        return Check("airflow", False, ", ".join(f"{c}={s}" for c, s in bad.items()))
    return Check("airflow", True, "all healthy: " + ", ".join(states))


def check_airflow_db(settings: Settings, timeout_s: float = 3.0) -> Check:
    """The stack's PostgreSQL (Airflow's metadata DB) accepts a login."""
    db = settings.airflow_db
    try:
        version = airflow_db.ping(settings, timeout_s)
    except Exception as exc:  # noqa: BLE001 - a probe reports every failure as unhealthy
        return Check("airflow-db", False, f"{db.host}:{db.port}: {type(exc).__name__}: {exc}")
    return Check("airflow-db", True, f"PostgreSQL {version} on {db.host}:{db.port}")


def check_http(name: str, url: str, timeout_s: float = 3.0) -> Check:
    """A service's /healthz answers 200."""
    try:
        resp = requests.get(url, timeout=timeout_s)
    except requests.RequestException as exc:
        return Check(name, False, f"{type(exc).__name__}: {exc}")
    if resp.status_code != 200:
        return Check(name, False, f"{url} answered {resp.status_code}: {resp.text[:200]}")
    return Check(name, True, f"{url} ok")


def check_all(settings: Settings) -> list[Check]:
    """Every service the stack runs."""
    svc = settings.services
    db = [check_airflow_db(settings)] if airflow_db.embedded(settings) else []
    return [
        check_kafka(settings),
        check_mongo(settings),
        *db,
        check_airflow(settings),
        check_http("external-api", f"http://{svc.host}:{svc.external_api_port}/healthz"),
        check_http("events-api", f"http://{svc.host}:{svc.flask_port}/healthz"),
        *check_consumers(settings),
    ]


def check_consumers(
    settings: Settings, probe: Callable[[str, str], Check] = check_http
) -> list[Check]:
    """One check per consumer member's /healthz: a dead member's partitions move to the others,
    but the stack is only whole (and `up` only done) when every member answers."""
    return [probe(m.name, f"{m.url}/healthz") for m in settings.consumer_members()]
