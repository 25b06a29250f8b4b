"""The local KRaft cluster: node configs (pure) and storage formatting."""

from __future__ import annotations

import logging
import subprocess
from dataclasses import dataclass
from pathlib import Path

from headwater import kafka_access
from headwater.clients import SASL_MECHANISM
from headwater.settings import KAFKA_ROLES, REPO_ROOT, Settings

log = logging.getLogger(__name__)

CONTROLLER_NODE_ID = 1
KAFKA_MAIN = "kafka.Kafka"
STORAGE_TOOL_MAIN = "kafka.tools.StorageTool"
LOG4J2_CONFIG = REPO_ROOT / "infra" / "kafka" / "log4j2.properties"
AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
PLAIN_LOGIN = "org.apache.kafka.common.security.plain.PlainLoginModule"
SCRAM_LOGIN = "org.apache.kafka.common.security.scram.ScramLoginModule"
# Written beside meta.properties once a node is formatted with the SCRAM credentials: a log dir
# without it was formatted before the cluster required authentication.
SASL_MARKER = "headwater-sasl"


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


def _jaas(module: str, **options: str) -> str:
    values = " ".join(f'{key}="{value}"' for key, value in options.items())
    return f"{module} required {values};"


def security_config(settings: Settings) -> dict[str, object]:
    """Authentication and authorization of every node.

    Clients and brokers talk on the BROKER listener with SASL/SCRAM-SHA-512 (credentials live in
    the cluster metadata: the storage tool writes the first ones, kafka_access the rest). The
    brokers reach the controller with SASL/PLAIN as the broker principal (a static credential:
    the controller must admit brokers before any metadata exists). StandardAuthorizer denies
    whatever no ACL allows; the broker and admin principals are super users.
    """
    user, password = settings.kafka.credentials("broker")
    return {
        "listener.security.protocol.map": "CONTROLLER:SASL_PLAINTEXT,BROKER:SASL_PLAINTEXT",
        "sasl.mechanism.controller.protocol": "PLAIN",
        "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
        # Server side on the controller (user_<name>), client side on the brokers.
        "listener.name.controller.plain.sasl.jaas.config": _jaas(
            PLAIN_LOGIN, username=user, password=password, **{f"user_{user}": password}
        ),
        "authorizer.class.name": AUTHORIZER,
        "super.users": kafka_access.super_users(settings),
        "allow.everyone.if.no.acl.found": "false",
    }


def node_config(settings: Settings, node: KafkaNode) -> str:
    """The server.properties text for one node (it holds the broker principal's password: the
    file is written readable by its owner only)."""
    k = settings.kafka
    common: dict[str, object] = {
        "node.id": node.node_id,
        "controller.quorum.voters": f"{CONTROLLER_NODE_ID}@{k.host}:{k.controller_port}",
        "controller.listener.names": "CONTROLLER",
        **security_config(settings),
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
    user, password = k.credentials("broker")
    return _properties(
        {
            "process.roles": "broker",
            **common,
            "listeners": f"BROKER://{k.host}:{node.port}",
            "advertised.listeners": f"BROKER://{k.host}:{node.port}",
            "inter.broker.listener.name": "BROKER",
            "listener.name.broker.sasl.enabled.mechanisms": SASL_MECHANISM,
            "sasl.mechanism.inter.broker.protocol": SASL_MECHANISM,
            "listener.name.broker.scram-sha-512.sasl.jaas.config": _jaas(
                SCRAM_LOGIN, username=user, password=password
            ),
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
        path.touch(mode=0o600)
        path.chmod(0o600)
        path.write_text(node_config(settings, node))


def format_storage(settings: Settings) -> list[str]:
    """Format each node's log dir once with the stable cluster id; returns those formatted now."""
    formatted: list[str] = []
    for node in kafka_nodes(settings):
        log_dir = node.log_dir(settings)
        if (log_dir / "meta.properties").exists():
            if not (log_dir / SASL_MARKER).exists():
                raise RuntimeError(
                    f"{log_dir} was formatted before Kafka required authentication, so its "
                    "metadata holds no SCRAM credentials and the brokers could not log in to "
                    "each other. Stop the stack and remove "
                    f"{settings.stack.data_dir / 'kafka'} (Kafka's buffered messages only; "
                    "MongoDB keeps everything stored), then start it again."
                )
            continue
        log_dir.mkdir(parents=True, exist_ok=True)
        scram: list[str] = []
        for role in KAFKA_ROLES:
            scram += ["--add-scram", kafka_access.scram_argument(settings, role)]
        cmd = java_command(
            settings,
            STORAGE_TOOL_MAIN,
            "format",
            "--cluster-id",
            settings.kafka.cluster_id,
            "--config",
            str(node.config_path(settings)),
            "--ignore-formatted",
            *scram,
            heap="256m",
        )
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            # The output names the failing option, never the passwords of the argument list.
            raise RuntimeError(f"formatting {node.name} failed: {result.stdout}{result.stderr}")
        (log_dir / SASL_MARKER).write_text("SCRAM-SHA-512 credentials written at format time\n")
        log.info(
            "kafka storage formatted node=%s cluster_id=%s", node.name, settings.kafka.cluster_id
        )
        formatted.append(node.name)
    return formatted
