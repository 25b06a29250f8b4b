"""pipeline_health: every 5 minutes, one sensor per health check, all in parallel.

Checks (plugins/headwater_health): both brokers alive, no under-replicated or offline partitions,
every consumer member the stack runs (HEADWATER_CONSUMER_PROCESSES) heartbeating, consumer-group
lag per topic under a threshold (a dead member's partitions not taken over show here), newest
document of each continuously flowing source (default: devices) within its freshness bound, every
service's /healthz (each consumer member's too), MongoDB answering `ping` within
MONGO_PING_TIMEOUT_S (3 s), and every sources.yaml entry valid with no topic paused for want of
one (source_declarations). Each sensor pokes every HEADWATER_HEALTH_POKE_INTERVAL_S (30 s) in
reschedule mode (no worker slot held between pokes) for up to 3 minutes; every poke writes its
result to `health_checks`, so a red run says what is wrong and by how much, and a run that turned
green still shows the fault it saw (`failures`, `last_failure`). A paused or never-run source DAG
makes its source fail the freshness check: that is a source not flowing. `catchup=False`, one run
at a time: only the present state matters.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import Param, dag
from airflow.timetables.interval import DeltaDataIntervalTimetable
from headwater_health.sensors import HealthCheckSensor

from headwater.dag_defaults import START, default_args
from headwater.health_checks import (
    CHECK_BROKERS,
    CHECK_DECLARATIONS,
    CHECK_FRESHNESS,
    CHECK_HEALTHZ,
    CHECK_HEARTBEAT,
    CHECK_LAG,
    CHECK_MONGO,
    CHECK_PARTITIONS,
    DEFAULT_FRESHNESS_SOURCES,
)


@dag(
    dag_id="pipeline_health",
    description="Brokers, partitions, consumer heartbeat and lag, freshness, /healthz, Mongo ping",
    schedule=DeltaDataIntervalTimetable(timedelta(minutes=5)),
    start_date=START,
    catchup=False,
    max_active_runs=1,
    # One retry, no backoff: a health run only matters while it is current.
    default_args={**default_args(retries=1, retry_delay_s=30), "retry_exponential_backoff": False},
    tags=["headwater", "health"],
    # Params reach the sensors as numbers and lists, not their text.
    render_template_as_native_obj=True,
    params={
        "max_lag_per_topic": Param(1000, type="integer", minimum=0),
        "freshness_sources": Param(list(DEFAULT_FRESHNESS_SOURCES), type="array"),
    },
    doc_md=__doc__,
)
def pipeline_health() -> None:
    HealthCheckSensor(task_id=CHECK_BROKERS, check=CHECK_BROKERS)
    HealthCheckSensor(task_id=CHECK_PARTITIONS, check=CHECK_PARTITIONS)
    HealthCheckSensor(task_id=CHECK_HEARTBEAT, check=CHECK_HEARTBEAT)
    HealthCheckSensor(
        task_id=CHECK_LAG,
        check=CHECK_LAG,
        check_params={"max_lag_per_topic": "{{ params.max_lag_per_topic }}"},
    )
    HealthCheckSensor(
        task_id=CHECK_FRESHNESS,
        check=CHECK_FRESHNESS,
        check_params={"sources": "{{ params.freshness_sources }}"},
    )
    HealthCheckSensor(task_id=CHECK_HEALTHZ, check=CHECK_HEALTHZ)
    HealthCheckSensor(task_id=CHECK_MONGO, check=CHECK_MONGO)
    HealthCheckSensor(task_id=CHECK_DECLARATIONS, check=CHECK_DECLARATIONS)


pipeline_health()
