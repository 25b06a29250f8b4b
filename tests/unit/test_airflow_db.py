"""The stack's PostgreSQL for Airflow (URL, server command, binaries) and what Airflow is given."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from headwater.clients import airflow_connections
from headwater.settings import (
    AirflowDbSettings,
    AirflowSettings,
    MongoSettings,
    Settings,
    StackSettings,
)
from infra import airflow_db
from infra.airflow import airflow_env, sql_alchemy_conn
from infra.stack import print_summary


def _settings(tmp_path: Path, **db: object) -> Settings:
    return Settings(
        stack=StackSettings(run_dir=tmp_path),
        airflow_db=AirflowDbSettings(**db),  # type: ignore[arg-type]
    )


def test_url_quotes_credentials_and_is_what_airflow_gets(tmp_path: Path) -> None:
    settings = _settings(tmp_path, port=25433, user="air flow", password=SecretStr("p@ss:/w"))
    url = "postgresql+psycopg2://air%20flow:p%40ss%3A%2Fw@127.0.0.1:25433/airflow"
    assert airflow_db.db_url(settings) == url
    assert airflow_env(settings)["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == url
    assert airflow_db.embedded(settings)


def test_an_external_metadata_db_replaces_the_embedded_one(tmp_path: Path) -> None:
    external = "postgresql+psycopg2://u:p@db.example:5432/af"
    settings = Settings(
        stack=StackSettings(run_dir=tmp_path),
        airflow=AirflowSettings(sql_alchemy_conn=external),
    )
    assert not airflow_db.embedded(settings)
    assert sql_alchemy_conn(settings) == external


def test_server_listens_on_loopback_tcp_only_in_the_stack_data_dir(tmp_path: Path) -> None:
    settings = _settings(tmp_path, port=25433)
    argv = airflow_db.server_command(settings, Path("/pg/bin"))
    assert argv[0] == "/pg/bin/postgres"
    assert argv[argv.index("-D") + 1] == str(tmp_path / "data" / "airflow-db")
    options = {argv[i + 1] for i, a in enumerate(argv) if a == "-c"}
    assert {"listen_addresses=127.0.0.1", "port=25433", "unix_socket_directories="} <= options


def test_bin_dir_setting_wins(tmp_path: Path) -> None:
    assert airflow_db.bin_dir(_settings(tmp_path, bin_dir=tmp_path)) == tmp_path


def test_summary_never_prints_the_database_passwords(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(
        stack=StackSettings(run_dir=tmp_path),
        airflow=AirflowSettings(
            sql_alchemy_conn="postgresql+psycopg2://airflow:s3cret@127.0.0.1:5433/airflow"
        ),
        mongo=MongoSettings.model_validate({"MONGO_URI": "mongodb://app:m0ngo@db.example/"}),
    )
    print_summary(settings)
    out = capsys.readouterr().out
    assert "postgresql+psycopg2://***@127.0.0.1:5433/airflow" in out
    assert "mongodb://***@db.example/" in out
    assert "s3cret" not in out and "m0ngo" not in out


def test_airflow_gets_the_kafka_and_mongo_connections_from_clients(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    env = airflow_env(settings)
    connections = airflow_connections(settings)
    assert set(connections) == {
        "AIRFLOW_CONN_KAFKA_DEFAULT",
        "AIRFLOW_CONN_KAFKA_LATE_NOTICES",
        "AIRFLOW_CONN_MONGO_DEFAULT",
    }
    assert {name: env[name] for name in connections} == connections
