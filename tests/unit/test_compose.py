"""docker-compose.yaml describes the same topology, ports and env names as the settings module."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from pydantic_settings import BaseSettings

from headwater.kafka_access import scram_argument
from headwater.settings import KAFKA_ROLES, REPO_ROOT, Settings
from infra.kafka_cluster import kafka_nodes, node_config

COMPOSE = yaml.safe_load((REPO_ROOT / "docker-compose.yaml").read_text())
VAR = re.compile(r"\$\{([A-Z0-9_]+):-([^}]*)\}")


def settings_env_defaults() -> dict[str, str]:
    """Env var name -> default (as text) of every settings field."""
    result: dict[str, str] = {}
    for group in Settings.model_fields.values():
        cls = group.default_factory
        assert isinstance(cls, type) and issubclass(cls, BaseSettings)
        prefix = cls.model_config.get("env_prefix", "")
        for name, field in cls.model_fields.items():
            env = field.validation_alias if isinstance(field.validation_alias, str) else None
            default = field.get_default(call_default_factory=True)
            if hasattr(default, "get_secret_value"):
                default = default.get_secret_value()
            result[(env or prefix + name).upper()] = str(default)
    return result


@pytest.fixture(scope="module")
def env_defaults() -> dict[str, str]:
    return settings_env_defaults()


def test_services_are_the_local_topology() -> None:
    services = set(COMPOSE["services"])
    assert {"kafka-controller", "kafka-broker1", "kafka-broker2", "mongo"} <= services
    assert {"events-api", "external-api", "consumer-1", "consumer-2"} <= services
    assert {
        "airflow-api-server",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
    } <= services


def test_every_variable_is_a_settings_name_with_the_same_default(
    env_defaults: dict[str, str],
) -> None:
    text = (REPO_ROOT / "docker-compose.yaml").read_text()
    used = VAR.findall(text)
    assert used, "compose file uses no settings variables"
    for name, default in used:
        if name == "AIRFLOW_JWT_SECRET":  # compose-only: the local stack generates its own
            continue
        assert name in env_defaults, f"{name} is not a settings variable"
        assert default == env_defaults[name], f"{name}: compose {default!r} != settings"


@pytest.mark.parametrize(
    ("service", "var", "container_port"),
    [
        ("kafka-controller", "KAFKA_CONTROLLER_PORT", 9093),
        ("kafka-broker1", "KAFKA_BROKER1_PORT", 9092),
        ("kafka-broker2", "KAFKA_BROKER2_PORT", 9094),
        ("mongo", "MONGO_PORT", 27017),
        ("airflow-api-server", "AIRFLOW_UI_PORT", 8080),
    ],
)
def test_published_ports_follow_the_settings(service: str, var: str, container_port: int) -> None:
    ports = COMPOSE["services"][service]["ports"]
    assert any(p.startswith(f"${{{var}:-") and p.endswith(f":{container_port}") for p in ports)


def _compose_node_config(service: str, tmp_path: Path) -> dict[str, str]:
    """The server.properties infra/kafka/compose-node.sh writes for a compose service (its
    environment, compose's defaults), with stub Kafka tools in place of the image's."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "kafka-storage.sh").write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/format-args\n')
    (bin_dir / "kafka-server-start.sh").write_text("#!/bin/sh\nexit 0\n")
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    env = {
        key: VAR.sub(lambda m: m.group(2), str(value))
        for key, value in COMPOSE["services"][service]["environment"].items()
    }
    conf = tmp_path / f"{service}.properties"
    env.update(KAFKA_HOME=str(tmp_path), NODE_CONFIG=str(conf), PATH=os.environ["PATH"])
    subprocess.run(
        ["bash", str(REPO_ROOT / "infra" / "kafka" / "compose-node.sh")], env=env, check=True
    )
    return dict(line.split("=", 1) for line in conf.read_text().splitlines() if line)


# What the compose nodes must share with the local stack's (infra/kafka_cluster.py).
_SHARED_KEYS = (
    "sasl.mechanism.controller.protocol",
    "listener.name.controller.sasl.enabled.mechanisms",
    "listener.name.controller.plain.sasl.jaas.config",
    "authorizer.class.name",
    "super.users",
    "allow.everyone.if.no.acl.found",
    "auto.create.topics.enable",
    "unclean.leader.election.enable",
    "offsets.topic.replication.factor",
    "transaction.state.log.replication.factor",
    "min.insync.replicas",
    "default.replication.factor",
    "sasl.mechanism.inter.broker.protocol",
)


@pytest.mark.parametrize(
    ("service", "node"), [("kafka-controller", 0), ("kafka-broker1", 1), ("kafka-broker2", 2)]
)
def test_compose_nodes_are_configured_like_the_local_cluster(
    service: str, node: int, tmp_path: Path
) -> None:
    settings = Settings()
    local_node = kafka_nodes(settings)[node]
    local = dict(
        line.split("=", 1) for line in node_config(settings, local_node).splitlines() if line
    )
    compose = _compose_node_config(service, tmp_path)
    assert compose["process.roles"] == local["process.roles"]
    for key in _SHARED_KEYS:
        assert compose.get(key) == local.get(key), key
    # Every listener takes only SASL; brokers only SCRAM-SHA-512 from clients.
    assert {p.split(":")[1] for p in compose["listener.security.protocol.map"].split(",")} == {
        "SASL_PLAINTEXT"
    }
    if local_node.role == "broker":
        for listener in ("internal", "external"):
            assert compose[f"listener.name.{listener}.sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    # The storage is formatted with every role's SCRAM credential, as format_storage does.
    args = (tmp_path / "format-args").read_text()
    for role in KAFKA_ROLES:
        assert scram_argument(settings, role) in args


def test_airflow_services_read_the_pipeline_env_names() -> None:
    env = COMPOSE["services"]["airflow-scheduler"]["environment"]
    for name in (
        "MONGO_URI",
        "KAFKA_BOOTSTRAP_SERVERS",
        "AIRFLOW_CONN_KAFKA_DEFAULT",
        "AIRFLOW_CONN_KAFKA_LATE_NOTICES",
        "AIRFLOW_CONN_MONGO_DEFAULT",
    ):
        assert name in env, name
