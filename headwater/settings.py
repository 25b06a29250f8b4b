"""The one place Headwater reads its environment: hosts, ports, paths and credentials.

Every value can be overridden by an environment variable or a `.env` file in the working directory
(variable names are the field names with the group's prefix, upper-cased, e.g. `KAFKA_BROKER1_PORT`,
`MONGO_URI`, `AIRFLOW_UI_PASSWORD`). Read it through `get_settings()`, never at import time.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[1]


# The Kafka principals: the brokers' own, then one per client role.
KAFKA_ROLES = ("broker", "admin", "producer", "consumer", "health")
_CREDENTIAL_CHARS = "letters, digits and . _ - ~ ! @ # $ % ^ & * + = : /"
_CREDENTIAL = re.compile(r"[A-Za-z0-9._\-~!@#$%^&*+=:/]+")


def _config(prefix: str) -> SettingsConfigDict:
    return SettingsConfigDict(env_prefix=prefix, env_file=".env", extra="ignore")


class StackSettings(BaseSettings):
    """Where the local stack keeps its caches, data, logs and pid files."""

    model_config = _config("STACK_")

    name: str = "headwater"
    # Downloaded jars and built binaries; shared by every stack instance of this checkout.
    cache_dir: Path = REPO_ROOT / ".cache"
    # Data, logs, pid files and generated configs of one stack instance.
    run_dir: Path = REPO_ROOT / ".run" / "dev"
    host: str = "127.0.0.1"
    supervisor_port: int = 9001
    start_timeout_s: float = 300.0

    @field_validator("cache_dir", "run_dir")
    @classmethod
    def _relative_to_repo(cls, value: Path) -> Path:
        # A relative path in env or .env means "inside this checkout", wherever the command runs.
        return value if value.is_absolute() else REPO_ROOT / value

    @property
    def data_dir(self) -> Path:
        return self.run_dir / "data"

    @property
    def log_dir(self) -> Path:
        return self.run_dir / "logs"


class KafkaSettings(BaseSettings):
    """The KRaft cluster: one controller, two brokers, and the pipeline's topic defaults."""

    model_config = _config("KAFKA_")

    host: str = "127.0.0.1"
    # Set when the brokers are not all on `host` (e.g. containers): "broker1:9092,broker2:9094".
    bootstrap_override: str | None = Field(default=None, validation_alias="KAFKA_BOOTSTRAP_SERVERS")
    broker1_port: int = 9092
    broker2_port: int = 9094
    controller_port: int = 9093
    # A stable id so that a restart reuses the formatted log dirs (22 chars of url-safe base64).
    cluster_id: str = "RjWcKAFoW7CKlbsebDgibQ"
    heap: str = "512m"
    partitions: int = 3
    replication_factor: int = 2
    # One broker may be lost while acks=all still waits for every replica that is in sync.
    min_insync_replicas: int = 1
    consumer_group: str = "headwater-consumer"
    # Late data: the consumer publishes a notice here when it stores readings whose 1-minute
    # window already has a rollup; Airflow's AssetWatcher reads it in this group (dags/rollups.py).
    late_notices_topic: str = "headwater-late-readings"
    late_watch_group: str = "headwater-late-watch"
    # Producer: how long a message may stay undelivered before the produce fails, and its batching.
    delivery_timeout_ms: int = 120_000
    compression: str = "lz4"
    linger_ms: int = 20
    # SASL/SCRAM-SHA-512 principals, one per role (ACLs in headwater/kafka_access.py say what
    # each may do). Passwords: set every KAFKA_*_PASSWORD in `.env` outside a laptop; the
    # defaults only make a fresh checkout work. The broker principal is the brokers' own
    # (inter-broker and broker-to-controller traffic); admin is the stack's and the tests'.
    broker_user: str = "headwater-broker"
    broker_password: SecretStr = SecretStr("broker-dev-secret")
    admin_user: str = "headwater-admin"
    admin_password: SecretStr = SecretStr("admin-dev-secret")
    producer_user: str = "headwater-producer"
    producer_password: SecretStr = SecretStr("producer-dev-secret")
    consumer_user: str = "headwater-consumer"
    consumer_password: SecretStr = SecretStr("consumer-dev-secret")
    health_user: str = "headwater-health"
    health_password: SecretStr = SecretStr("health-dev-secret")
    # SCRAM's iteration count for the credentials the stack creates (Kafka's minimum is 4096).
    scram_iterations: int = 8192

    @field_validator("broker_user", "admin_user", "producer_user", "consumer_user", "health_user")
    @classmethod
    def _plain_user(cls, value: str) -> str:
        if not _CREDENTIAL.fullmatch(value):
            raise ValueError(f"Kafka user names may use only {_CREDENTIAL_CHARS}")
        return value

    @field_validator(
        "broker_password",
        "admin_password",
        "producer_password",
        "consumer_password",
        "health_password",
    )
    @classmethod
    def _plain_password(cls, value: SecretStr) -> SecretStr:
        # They are written into JAAS lines and the storage tool's SCRAM argument, where quotes,
        # backslashes, commas and brackets would need escaping that Kafka's parsers differ on.
        if not 8 <= len(value.get_secret_value()) <= 128 or not _CREDENTIAL.fullmatch(
            value.get_secret_value()
        ):
            raise ValueError(f"Kafka passwords need 8-128 characters of {_CREDENTIAL_CHARS}")
        return value

    def producer_config(self) -> dict[str, str | int | bool]:
        """librdkafka settings of every Headwater producer: nothing lost, nothing doubled."""
        return {
            "bootstrap.servers": self.bootstrap_servers,
            "acks": "all",
            # Off by default in confluent-kafka: without it a retried batch can be written twice.
            "enable.idempotence": True,
            "compression.type": self.compression,
            "linger.ms": self.linger_ms,
            "message.timeout.ms": self.delivery_timeout_ms,
        }

    def credentials(self, role: str) -> tuple[str, str]:
        """(user, password) of a role: "broker", "admin", "producer", "consumer" or "health"."""
        if role not in KAFKA_ROLES:
            raise ValueError(f"unknown Kafka role {role!r} (one of {', '.join(KAFKA_ROLES)})")
        password: SecretStr = getattr(self, f"{role}_password")
        return getattr(self, f"{role}_user"), password.get_secret_value()

    @property
    def broker_ports(self) -> list[int]:
        return [self.broker1_port, self.broker2_port]

    @property
    def bootstrap_servers(self) -> str:
        if self.bootstrap_override:
            return self.bootstrap_override
        return ",".join(f"{self.host}:{port}" for port in self.broker_ports)


