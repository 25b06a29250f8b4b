"""The Kafka Connect peer's configuration: a standalone worker and the MongoDB sink (pure).

What the `connect` part runs beside Headwater's consumer, configured to do the same work on the
same brokers, records and MongoDB server: `_id` from the natural key (the string key hoisted into
`{"_id": key}` by `HoistField$Key`, then `ProvidedInKeyStrategy`), so a record read twice
overwrites itself; `ReplaceOne` upserts; a record the sink cannot write goes to a dead-letter
topic and the stream moves on; offsets committed after the writes (at-least-once).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from headwater.clients import SASL_MECHANISM, SECURITY_PROTOCOL
from headwater.settings import Settings

STANDALONE_MAIN = "org.apache.kafka.connect.cli.ConnectStandalone"
SINK_CONNECTOR = "com.mongodb.kafka.connect.MongoSinkConnector"
STRING_CONVERTER = "org.apache.kafka.connect.storage.StringConverter"
JSON_CONVERTER = "org.apache.kafka.connect.json.JsonConverter"
HOIST_KEY = "org.apache.kafka.connect.transforms.HoistField$Key"
KEY_ID_STRATEGY = "com.mongodb.kafka.connect.sink.processor.id.strategy.ProvidedInKeyStrategy"
REPLACE_ONE = "com.mongodb.kafka.connect.sink.writemodel.strategy.ReplaceOneDefaultStrategy"
SCRAM_LOGIN = "org.apache.kafka.common.security.scram.ScramLoginModule"
# The principal the worker logs in as: the admin (a super user), so no ACL stands between the
# sink and its group, its topics and its dead-letter topic; see README "Benchmarks".
CONNECT_ROLE = "admin"
# The worker's own clients do not inherit the top-level client settings: the sink task's consumer
# reads `consumer.*`, the dead-letter producer `producer.*` and its topic admin `admin.*`; the
# top level is the worker's own (it looks up the cluster id).
CLIENT_PREFIXES = ("", "consumer.", "producer.", "admin.")
# What Kafka's connect-standalone.sh gives the worker unless KAFKA_HEAP_OPTS says otherwise.
HEAP_MIN = "256m"
HEAP_MAX = "2g"


@dataclass(frozen=True)
class ConnectRun:
    """One trial of the peer: its connector, what it reads and where it writes."""

    name: str  # the connector's name; its sink's consumer group is connect-<name>
    collections: dict[str, str]  # topic -> collection it lands in
    database: str
    dead_letter_topic: str
    offsets_file: Path  # standalone keeps source offsets in a file (a sink commits to Kafka)
    rest_port: int
    batch: int = 2000  # records per poll: the batch Headwater's consumer writes at once

    @property
    def group(self) -> str:
        """The consumer group Connect gives a sink connector."""
        return f"connect-{self.name}"


def jaas_line(user: str, password: str) -> str:
    """sasl.jaas.config of a SCRAM login (credentials are the settings' allowed characters, none
    of which is a quote)."""
    return f'{SCRAM_LOGIN} required username="{user}" password="{password}";'


def client_security(settings: Settings, role: str = CONNECT_ROLE) -> dict[str, str]:
    """The SASL/SCRAM-SHA-512 login of every client the worker creates."""
    user, password = settings.kafka.credentials(role)
    login = {
        "security.protocol": SECURITY_PROTOCOL,
        "sasl.mechanism": SASL_MECHANISM,
        "sasl.jaas.config": jaas_line(user, password),
    }
    return {f"{prefix}{key}": value for prefix in CLIENT_PREFIXES for key, value in login.items()}


def worker_properties(settings: Settings, run: ConnectRun) -> dict[str, str]:
    """connect-standalone's worker.properties for one trial."""
    return {
        "bootstrap.servers": settings.kafka.bootstrap_servers,
        **client_security(settings),
        "key.converter": STRING_CONVERTER,
        "value.converter": JSON_CONVERTER,
        "value.converter.schemas.enable": "false",
        "offset.storage.file.filename": str(run.offsets_file),
        "listeners": f"http://127.0.0.1:{run.rest_port}",
        # The connector jar has no ServiceLoader manifest: only a scan of the classpath finds it.
        "plugin.discovery": "only_scan",
        # Polls as large as the consumer's batches, so both write the same batch sizes.
        "consumer.max.poll.records": str(run.batch),
        "consumer.auto.offset.reset": "earliest",
    }


def connector_properties(settings: Settings, run: ConnectRun) -> dict[str, str]:
    """The MongoDB sink's connector.properties for one trial."""
    k = settings.kafka
    props = {
        "name": run.name,
        "connector.class": SINK_CONNECTOR,
        # One task, as Headwater's one consumer process polls every partition in one loop.
        "tasks.max": "1",
        "topics": ",".join(run.collections),
        "connection.uri": settings.mongo.uri,
        "database": run.database,
        "key.converter": STRING_CONVERTER,
        "value.converter": JSON_CONVERTER,
        "value.converter.schemas.enable": "false",
        "transforms": "hoistKey",
        "transforms.hoistKey.type": HOIST_KEY,
        "transforms.hoistKey.field": "_id",
        "document.id.strategy": KEY_ID_STRATEGY,
        "writemodel.strategy": REPLACE_ONE,
        # Bad records are tolerated: the converter's and the sink's failures go to the DLQ.
        "errors.tolerance": "all",
        "errors.deadletterqueue.topic.name": run.dead_letter_topic,
        # The default is 3, which two brokers cannot hold (the bench creates the topic anyway).
        "errors.deadletterqueue.topic.replication.factor": str(k.replication_factor),
        "errors.deadletterqueue.context.headers.enable": "true",
    }
    for topic, collection in run.collections.items():
        props[f"topic.override.{topic}.collection"] = collection
    return props


def render_properties(props: dict[str, str]) -> str:
    """A Java .properties text: one key=value a line, backslashes escaped."""
    return "".join(f"{key}={value.replace(chr(92), chr(92) * 2)}\n" for key, value in props.items())


def worker_command(
    libs: Path,
    log4j_config: Path,
    worker_file: Path,
    connector_file: Path,
    *,
    heap_min: str = HEAP_MIN,
    heap_max: str = HEAP_MAX,
) -> list[str]:
    """argv of a standalone worker, with the JVM options Kafka's own scripts give it."""
    return [
        "java",
        f"-Xms{heap_min}",
        f"-Xmx{heap_max}",
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-XX:InitiatingHeapOccupancyPercent=35",
        "-XX:+ExplicitGCInvokesConcurrent",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={log4j_config}",
        "-cp",
        f"{libs}/*",
        STANDALONE_MAIN,
        str(worker_file),
        str(connector_file),
    ]
