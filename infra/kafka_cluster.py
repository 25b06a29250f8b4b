"""The local KRaft cluster: node configs (pure) and storage formatting."""

from __future__ import annotations

import logging
import subprocess
from dataclasses import dataclass
from pathlib import Path

from headwater.settings import REPO_ROOT, Settings

log = logging.getLogger(__name__)

CONTROLLER_NODE_ID = 1
KAFKA_MAIN = "kafka.Kafka"
STORAGE_TOOL_MAIN = "kafka.tools.StorageTool"
LOG4J2_CONFIG = REPO_ROOT / "infra" / "kafka" / "log4j2.properties"


@dataclass(frozen=True)
class KafkaNode:
    """One JVM of the cluster: the controller or a broker."""

    name: str
    node_id: int
    port: int
    role: str  # "controller" or "broker"

    def log_dir(self, settings: Settings) -> Path:
        return settings.stack.data_dir / "kafka" / self.name

    def config_path(self, settings: Settings) -> Path:
        return settings.stack.run_dir / "conf" / f"{self.name}.properties"


def kafka_nodes(settings: Settings) -> list[KafkaNode]:
    """The controller and the two brokers, in start order."""
    k = settings.kafka
    return [
        KafkaNode("kafka-controller", CONTROLLER_NODE_ID, k.controller_port, "controller"),
        KafkaNode("kafka-broker1", 2, k.broker1_port, "broker"),
        KafkaNode("kafka-broker2", 3, k.broker2_port, "broker"),
    ]


def _properties(values: dict[str, object]) -> str:
    return "".join(f"{key}={value}\n" for key, value in values.items())


def node_config(settings: Settings, node: KafkaNode) -> str:
    """The server.properties text for one node."""
    k = settings.kafka
    common: dict[str, object] = {
        "node.id": node.node_id,
        "controller.quorum.voters": f"{CONTROLLER_NODE_ID}@{k.host}:{k.controller_port}",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": node.log_dir(settings),
    }
    if node.role == "controller":
        return _properties(
            {
                "process.roles": "controller",
                **common,
                "listeners": f"CONTROLLER://{k.host}:{node.port}",
            }
        )
    return _properties(
        {
            "process.roles": "broker",
            **common,
            "listeners": f"PLAINTEXT://{k.host}:{node.port}",
            "advertised.listeners": f"PLAINTEXT://{k.host}:{node.port}",
            "inter.broker.listener.name": "PLAINTEXT",
            # Topics are created explicitly by the topic-admin step, never by a typo in a producer.
            "auto.create.topics.enable": "false",
            "num.partitions": k.partitions,
            "default.replication.factor": k.replication_factor,
            "min.insync.replicas": k.min_insync_replicas,
            "unclean.leader.election.enable": "false",
            # Kafka's internal topics default to RF 3, which a two-broker cluster can never satisfy:
            # consumer groups would then hang waiting for __consumer_offsets.
            "offsets.topic.replication.factor": k.replication_factor,
            "offsets.topic.num.partitions": 10,
            "transaction.state.log.replication.factor": k.replication_factor,
            "transaction.state.log.min.isr": k.min_insync_replicas,
            "share.coordinator.state.topic.replication.factor": k.replication_factor,
            "share.coordinator.state.topic.min.isr": k.min_insync_replicas,
            "group.initial.rebalance.delay.ms": 0,
            "log.retention.hours": 168,
            "log.segment.bytes": 64 * 1024 * 1024,
        }
    )


def java_command(settings: Settings, main: str, *args: str, heap: str | None = None) -> list[str]:
    """argv that runs a Kafka main class from the Maven-resolved jars."""
    libs = settings.stack.cache_dir / "kafka" / "libs"
    heap = heap or settings.kafka.heap
    return [
        "java",
        f"-Xmx{heap}",
        f"-Xms{heap}",
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={LOG4J2_CONFIG}",
        "-cp",
        f"{libs}/*",
        main,
        *args,
    ]


def node_command(settings: Settings, node: KafkaNode) -> list[str]:
    """argv of one long-running Kafka node."""
    return java_command(settings, KAFKA_MAIN, str(node.config_path(settings)))


def write_configs(settings: Settings) -> None:
    """Render every node's properties file into the run dir."""
    for node in kafka_nodes(settings):
        path = node.config_path(settings)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(node_config(settings, node))


def format_storage(settings: Settings) -> list[str]:
    """Format each node's log dir once with the stable cluster id; returns those formatted now."""
    formatted: list[str] = []
    for node in kafka_nodes(settings):
        if (node.log_dir(settings) / "meta.properties").exists():
            continue
        node.log_dir(settings).mkdir(parents=True, exist_ok=True)
        cmd = java_command(
            settings,
            STORAGE_TOOL_MAIN,
            "format",
            "--cluster-id",
            settings.kafka.cluster_id,
            "--config",
            str(node.config_path(settings)),
            "--ignore-formatted",
            heap="256m",
        )
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"formatting {node.name} failed: {result.stdout}{result.stderr}")
        log.info(
            "kafka storage formatted node=%s cluster_id=%s", node.name, settings.kafka.cluster_id
        )
        formatted.append(node.name)
    return formatted
