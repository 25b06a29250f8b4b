"""Airflow 3 in the stack: components healthy, REST login works, connections resolve and work."""

from __future__ import annotations

import json
import subprocess
import sys

import requests

from headwater.settings import Settings
from infra import airflow as airflow_proc
from infra import stack
from infra.health import AIRFLOW_COMPONENTS

# Runs inside Airflow's own environment (AIRFLOW_CONN_* from the stack), as a task would.
_PROBE = """
import json
from airflow.providers.apache.kafka.hooks.client import KafkaAdminClientHook
from airflow.providers.mongo.hooks.mongo import MongoHook
from airflow.sdk import Connection

kafka = Connection.get("kafka_default")
mongo = Connection.get("mongo_default")
admin = KafkaAdminClientHook(kafka_config_id="kafka_default").get_conn
brokers = sorted(f"{b.host}:{b.port}" for b in admin.list_topics(timeout=10).brokers.values())
client = MongoHook(mongo_conn_id="mongo_default").get_conn()
ping = client.admin.command("ping")
print(json.dumps({"kafka_extra": kafka.extra_dejson, "mongo_type": mongo.conn_type,
                  "brokers": brokers, "ping": ping.get("ok"),
                  "tz_aware": client.codec_options.tz_aware}))
"""


def test_health_endpoint_reports_every_component_healthy(live_stack: Settings) -> None:
    body = requests.get(f"{live_stack.airflow.base_url}/api/v2/monitor/health", timeout=10).json()
    for component in AIRFLOW_COMPONENTS:
        assert body[component]["status"] == "healthy", (component, body)


def test_rest_api_accepts_the_configured_login(live_stack: Settings) -> None:
    token = airflow_proc.airflow_token(live_stack)
    resp = requests.get(
        f"{live_stack.airflow.base_url}/api/v2/dags",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert resp.status_code == 200, resp.text
    assert "dags" in resp.json()


def test_wrong_password_is_refused(live_stack: Settings) -> None:
    resp = requests.post(
        f"{live_stack.airflow.base_url}/auth/token",
        json={"username": live_stack.airflow.user, "password": "definitely-wrong"},
        timeout=10,
    )
    assert resp.status_code in (401, 403)


def test_kafka_and_mongo_connections_resolve_and_work(live_stack: Settings) -> None:
    result = subprocess.run(
        [sys.executable, "-c", _PROBE],
        env=stack.stack_env(live_stack),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    probe = json.loads(result.stdout.strip().splitlines()[-1])
    extra = probe["kafka_extra"]
    assert extra["bootstrap.servers"] == live_stack.kafka.bootstrap_servers
    assert extra["enable.auto.commit"] in (False, "false")
    assert extra["group.id"]
    assert probe["brokers"] == sorted(
        f"{live_stack.kafka.host}:{p}" for p in live_stack.kafka.broker_ports
    )
    assert probe["mongo_type"] == "mongo"
    assert probe["ping"] == 1.0
    assert probe["tz_aware"] is True  # like headwater.clients.mongo_client
