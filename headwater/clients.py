"""Where every client comes from: MongoDB and Kafka clients, the retry backoff, Airflow connections.

One module so that a client's options (tz-aware dates, timeouts, delivery guarantees) and the way
failures are waited out are decided once; callers build clients here and pass them on.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlsplit

from tenacity import RetryCallState, Retrying, wait_exponential
from tenacity.wait import wait_base

from headwater.settings import Settings

if TYPE_CHECKING:
    from pymongo import MongoClient

KafkaConfig = dict[str, str | int | bool]

# Server selection: how long a client looks for a server before the operation fails.
MONGO_TIMEOUT_MS = 10_000
# The health sensors use Airflow's mongo_default: with MongoDB down they must fail within a poke,
# not after pymongo's default 30 s of server selection per call.
AIRFLOW_MONGO_TIMEOUT_MS = 5000


# ---- MongoDB -----------------------------------------------------------------------------------


def mongo_client(
    settings_or_uri: Settings | str,
    timeout_ms: int = MONGO_TIMEOUT_MS,
    *,
    connect_timeout_ms: int | None = None,
    socket_timeout_ms: int | None = None,
    appname: str | None = None,
) -> MongoClient:
    """A MongoClient on settings.mongo.uri (or the URI given), giving up after timeout_ms.

    Always tz_aware: every datetime read back is an aware UTC instant, so it compares with the
    aware "now" the code uses everywhere. Connect and socket timeouts are pymongo's defaults
    (20 s, none) unless given.
    """
    # Imported here: the health DAG's file imports this module (through kafka_admin), DAG files
    # are parsed over and over, and pymongo alone takes about half a second to import.
    from pymongo import MongoClient

    uri = settings_or_uri if isinstance(settings_or_uri, str) else settings_or_uri.mongo.uri
    options: dict[str, Any] = {"serverSelectionTimeoutMS": timeout_ms}
    if connect_timeout_ms is not None:
        options["connectTimeoutMS"] = connect_timeout_ms
    if socket_timeout_ms is not None:
        options["socketTimeoutMS"] = socket_timeout_ms
    if appname is not None:
        options["appname"] = appname
    return MongoClient(uri, tz_aware=True, **options)


def redact_uri(uri: str) -> str:
    """The URI with its user:password replaced by *** (for logs and printed summaries)."""
    scheme, sep, rest = uri.partition("://")
    if not sep:
        return uri
    # Credentials end at the last "@" before the query: a password with an unescaped "@" or "/"
    # (which drivers refuse, but people write) is still hidden whole.
    end = min((i for i in (rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    at = rest.rfind("@", 0, end)
    if at < 0:
        return uri
    return f"{scheme}://***@{rest[at + 1 :]}"


# ---- Kafka -------------------------------------------------------------------------------------


# Every client authenticates: the brokers' client listeners take only SASL/SCRAM-SHA-512.
SECURITY_PROTOCOL = "SASL_PLAINTEXT"
SASL_MECHANISM = "SCRAM-SHA-512"
# Config keys whose values are secrets (redact_config hides them).
_SECRET_KEYS = ("sasl.password", "sasl.jaas.config", "ssl.key.password")


def kafka_security(settings: Settings, role: str) -> KafkaConfig:
    """librdkafka's SASL settings for one role's principal ("admin", "producer", "consumer",
    "health"): what it may do is its ACLs' business (headwater/kafka_access.py)."""
    user, password = settings.kafka.credentials(role)
    return {
        "security.protocol": SECURITY_PROTOCOL,
        "sasl.mechanism": SASL_MECHANISM,
        "sasl.username": user,
        "sasl.password": password,
    }


def redact_config(conf: dict[str, Any]) -> dict[str, Any]:
    """A client config fit for a log line or a printed summary: secrets replaced by ***."""
    return {k: ("***" if k in _SECRET_KEYS else v) for k, v in conf.items()}


def producer_config(
    settings: Settings, overrides: KafkaConfig | None = None, *, role: str = "producer"
) -> KafkaConfig:
    """librdkafka settings of every Headwater producer (acks=all, idempotent), as the producer
    principal (tests' own tooling may pass role="admin"), plus overrides."""
    return {
        **settings.kafka.producer_config(),
        **kafka_security(settings, role),
        **(overrides or {}),
    }