class MongoSettings(BaseSettings):
    """MongoDB: `MONGO_URI` points at any server; unset, the stack runs its own on host:port."""

    model_config = _config("MONGO_")

    uri_override: str | None = Field(default=None, validation_alias="MONGO_URI")
    host: str = "127.0.0.1"
    port: int = 27017
    db: str = "headwater"
    # The embedded server's heap: its page cache takes a quarter, and each operation's blocking
    # stages (unindexed sorts, $group tables) at most op_memory_mib; everything else streams.
    heap: str = "768m"
    # Memory one operation (a query's matches, a sort, an aggregate's input) may use in the
    # embedded server before it fails that operation instead of exhausting the heap.
    op_memory_mib: int = Field(default=128, ge=1)
    # ...and how long one find/aggregate command may compute before it fails with MaxTimeMSExpired
    # (a client's shorter maxTimeMS wins); 0 = no limit.
    op_time_limit_s: int = Field(default=110, ge=0)
    # How long a `ping` may take before the server counts as not answering: `make status`, the
    # pipeline_health mongo_ping check and the watchdog all use this bound.
    ping_timeout_s: float = 3.0
    # The watchdog (infra/watchdog.py, embedded server only) pings every interval; after this many
    # consecutive failures of a RUNNING server it SIGKILLs it so supervisord restarts it. A server
    # that has not answered once since it started is left alone for start_grace_s (a large data
    # file takes a while to open).
    watchdog_interval_s: float = 5.0
    watchdog_failures: int = 3
    watchdog_start_grace_s: float = 120.0

    @property
    def embedded(self) -> bool:
        """True when the stack must start its own MongoDB-wire server."""
        return not self.uri_override

    @property
    def uri(self) -> str:
        return self.uri_override or f"mongodb://{self.host}:{self.port}/"


