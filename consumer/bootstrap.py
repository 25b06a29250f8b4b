"""Wire the real adapters (Kafka, MongoDB, HTTP) into the consumer service; nothing else."""

from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import dataclass

from pymongo import MongoClient
from pymongo.errors import PyMongoError

from consumer.config import ConsumerConfig, ConsumerSettings, build_config
from consumer.filters import load_rules
from consumer.http_server import StatusServer
from consumer.kafka_source import KafkaSource, consumer_config
from consumer.metrics import ConsumerMetrics
from consumer.mongo_store import MongoStore, describe, is_transient, mongo_client
from consumer.pipeline import PipelineContext, sources_by_topic
from consumer.service import ConsumerService, utc_now
from consumer.status import ConsumerState, backoff_delay
from db.bootstrap import bootstrap as bootstrap_db
from headwater.contracts import contract_for
from headwater.settings import Settings
from headwater.sources import load_sources, pipeline_topics

log = logging.getLogger(__name__)


@dataclass
class Consumer:
    """A wired consumer: the service, its status server and the client to close at the end."""

    service: ConsumerService
    server: StatusServer
    client: MongoClient
    config: ConsumerConfig


def pipeline_context(config: ConsumerConfig) -> PipelineContext:
    """The pure pipeline's inputs; fails at start if a topic's declared version has no contract."""
    sources = sources_by_topic(load_sources().values())
    for contract_topic in set(config.topic_map.values()):
        contract_for(contract_topic, sources[contract_topic].schema_version)
    return PipelineContext(
        topic_map=dict(config.topic_map),
        sources=sources,
        rules=load_rules(config.filters_file),
        max_value_bytes=config.max_value_bytes,
        raw_max_bytes=config.rejected_raw_max_bytes,
    )


def ensure_database(consumer: Consumer) -> bool:
    """Create missing collections and indexes, waiting (with backoff) while MongoDB is away.

    False when a stop was requested before MongoDB answered.
    """
    config, service = consumer.config, consumer.service
    attempt = 0
    while not service.stopping:
        try:
            bootstrap_db(consumer.client[config.mongo_db], update_validators=False)
            service.state.store_ok = True
            return True
        except PyMongoError as exc:
            if not is_transient(exc):
                raise
            service.state.store_ok = False  # /healthz says so while we wait
            delay = backoff_delay(attempt, config.backoff_initial_s, config.backoff_max_s)
            attempt += 1
            log.warning("MongoDB not ready for bootstrap, retry in %.1fs: %s", delay, describe(exc))
            deadline = time.monotonic() + delay
            while time.monotonic() < deadline and not service.stopping:
                time.sleep(0.2)
    return False


def build_consumer(
    settings: Settings, consumer_settings: ConsumerSettings, http_port: int | None = None
) -> Consumer:
    """The consumer of this process, wired to the real Kafka, MongoDB and HTTP port."""
    instance = f"{socket.gethostname()}-{os.getpid()}"
    config = build_config(settings, consumer_settings, pipeline_topics(), instance)
    if http_port is not None:
        config = ConsumerConfig(**{**config.__dict__, "http_port": http_port})
    ctx = pipeline_context(config)
    client = mongo_client(config.mongo_uri, config.mongo_timeout_ms)
    source = KafkaSource(
        consumer_config(
            config.bootstrap_servers,
            config.group_id,
            f"headwater-consumer-{config.instance}",
            config.session_timeout_ms,
            config.kafka_overrides,
        )
    )
    state = ConsumerState(
        instance=config.instance,
        group=config.group_id,
        host=socket.gethostname(),
        pid=os.getpid(),
        started_at=utc_now(),
    )
    metrics = ConsumerMetrics()
    service = ConsumerService(
        config, ctx, source, MongoStore(client[config.mongo_db]), state, metrics
    )
    server = StatusServer(config.http_host, config.http_port, service.health, metrics.registry)
    return Consumer(service, server, client, config)
