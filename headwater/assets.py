"""The assets Headwater's DAGs produce and consume: what Airflow knows about the data.

- One asset per MongoDB collection that holds source records (`readings`, `user_events`, ...):
  each ingest DAG's reconcile task emits an event on its source's collection once the window
  has landed, with the window in the event's extra.
- `late_readings`: fed by an AssetWatcher on the late-data notices topic (the Kafka provider's
  message-queue trigger): one event per notice the consumer published (headwater.late_data).
- `readings_rollup`: emitted by `rollup_readings` after each recompute.

`rollup_readings` is scheduled on `readings | late_readings`, so the asset graph in the UI reads
ingest_<source> -> readings -> rollup_readings -> readings_rollup, with late_readings beside it.

Only the DAG files import this (it needs Airflow's task SDK and the Kafka provider).
"""

from __future__ import annotations

from airflow.providers.apache.kafka.triggers.msg_queue import KafkaMessageQueueTrigger
from airflow.sdk import Asset, AssetWatcher

from headwater.contracts import Collections
from headwater.settings import get_settings

# The Airflow connection the watcher reads with (headwater.clients.airflow_connections).
LATE_NOTICES_CONNECTION = "kafka_late_notices"
LATE_READINGS_NAME = "late_readings"


def collection_asset(collection: str) -> Asset:
    """The asset of one MongoDB collection of the pipeline's database."""
    return Asset(name=collection, uri=f"headwater://mongodb/{collection}", group="mongodb")


def late_readings_asset() -> Asset:
    """Late readings, event-driven: an asset event per notice on the notices topic."""
    settings = get_settings()
    trigger = KafkaMessageQueueTrigger(
        topics=[settings.kafka.late_notices_topic],
        kafka_config_id=LATE_NOTICES_CONNECTION,
        apply_function="headwater.late_data.notice_event",
        # Seconds: how long a poll waits, and the pause after a message that is not a notice.
        poll_timeout=1,
        poll_interval=1,
    )
    return Asset(
        name=LATE_READINGS_NAME,
        uri=f"headwater://kafka/{settings.kafka.late_notices_topic}",
        group="kafka",
        watchers=[AssetWatcher(name="late_readings_notices", trigger=trigger)],
    )


READINGS = collection_asset(Collections.READINGS)
READINGS_ROLLUP = collection_asset(Collections.READINGS_ROLLUP)