def consumer_config(
    bootstrap_servers: str,
    group_id: str,
    client_id: str,
    session_timeout_ms: int,
    overrides: KafkaConfig | None = None,
    *,
    security: KafkaConfig | None = None,
) -> KafkaConfig:
    """librdkafka settings of a pipeline consumer: offsets move only when we say so.

    `security` is the principal's SASL settings (kafka_security(settings, "consumer")).
    """
    conf: KafkaConfig = {
        "bootstrap.servers": bootstrap_servers,
        **(security or {}),
        "group.id": group_id,
        "client.id": client_id,
        # Offsets are committed by hand, after MongoDB acknowledged the batch, never before.
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        # Only the partitions that move stop during a rebalance; the others keep flowing.
        "partition.assignment.strategy": "cooperative-sticky",
        # A killed member's partitions move after this long (the broker minimum is 6 s).
        "session.timeout.ms": session_timeout_ms,
        "heartbeat.interval.ms": max(1000, session_timeout_ms // 3),
        "max.poll.interval.ms": 300_000,
        "socket.timeout.ms": 10_000,
        "log_level": 4,
    }
    conf.update(overrides or {})
    return conf


def admin_config(settings: Settings, role: str = "admin", **overrides: str | int) -> KafkaConfig:
    """librdkafka settings of an AdminClient on both brokers (one is enough to answer), as the
    admin principal or, for what only reads (health checks, reconcile), "health"."""
    conf: KafkaConfig = {
        "bootstrap.servers": settings.kafka.bootstrap_servers,
        "socket.timeout.ms": 5000,
        **kafka_security(settings, role),
    }
    conf.update(overrides)
    return conf


# ---- retries -----------------------------------------------------------------------------------


def backoff(initial_s: float, max_s: float) -> wait_base:
    """Wait initial_s after the first failure, doubling after each further one, at most max_s."""
    return wait_exponential(multiplier=initial_s, max=max_s)


def delay_after(wait: wait_base, failures: int) -> float:
    """Seconds `wait` asks for after `failures` failed attempts in a row (1 = the first failure).

    For loops that cannot hand their waiting to tenacity (the consumer keeps polling Kafka while
    it waits) but must wait exactly as long as everything else.
    """
    state = RetryCallState(Retrying(), fn=None, args=(), kwargs={})
    state.attempt_number = failures
    return wait(state)


# ---- Airflow connections -----------------------------------------------------------------------


def airflow_connections(settings: Settings) -> dict[str, str]:
    """AIRFLOW_CONN_KAFKA_DEFAULT, AIRFLOW_CONN_KAFKA_LATE_NOTICES and AIRFLOW_CONN_MONGO_DEFAULT,
    in Airflow's JSON form."""
    return {
        "AIRFLOW_CONN_KAFKA_DEFAULT": json.dumps(_kafka_connection(settings)),
        "AIRFLOW_CONN_KAFKA_LATE_NOTICES": json.dumps(
            _kafka_connection(settings, settings.kafka.late_watch_group)
        ),
        "AIRFLOW_CONN_MONGO_DEFAULT": json.dumps(_mongo_connection(settings)),
    }


def _kafka_connection(settings: Settings, group: str | None = None) -> dict[str, Any]:
    """`kafka_default`: the Kafka provider's hooks use its extra as the librdkafka config.

    With `group`: the same principal in a group of its own (`kafka_late_notices`, the late-data
    AssetWatcher's, which commits its offsets there)."""
    return {
        "conn_type": "kafka",
        "extra": {
            "bootstrap.servers": settings.kafka.bootstrap_servers,
            # The health checks' principal: it may describe the cluster, the pipeline's topics
            # and the consumer group, nothing else. Airflow masks the password in its UI and logs.
            **kafka_security(settings, "health"),
            "group.id": group or settings.kafka.consumer_group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        },
    }


def _mongo_connection(settings: Settings) -> dict[str, Any]:
    """`mongo_default`, from MONGO_URI when set, else the embedded server.

    The schema is always settings.mongo.db. A database in the URI's path is MongoDB's default
    auth database, so it becomes `authSource` (unless the URI names one) instead of being lost
    when MongoHook rebuilds the URI with the schema as its path. Query options go to `extra`, which
    MongoHook passes to MongoClient as keyword arguments (tz_aware too, like mongo_client).
    """
    m = settings.mongo
    options: dict[str, Any] = {"serverSelectionTimeoutMS": AIRFLOW_MONGO_TIMEOUT_MS}
    if not m.uri_override:
        return {
            "conn_type": "mongo",
            "host": m.host,
            "port": m.port,
            "schema": m.db,
            "extra": {**options, "tz_aware": True},
        }
    parts = urlsplit(m.uri_override)
    if parts.scheme not in ("mongodb", "mongodb+srv"):
        raise ValueError(
            f"MONGO_URI must start with mongodb:// or mongodb+srv://, got {parts.scheme!r}"
        )
    extra: dict[str, Any] = {**options, **dict(parse_qsl(parts.query)), "tz_aware": True}
    if parts.scheme == "mongodb+srv":
        extra["srv"] = True
    auth_db = parts.path.lstrip("/")
    if auth_db and "authSource" not in extra:
        extra["authSource"] = auth_db
    hosts = parts.netloc.rpartition("@")[2]
    conn: dict[str, Any] = {"conn_type": "mongo", "schema": m.db}
    # A replica-set seed list ("h1:27017,h2:27017") stays whole in `host`; MongoHook copies it into
    # the URI's netloc. A single host:port is split so `port` is what the UI shows.
    host, sep, port = hosts.rpartition(":")
    if "," not in hosts and sep and port.isdigit():
        conn.update(host=host, port=int(port))
    else:
        conn["host"] = hosts
    if parts.username is not None:
        conn["login"] = unquote(parts.username)
    if parts.password is not None:
        conn["password"] = unquote(parts.password)
    conn["extra"] = extra
    return conn
