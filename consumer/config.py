"""The consumer's knobs: the plain config the service takes, built from `Settings.consumer`."""

from __future__ import annotations

from dataclasses import dataclass, field

from headwater.settings import ConsumerSettings, Settings
from headwater.sources import Catalog


def parse_topic_map(spec: str, declared: list[str] | None) -> dict[str, str]:
    """Actual topic -> declared topic (whose contract applies) from the `topics` setting.

    Empty means every declared topic under its own name. ValueError names an unknown topic
    (unless `declared` is None: then only the syntax is checked).
    """
    if not spec.strip():
        return {t: t for t in declared}
    mapping: dict[str, str] = {}
    for item in (p.strip() for p in spec.split(",")):
        if not item:
            continue
        actual, _, contract = item.partition("=")
        actual, contract = actual.strip(), (contract or actual).strip()
        if declared is not None and contract not in declared:
            raise ValueError(
                f"topic {contract!r} is not declared in sources.yaml; "
                f"declared: {', '.join(declared)}"
            )
        if actual in mapping:
            raise ValueError(f"topic {actual!r} is listed twice")
        mapping[actual] = contract
    if not mapping:
        raise ValueError("no topics to consume")
    return mapping


def resolve_topics(spec: str, catalog: Catalog) -> tuple[dict[str, str], dict[str, str]]:
    """(topic map, paused) for the catalog as it is now: topics whose source is declared and
    valid are read; the others are paused (actual topic -> why), their messages left in Kafka
    until the declaration is fixed."""
    declared = catalog.topics
    paused = dict(catalog.paused_topics) if not spec.strip() else {}
    if not spec.strip():
        return {t: t for t in declared}, paused
    mapping = parse_topic_map(spec, None)
    readable: dict[str, str] = {}
    for actual, contract in mapping.items():
        if contract in declared:
            readable[actual] = contract
        else:
            why = catalog.paused_topics.get(contract) or (
                f"topic {contract!r} is not declared in sources.yaml; "
                f"declared: {', '.join(declared) or 'none'}"
            )
            paused[actual] = why
    return readable, paused


@dataclass(frozen=True)
class ConsumerConfig:
    """Everything the service needs to know, as plain values (defaults are production's)."""

    topic_map: dict[str, str]
    group_id: str
    bootstrap_servers: str
    mongo_uri: str
    mongo_db: str
    http_host: str = "127.0.0.1"
    http_port: int = 8001
    instance: str = "consumer"
    batch_max_messages: int = 2000
    batch_max_wait_s: float = 0.5
    # Messages buffered per partition before it is paused (0: 2 x batch_max_messages).
    partition_buffer_messages: int = 0
    # Write batch N on a writer thread while batch N+1 is polled and planned.
    write_overlap: bool = True
    heartbeat_interval_s: float = 5.0
    stale_after_s: float = 30.0
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 10.0
    shutdown_grace_s: float = 20.0
    max_value_bytes: int = 1_048_576
    rejected_raw_max_bytes: int = 65_536
    session_timeout_ms: int = 10_000
    mongo_timeout_ms: int = 5_000
    kafka_overrides: dict[str, str | int | bool] = field(default_factory=dict)
    # The `topics` setting as written: resolved again whenever the declarations change.
    topics_spec: str = ""
    # How often the declaration files are checked for changes (a stat per file).
    reload_interval_s: float = 5.0

    @property
    def topics(self) -> list[str]:
        return sorted(self.topic_map)


def build_config(
    settings: Settings, consumer: ConsumerSettings, declared: list[str], instance: str
) -> ConsumerConfig:
    """The service config from Headwater's settings and the consumer's own."""
    return ConsumerConfig(
        # Syntax only here: whether each topic's source is declared (and valid) is decided by
        # resolve_topics, again on every change of the declarations.
        topic_map=parse_topic_map(consumer.topics, None)
        if consumer.topics.strip()
        else {t: t for t in declared},
        topics_spec=consumer.topics,
        group_id=consumer.group or settings.kafka.consumer_group,
        bootstrap_servers=settings.kafka.bootstrap_servers,
        mongo_uri=settings.mongo.uri,
        mongo_db=settings.mongo.db,
        http_host=settings.services.host,
        http_port=settings.services.consumer_port,
        instance=consumer.instance or instance,
        batch_max_messages=consumer.batch_max_messages,
        batch_max_wait_s=consumer.batch_max_wait_s,
        partition_buffer_messages=consumer.partition_buffer_messages,
        write_overlap=consumer.write_overlap,
        heartbeat_interval_s=consumer.heartbeat_interval_s,
        stale_after_s=consumer.stale_after_s,
        backoff_initial_s=consumer.backoff_initial_s,
        backoff_max_s=consumer.backoff_max_s,
        shutdown_grace_s=consumer.shutdown_grace_s,
        max_value_bytes=consumer.max_value_bytes,
        rejected_raw_max_bytes=consumer.rejected_raw_max_bytes,
        session_timeout_ms=consumer.session_timeout_ms,
        mongo_timeout_ms=consumer.mongo_timeout_ms,
    )
