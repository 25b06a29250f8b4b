"""The rendered KRaft node configs carry the cluster's safety settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from headwater.settings import Settings, StackSettings
from infra.kafka_cluster import kafka_nodes, node_config


def _props(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(stack=StackSettings(run_dir=tmp_path))


def test_one_controller_and_two_brokers_on_distinct_ports(settings: Settings) -> None:
    nodes = kafka_nodes(settings)
    assert [n.role for n in nodes] == ["controller", "broker", "broker"]
    assert len({n.port for n in nodes}) == 3
    assert len({n.node_id for n in nodes}) == 3
    assert len({n.log_dir(settings) for n in nodes}) == 3


def test_brokers_never_auto_create_and_replicate_everything_twice(settings: Settings) -> None:
    for node in kafka_nodes(settings)[1:]:
        props = _props(node_config(settings, node))
        assert props["process.roles"] == "broker"
        assert props["auto.create.topics.enable"] == "false"
        assert props["unclean.leader.election.enable"] == "false"
        assert props["default.replication.factor"] == "2"
        assert props["min.insync.replicas"] == "1"
        # Internal topics at RF 2, or consumer groups hang on a two-broker cluster.
        for key in (
            "offsets.topic.replication.factor",
            "transaction.state.log.replication.factor",
            "share.coordinator.state.topic.replication.factor",
        ):
            assert props[key] == "2", key
        assert props["listeners"] == f"BROKER://127.0.0.1:{node.port}"
        assert props["advertised.listeners"] == props["listeners"]


def test_every_node_votes_for_the_one_controller(settings: Settings) -> None:
    controller = kafka_nodes(settings)[0]
    for node in kafka_nodes(settings):
        props = _props(node_config(settings, node))
        assert props["controller.quorum.voters"] == f"1@127.0.0.1:{controller.port}"
        assert props["node.id"] == str(node.node_id)
    assert _props(node_config(settings, controller))["process.roles"] == "controller"