class AirflowSettings(BaseSettings):
    """Airflow 3: API server + UI, scheduler, dag-processor and triggerer."""

    model_config = _config("AIRFLOW_UI_")

    host: str = "127.0.0.1"
    port: int = 8080
    user: str = "admin"
    password: SecretStr = SecretStr("admin")
    # Each parallelism slot of the LocalExecutor is a forked worker (~130 MB): sized for 2 cores.
    parallelism: int = 4
    # An existing metadata DB (any SQLAlchemy URL Airflow supports). Unset: the stack runs its own
    # PostgreSQL (AirflowDbSettings). SQLite is possible but its single writer lock makes
    # `airflow backfill create` fail with "database is locked" while the scheduler writes.
    sql_alchemy_conn: str | None = None
    # `make up` unpauses the pipeline's DAGs so data flows at once (the test stack keeps them
    # paused: tests run DAGs themselves and scheduled runs would only add noise).
    unpause_dags: bool = True

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"


class AirflowDbSettings(BaseSettings):
    """AIRFLOW_DB_*: the PostgreSQL server the stack runs as Airflow's metadata DB (unless
    AIRFLOW_UI_SQL_ALCHEMY_CONN names another database)."""

    model_config = _config("AIRFLOW_DB_")

    host: str = "127.0.0.1"
    # Not 5432: Debian's postgresql package starts a system cluster there.
    port: int = 5433
    user: str = "airflow"
    password: SecretStr = SecretStr("airflow")
    name: str = "airflow"
    # PostgreSQL refuses to run as root: a root-run stack runs it as this OS user instead.
    os_user: str = "postgres"
    # Where initdb/postgres live; unset = PATH, else the newest /usr/lib/postgresql/*/bin.
    bin_dir: Path | None = None


class ServiceSettings(BaseSettings):
    """Headwater's own HTTP services."""

    model_config = _config("HEADWATER_")

    host: str = "127.0.0.1"
    flask_port: int = 5000
    external_api_port: int = 5001
    # The first consumer member's /healthz and /metrics; member i (1-based) listens on
    # consumer_port + i - 1 (see Settings.consumer_members).
    consumer_port: int = 8001
    # Write routes of the user-events API require this in the X-API-Key header.
    api_key: SecretStr = SecretStr("dev-key")
    # Events API limits: events per POST /events/batch and bytes per request body.
    events_batch_limit: int = 500
    events_max_body_bytes: int = 1_048_576
    # Slow clients: a connection that has not sent a whole request head this many seconds after
    # it opened (or after its previous answer) is closed; a body not received in full this many
    # seconds after its head is answered 408. Either way the connection is cut off.
    events_header_timeout_s: float = Field(default=10.0, gt=0)
    events_body_timeout_s: float = Field(default=15.0, gt=0)
    # Connections each events-API worker serves at once (slow ones included: past this a
    # connection waits in the listen backlog).
    events_worker_connections: int = Field(default=1000, ge=1)
    # Group commit: the most events one shared write transaction (one fsync) holds; the writes of
    # a worker that arrive while it commits wait for the next. 1 = a transaction per request.
    events_group_commit_max_events: int = Field(default=2000, ge=1)
    # The external-API stand-in: its data folder, default page size (a BATCH_SIZE) and maximum.
    standin_data_dir: Path = REPO_ROOT / "producer" / "standin" / "data"
    # A second folder the stand-in also serves (files of sources that are not in git, or a test's
    # own); a route name in both folders is served from standin_data_dir.
    standin_extra_data_dir: Path | None = None
    page_size: int = 500
    max_page_size: int = 5000
    # Devices of the deterministic simulator (spread over the four device types).
    simulator_devices: int = 8
    gunicorn_workers: int = 2
    # pipeline_health sensors poke this often (reschedule mode: each poke is a short task run).
    health_poke_interval_s: float = 30.0

    # Every declared source: sources.yaml, plus (optional) a second file of local entries that is
    # not in git. An entry name in both files is a problem of that entry, reported, not merged.
    sources_file: Path = REPO_ROOT / "sources.yaml"
    sources_extra_file: Path | None = None

    @field_validator(
        "standin_data_dir", "standin_extra_data_dir", "sources_file", "sources_extra_file"
    )
    @classmethod
    def _relative_to_repo(cls, value: Path | None) -> Path | None:
        if value is None:
            return None
        return value if value.is_absolute() else REPO_ROOT / value


