"""Wire the real adapters (Kafka, MongoDB, HTTP) into the consumer service; nothing else."""

from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import dataclass

from pymongo import MongoClient
from pymongo.errors import PyMongoError
from tenacity import RetryCallState, Retrying, retry_if_exception

from consumer.config import ConsumerConfig, ConsumerSettings, build_config, resolve_topics
from consumer.http_server import StatusServer
from consumer.kafka_source import KafkaSource, consumer_config
from consumer.late_notices import KafkaNoticeSink, LateNotifier, MongoRollupIndex, NotifyingStore
from consumer.metrics import ConsumerMetrics
from consumer.mongo_store import MongoStore, describe, is_transient, mongo_client
from consumer.pipeline import PipelineContext
from consumer.service import ConsumerService, Reloader, utc_now
from consumer.status import ConsumerState
from db.bootstrap import bootstrap as bootstrap_db
from db.schema import schema_of
from headwater.clients import backoff, kafka_security, producer_config
from headwater.kafka_access import create_topics
from headwater.kafka_admin import admin_client
from headwater.settings import Settings
from headwater.sources import Catalog, load_catalog

log = logging.getLogger(__name__)


@dataclass
class Consumer:
    """A wired consumer: the service, its status server and the client to close at the end."""

    service: ConsumerService
    server: StatusServer
    client: MongoClient
    config: ConsumerConfig


def pipeline_context(config: ConsumerConfig, catalog: Catalog) -> tuple[PipelineContext, dict]:
    """The pure pipeline's inputs for the declarations as they are, and the paused topics (topic
    -> why): an invalid or missing declaration pauses its own topic, never the consumer."""
    topic_map, paused = resolve_topics(config.topics_spec, catalog)
    ctx = PipelineContext(
        topic_map=topic_map,
        sources=catalog.by_topic(),
        max_value_bytes=config.max_value_bytes,
        raw_max_bytes=config.rejected_raw_max_bytes,
    )
    return ctx, paused


def prepare_topics(settings: Settings, client: MongoClient, db_name: str):  # noqa: ANN201
    """What makes a newly declared topic readable: the topic in Kafka and its ACLs (the producer
    writes it, this consumer reads it), then its collection, validator and indexes in MongoDB
    (all idempotent; raise when a service is away). Creating topics and ACLs is the admin
    principal's job: only this step uses it, the reading is the consumer principal's."""

    def prepare(catalog: Catalog, topics: list[str]) -> None:
        created = create_topics(admin_client(settings), settings, topics)
        report = bootstrap_db(
            client[db_name], update_validators=True, schema=schema_of(catalog.sources.values())
        )
        log.info(
            "declarations prepared topics=%s created_topics=%s created_collections=%s",
            ",".join(topics),
            ",".join(created) or "-",
            ",".join(report.created) or "-",
        )

    return prepare


def ensure_database(consumer: Consumer) -> bool:
    """Create missing collections and indexes, waiting (with backoff) while MongoDB is away.

    False when a stop was requested before MongoDB answered.
    """
    config, service = consumer.config, consumer.service

    def bootstrap_once() -> bool:
        if service.stopping:
            return False
        bootstrap_db(consumer.client[config.mongo_db], update_validators=False)
        service.state.store_ok = True
        return True

    def unavailable(_: RetryCallState) -> None:
        service.state.store_ok = False  # /healthz says so while we wait

    def waiting(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        reason = describe(error) if isinstance(error, PyMongoError) else repr(error)
        log.warning(
            "MongoDB not ready for bootstrap, retry in %.1fs: %s", state.upcoming_sleep, reason
        )

    def sleep_unless_stopping(seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not service.stopping:
            time.sleep(0.2)

    retrying = Retrying(
        retry=retry_if_exception(lambda e: isinstance(e, PyMongoError) and is_transient(e)),
        wait=backoff(config.backoff_initial_s, config.backoff_max_s),
        stop=lambda _: service.stopping,
        after=unavailable,
        before_sleep=waiting,
        sleep=sleep_unless_stopping,
        retry_error_callback=lambda _: False,
    )
    return bool(retrying(bootstrap_once))


def build_consumer(
    settings: Settings, consumer_settings: ConsumerSettings, http_port: int | None = None
) -> Consumer:
    """The consumer of this process, wired to the real Kafka, MongoDB and HTTP port."""
    instance = f"{socket.gethostname()}-{os.getpid()}"
    config = build_config(settings, consumer_settings, load_catalog(settings).topics, instance)
    if http_port is not None:
        config = ConsumerConfig(**{**config.__dict__, "http_port": http_port})
    catalog = load_catalog(settings)
    ctx, paused = pipeline_context(config, catalog)
    client = mongo_client(config.mongo_uri, config.mongo_timeout_ms)
    source = KafkaSource(
        consumer_config(
            config.bootstrap_servers,
            config.group_id,
            f"headwater-consumer-{config.instance}",
            config.session_timeout_ms,
            config.kafka_overrides,
            security=kafka_security(settings, "consumer"),
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
    state.paused_topics = paused
    service = ConsumerService(
        config,
        ctx,
        source,
        NotifyingStore(
            MongoStore(client[config.mongo_db]),
            LateNotifier(
                MongoRollupIndex(client[config.mongo_db]),
                KafkaNoticeSink(
                    settings.kafka.late_notices_topic,
                    producer_config(settings, role="consumer"),
                ),
            ),
        ),
        state,
        metrics,
        catalog=Reloader(
            lambda: load_catalog(settings),
            lambda c: pipeline_context(config, c),
            prepare_topics(settings, client, config.mongo_db),
            first=catalog,
        ),
    )
    server = StatusServer(config.http_host, config.http_port, service.health, metrics.registry)
    return Consumer(service, server, client, config)
