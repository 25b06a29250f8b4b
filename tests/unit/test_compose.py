"""docker-compose.yaml describes the same topology, ports and env names as the settings module."""

from __future__ import annotations

import re

import pytest
import yaml
from pydantic_settings import BaseSettings

from headwater.settings import REPO_ROOT, Settings

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
    assert {"events-api", "external-api", "consumer"} <= services
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


def test_brokers_keep_the_safety_settings() -> None:
    for name in ("kafka-broker1", "kafka-broker2"):
        env = COMPOSE["services"][name]["environment"]
        assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
        assert env["KAFKA_UNCLEAN_LEADER_ELECTION_ENABLE"] == "false"
        assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == 2
        assert env["KAFKA_PROCESS_ROLES"] == "broker"


def test_airflow_services_read_the_pipeline_env_names() -> None:
    env = COMPOSE["services"]["airflow-scheduler"]["environment"]
    for name in (
        "MONGO_URI",
        "KAFKA_BOOTSTRAP_SERVERS",
        "AIRFLOW_CONN_KAFKA_DEFAULT",
        "AIRFLOW_CONN_MONGO_DEFAULT",
    ):
        assert name in env, name
