"""Who may do what on Kafka: the rules as data, and the brokers' configs that enforce them."""

from __future__ import annotations

from confluent_kafka.admin import AclOperation, ResourcePatternType, ResourceType

from headwater.kafka_access import (
    acl_binding,
    group_grants,
    scram_argument,
    standing_grants,
    super_users,
    topic_grants,
)
from headwater.settings import ConsumerSettings, KafkaSettings, Settings
from infra.kafka_cluster import kafka_nodes, node_config


def _rights(grants: list) -> dict[str, set[str]]:
    rights: dict[str, set[str]] = {}
    for g in grants:
        rights.setdefault(g.role, set()).add(f"{g.operation} {g.resource} {g.name}")
    return rights


def test_on_a_topic_the_producer_writes_the_consumer_reads_and_health_only_looks() -> None:
    assert _rights(topic_grants("devices")) == {
        "producer": {"write topic devices", "describe topic devices"},
        "consumer": {"read topic devices", "describe topic devices"},
        "health": {"describe topic devices"},
    }


def test_only_the_consumer_joins_the_group_and_no_client_role_administers_anything() -> None:
    grants = standing_grants(Settings())
    assert _rights(grants) == {
        # The consumer writes one topic only: the late-data notices, no source's.
        "consumer": {
            "read group headwater-consumer",
            "write topic headwater-late-readings",
            "describe topic headwater-late-readings",
        },
        "health": {
            "describe group headwater-consumer",
            "describe cluster kafka-cluster",
            # Airflow's late-data watcher reads the notices in a group of its own.
            "read topic headwater-late-readings",
            "describe topic headwater-late-readings",
            "read group headwater-late-watch",
            "describe group headwater-late-watch",
        },
    }
    # Prefixed: a bench's group named after the pipeline's is the consumer's too.
    assert {g.pattern for g in grants if g.name.startswith("headwater-consumer")} == {"prefixed"}
    assert {g.pattern for g in grants if g.name.startswith("headwater-late")} == {"literal"}
    everything = grants + topic_grants("devices")
    assert not [g for g in everything if g.operation not in ("read", "write", "describe")]
    assert not [g for g in everything if g.role in ("admin", "broker")]


def test_a_consumer_group_outside_the_prefix_gets_its_own_literal_grants() -> None:
    settings = Settings(consumer=ConsumerSettings(group="analytics"))
    assert [g for g in standing_grants(settings) if g.name == "analytics"] == group_grants(
        "analytics"
    )


def test_grants_become_allow_bindings_of_the_roles_principals() -> None:
    settings = Settings(kafka=KafkaSettings(producer_user="ingest"))
    binding = acl_binding(settings, topic_grants("devices")[0])
    assert (binding.restype, binding.name, binding.resource_pattern_type) == (
        ResourceType.TOPIC,
        "devices",
        ResourcePatternType.LITERAL,
    )
    assert (binding.principal, binding.operation) == ("User:ingest", AclOperation.WRITE)


def test_super_users_are_the_brokers_and_the_admin_and_scram_comes_from_settings() -> None:
    settings = Settings(kafka=KafkaSettings.model_validate({"admin_password": "adm1n-secret"}))
    assert super_users(settings) == "User:headwater-broker;User:headwater-admin"
    assert scram_argument(settings, "admin") == (
        "SCRAM-SHA-512=[name=headwater-admin,iterations=8192,password=adm1n-secret]"
    )


def _props(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line)


def test_every_listener_takes_only_sasl_and_every_node_authorizes() -> None:
    settings = Settings()
    for node in kafka_nodes(settings):
        props = _props(node_config(settings, node))
        assert "PLAINTEXT:PLAINTEXT" not in props["listener.security.protocol.map"]
        for pair in props["listener.security.protocol.map"].split(","):
            assert pair.split(":")[1] == "SASL_PLAINTEXT"
        assert props["authorizer.class.name"].endswith("StandardAuthorizer")
        assert props["allow.everyone.if.no.acl.found"] == "false"
        if node.role == "broker":
            assert props["listeners"].startswith("BROKER://")
            assert props["listener.name.broker.sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
            assert (
                'username="headwater-broker"'
                in props["listener.name.broker.scram-sha-512.sasl.jaas.config"]
            )