class ConsumerSettings(BaseSettings):
    """HEADWATER_CONSUMER_*: what the consumer reads and how it batches, retries and reports."""

    model_config = _config("HEADWATER_CONSUMER_")

    # "" = every topic of sources.yaml. Otherwise comma-separated topics, each either a declared
    # topic or "actual=declared" to read another topic name under a declared topic's contract.
    topics: str = ""
    # "" = settings.kafka.consumer_group.
    group: str = ""
    # A name for this member in pipeline_status ("" = host-pid). The stack sets it per member.
    instance: str = ""
    # Members of the group the local stack runs under supervisord (programs consumer-1 ... -N,
    # instances of the same names); also how many live members pipeline_health expects.
    processes: int = Field(default=2, ge=1)
    batch_max_messages: int = Field(default=2000, ge=1)
    batch_max_wait_s: float = 0.5
    # Messages the fair poller buffers per partition before pausing it (0 = 2 x batch_max_messages).
    partition_buffer_messages: int = Field(default=0, ge=0)
    # Write batch N on a writer thread while batch N+1 is polled and planned (false: one at a
    # time, as before).
    write_overlap: bool = True
    heartbeat_interval_s: float = 5.0
    # /healthz answers 503 when the loop has not ticked for this long.
    stale_after_s: float = 30.0
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 10.0
    # On SIGTERM with MongoDB down, how long to keep retrying the last batch before giving up.
    shutdown_grace_s: float = 20.0
    max_value_bytes: int = 1_048_576
    rejected_raw_max_bytes: int = 65_536
    session_timeout_ms: int = 10_000
    mongo_timeout_ms: int = 5_000


class ArchiveSettings(BaseSettings):
    """HEADWATER_ARCHIVE_*: where the daily Parquet archives go and how long MongoDB keeps raw
    records (headwater/archive.py, dags/archive.py)."""

    model_config = _config("HEADWATER_ARCHIVE_")

    # A local folder (relative: inside this checkout) or any pyarrow/fsspec filesystem URL, e.g.
    # s3://bucket/prefix. "" = <run_dir>/archive.
    root: str = ""
    # Per collection: "readings=7,user_events=30,matches=off" (days, or off = kept forever).
    retention: str = ""
    # Collections not named above: auto = 7 days on the embedded server, off with MONGO_URI;
    # or a number of days, or off.
    retention_default: str = "auto"
    # How long after a day ends its archive run waits, so late pulls and the consumer's lag land
    # first (backfills of older days do not wait).
    grace_s: float = Field(default=1800.0, ge=0)
    # Documents read from MongoDB per batch while a day is archived.
    batch_docs: int = Field(default=20_000, ge=1)
    # Where `make duckdb` exports the days not archived yet ("" = <run_dir>/hot-export).
    hot_export_dir: str = ""


class ConsumerMember(NamedTuple):
    """One consumer group member the stack runs: its program and instance name, and where its
    /healthz and /metrics answer."""

    name: str
    port: int
    url: str


class Settings(BaseSettings):
    """All of Headwater's settings, grouped by the part they configure."""

    model_config = _config("HEADWATER_")

    stack: StackSettings = Field(default_factory=StackSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    mongo: MongoSettings = Field(default_factory=MongoSettings)
    airflow: AirflowSettings = Field(default_factory=AirflowSettings)
    airflow_db: AirflowDbSettings = Field(default_factory=AirflowDbSettings)
    services: ServiceSettings = Field(default_factory=ServiceSettings)
    consumer: ConsumerSettings = Field(default_factory=ConsumerSettings)
    archive: ArchiveSettings = Field(default_factory=ArchiveSettings)

    @property
    def archive_root(self) -> str:
        """The archive root: a URL as set, a relative folder inside this checkout, or the stack's
        <run_dir>/archive."""
        root = self.archive.root.strip()
        if not root:
            return str(self.stack.run_dir / "archive")
        if "://" in root or Path(root).is_absolute():
            return root
        return str(REPO_ROOT / root)

    @property
    def hot_export_dir(self) -> Path:
        """Where `make duckdb` writes the days that are not archived yet."""
        folder = self.archive.hot_export_dir.strip()
        if not folder:
            return self.stack.run_dir / "hot-export"
        return Path(folder) if Path(folder).is_absolute() else REPO_ROOT / folder

    def consumer_members(self) -> list[ConsumerMember]:
        """The stack's consumer members: consumer-1 on consumer_port, consumer-2 on the next
        port, ... (HEADWATER_CONSUMER_PROCESSES of them), all in the same group."""
        host, first = self.services.host, self.services.consumer_port
        return [
            ConsumerMember(f"consumer-{i}", first + i - 1, f"http://{host}:{first + i - 1}")
            for i in range(1, self.consumer.processes + 1)
        ]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Read the settings from the environment and `.env` once per process."""
    return Settings()
