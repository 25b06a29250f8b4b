"""Clients, retry backoff, Airflow connections and URI redaction come from headwater.clients."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import bson
import pytest
from tenacity import Retrying, stop_after_attempt

from headwater.clients import (
    admin_config,
    airflow_connections,
    backoff,
    consumer_config,
    delay_after,
    kafka_security,
    mongo_client,
    producer_config,
    redact_config,
    redact_uri,
)
from headwater.settings import KafkaSettings, MongoSettings, Settings


def _settings(mongo_uri: str | None = None) -> Settings:
    return Settings(
        kafka=KafkaSettings(host="10.0.0.5", broker1_port=19092, broker2_port=19094),
        mongo=MongoSettings.model_validate(
            {"MONGO_URI": mongo_uri, "host": "10.0.0.6", "port": 27017}
        ),
    )


# ---- MongoDB -----------------------------------------------------------------------------------


def test_mongo_client_reads_datetimes_back_as_aware_utc() -> None:
    client = mongo_client("mongodb://127.0.0.1:1/")  # lazy: constructing connects to nothing
    try:
        assert client.codec_options.tz_aware
        naive_utc = datetime(2026, 11, 23, 9, 0)  # what the driver stores: UTC without a zone
        read = bson.decode(bson.encode({"ts": naive_utc}), codec_options=client.codec_options)
        assert read["ts"] == datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
        # Comparable with the aware "now" the code uses (naive - aware would be a TypeError).
        assert read["ts"] - datetime(2026, 11, 23, 8, 0, tzinfo=UTC) == timedelta(hours=1)
    finally:
        client.close()


def test_mongo_client_uses_the_settings_uri_and_the_timeouts_asked_for() -> None:
    client = mongo_client(
        _settings("mongodb://db.example:27018/"),
        2500,
        connect_timeout_ms=2000,
        socket_timeout_ms=3000,
        appname="probe",
    )
    try:
        assert list(client.topology_description.server_descriptions()) == [("db.example", 27018)]
        options = client.options
        assert options.server_selection_timeout == 2.5
        assert options.pool_options.connect_timeout == 2.0
        assert options.pool_options.socket_timeout == 3.0
        assert options.pool_options.metadata["application"] == {"name": "probe"}
    finally:
        client.close()


def test_mongo_client_defaults_are_ten_seconds_of_server_selection_and_pymongo_otherwise() -> None:
    client = mongo_client(_settings())
    try:
        assert client.options.server_selection_timeout == 10.0
        assert client.options.pool_options.connect_timeout == 20.0  # pymongo's default
        assert client.options.pool_options.socket_timeout is None
        assert client.codec_options.tz_aware
    finally:
        client.close()


@pytest.mark.parametrize(
    ("uri", "redacted"),
    [
        (
            "mongodb://user:s3cret@db.example:27017/headwater",
            "mongodb://***@db.example:27017/headwater",
        ),
        (
            "mongodb+srv://user:s3cret@cluster0.example.net/?retryWrites=true",
            "mongodb+srv://***@cluster0.example.net/?retryWrites=true",
        ),
        (
            "mongodb://u:p@h1:27017,h2:27017/?replicaSet=rs0",
            "mongodb://***@h1:27017,h2:27017/?replicaSet=rs0",
        ),
        # An unescaped "@" or "/" in the password (refused by drivers, written by people).
        ("mongodb://user:p@ss/w@db.example/", "mongodb://***@db.example/"),
        ("mongodb://user@db.example/", "mongodb://***@db.example/"),
        (
            "postgresql+psycopg2://airflow:s3cret@127.0.0.1:5433/airflow",
            "postgresql+psycopg2://***@127.0.0.1:5433/airflow",
        ),
        # Nothing to hide: unchanged, even with an "@" in the query.
        ("mongodb://127.0.0.1:27017/", "mongodb://127.0.0.1:27017/"),
        ("mongodb://h/?appname=me@host", "mongodb://h/?appname=me@host"),
        ("sqlite:////x/airflow.db", "sqlite:////x/airflow.db"),
        ("not a uri", "not a uri"),
    ],
)
def test_redact_uri_hides_user_and_password(uri: str, redacted: str) -> None:
    assert redact_uri(uri) == redacted
    assert "s3cret" not in redact_uri(uri)


# ---- Kafka -------------------------------------------------------------------------------------


def test_producer_config_never_loses_nor_doubles_and_takes_overrides() -> None:
    conf = producer_config(_settings(), {"linger.ms": 5})
    assert conf["bootstrap.servers"] == "10.0.0.5:19092,10.0.0.5:19094"
    assert conf["acks"] == "all"
    assert conf["enable.idempotence"] is True
    assert conf["linger.ms"] == 5
    # As the producer principal, over SCRAM.
    assert (conf["security.protocol"], conf["sasl.mechanism"]) == (
        "SASL_PLAINTEXT",
        "SCRAM-SHA-512",
    )
    assert (conf["sasl.username"], conf["sasl.password"]) == (
        "headwater-producer",
        "producer-dev-secret",
    )


def test_each_role_logs_in_as_its_own_principal_with_its_password_from_settings() -> None:
    settings = Settings(
        kafka=KafkaSettings.model_validate(
            {"consumer_password": "c0nsumer-pw", "health_user": "mon"}
        )
    )
    assert kafka_security(settings, "consumer")["sasl.password"] == "c0nsumer-pw"
    assert kafka_security(settings, "health")["sasl.username"] == "mon"
    assert admin_config(settings)["sasl.username"] == "headwater-admin"
    assert admin_config(settings, "health")["sasl.username"] == "mon"
    with pytest.raises(ValueError, match="unknown Kafka role"):
        kafka_security(settings, "intruder")


@pytest.mark.parametrize("password", ['has"quote', "back\\slash", "a,b]c[d", "short", "x" * 129])
def test_a_password_kafka_could_not_parse_back_is_refused_at_startup(password: str) -> None:
    with pytest.raises(ValueError, match="Kafka passwords"):
        KafkaSettings.model_validate({"producer_password": password})


def test_redact_config_hides_the_password_and_keeps_the_rest() -> None:
    conf = redact_config(producer_config(_settings()))
    assert conf["sasl.password"] == "***"
    assert conf["sasl.username"] == "headwater-producer"
    assert "producer-dev-secret" not in json.dumps(conf)


def test_consumer_config_commits_only_by_hand() -> None:
    conf = consumer_config(
        "b:9092",
        "g",
        "c-1",
        9000,
        {"fetch.min.bytes": 10},
        security=kafka_security(_settings(), "consumer"),
    )
    assert (conf["bootstrap.servers"], conf["group.id"], conf["client.id"]) == (
        "b:9092",
        "g",
        "c-1",
    )
    assert conf["enable.auto.commit"] is False
    assert conf["enable.auto.offset.store"] is False
    assert conf["auto.offset.reset"] == "earliest"
    assert conf["session.timeout.ms"] == 9000
    assert conf["heartbeat.interval.ms"] == 3000
    assert conf["fetch.min.bytes"] == 10
    assert conf["sasl.username"] == "headwater-consumer"


def test_admin_config_is_on_both_brokers_with_overrides() -> None:
    assert admin_config(_settings(), log_level="0") == {
        "bootstrap.servers": "10.0.0.5:19092,10.0.0.5:19094",
        "socket.timeout.ms": 5000,
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "headwater-admin",
        "sasl.password": "admin-dev-secret",
        "log_level": "0",
    }


# ---- retries -----------------------------------------------------------------------------------


def test_backoff_doubles_from_initial_and_stays_capped() -> None:
    wait = backoff(0.25, 3)
    assert [delay_after(wait, n) for n in range(1, 8)] == [0.25, 0.5, 1, 2, 3, 3, 3]
    assert delay_after(wait, 1_000_000) == 3  # no overflow, however long the outage


def test_backoff_is_what_tenacity_sleeps_between_attempts() -> None:
    slept: list[float] = []
    retrying = Retrying(
        wait=backoff(1, 4), stop=stop_after_attempt(5), sleep=slept.append, reraise=True
    )
    with pytest.raises(ConnectionError):
        retrying(lambda: (_ for _ in ()).throw(ConnectionError("down")))
    assert slept == [1, 2, 4, 4]


# ---- Airflow connections -----------------------------------------------------------------------


def _connections(settings: Settings) -> tuple[dict, dict]:
    env = airflow_connections(settings)
    assert set(env) == {
        "AIRFLOW_CONN_KAFKA_DEFAULT",
        "AIRFLOW_CONN_KAFKA_LATE_NOTICES",
        "AIRFLOW_CONN_MONGO_DEFAULT",
    }
    return json.loads(env["AIRFLOW_CONN_KAFKA_DEFAULT"]), json.loads(
        env["AIRFLOW_CONN_MONGO_DEFAULT"]
    )


def test_kafka_connection_extra_is_the_librdkafka_config() -> None:
    kafka, _ = _connections(_settings())
    assert kafka == {
        "conn_type": "kafka",
        "extra": {
            "bootstrap.servers": "10.0.0.5:19092,10.0.0.5:19094",
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.username": "headwater-health",
            "sasl.password": "health-dev-secret",
            "group.id": "headwater-consumer",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        },
    }


def test_mongo_connection_of_the_embedded_server() -> None:
    _, mongo = _connections(_settings())
    assert mongo == {
        "conn_type": "mongo",
        "host": "10.0.0.6",
        "port": 27017,
        "schema": "headwater",
        "extra": {"serverSelectionTimeoutMS": 5000, "tz_aware": True},
    }


def test_mongo_connection_from_a_uri_with_credentials_and_options() -> None:
    _, mongo = _connections(
        _settings("mongodb://app%40corp:p%3Ass@db.example:27018/admin?replicaSet=rs0")
    )
    assert mongo == {
        "conn_type": "mongo",
        "schema": "headwater",
        "host": "db.example",
        "port": 27018,
        "login": "app@corp",
        "password": "p:ss",
        "extra": {
            "serverSelectionTimeoutMS": 5000,
            "replicaSet": "rs0",
            "tz_aware": True,
            "authSource": "admin",
        },
    }


def test_mongo_connection_of_an_srv_uri_or_a_seed_list_keeps_the_hosts_whole() -> None:
    _, srv = _connections(_settings("mongodb+srv://u:p@cluster0.example.net/"))
    assert (srv["host"], srv["extra"]["srv"]) == ("cluster0.example.net", True)
    assert "port" not in srv  # MongoHook refuses a port with srv
    _, seeds = _connections(_settings("mongodb://h1:27017,h2:27017/"))
    assert seeds["host"] == "h1:27017,h2:27017" and "port" not in seeds


def test_mongo_connection_refuses_another_scheme() -> None:
    with pytest.raises(ValueError, match="mongodb://"):
        airflow_connections(_settings("postgresql://h/db"))


def test_the_late_data_watcher_reads_as_health_in_a_group_of_its_own() -> None:
    settings = _settings()
    default = json.loads(airflow_connections(settings)["AIRFLOW_CONN_KAFKA_DEFAULT"])
    late = json.loads(airflow_connections(settings)["AIRFLOW_CONN_KAFKA_LATE_NOTICES"])
    assert late["extra"]["group.id"] == settings.kafka.late_watch_group
    assert default["extra"]["group.id"] != settings.kafka.late_watch_group
    assert late["extra"]["sasl.username"] == "headwater-health"
    assert {k: v for k, v in late["extra"].items() if k != "group.id"} == {
        k: v for k, v in default["extra"].items() if k != "group.id"
    }
