"""Settings: the documented defaults, env overrides, and paths anchored to the checkout."""

from __future__ import annotations

from pathlib import Path

import pytest

from headwater.settings import REPO_ROOT, Settings

DEFAULT_VARS = [
    "KAFKA_BROKER1_PORT",
    "KAFKA_BROKER2_PORT",
    "KAFKA_CONTROLLER_PORT",
    "KAFKA_BOOTSTRAP_SERVERS",
    "MONGO_URI",
    "MONGO_PORT",
    "AIRFLOW_UI_PORT",
    "STACK_RUN_DIR",
    "HEADWATER_FLASK_PORT",
    "HEADWATER_EXTERNAL_API_PORT",
    "HEADWATER_CONSUMER_PORT",
]


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    for var in DEFAULT_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env
    return monkeypatch


def test_defaults_match_the_architecture(clean_env: pytest.MonkeyPatch) -> None:
    s = Settings()
    assert s.kafka.bootstrap_servers == "127.0.0.1:9092,127.0.0.1:9094"
    assert s.kafka.controller_port == 9093
    assert s.kafka.replication_factor == 2
    assert s.mongo.uri == "mongodb://127.0.0.1:27017/"
    assert s.mongo.embedded
    assert s.mongo.db == "headwater"
    assert s.airflow.base_url == "http://127.0.0.1:8080"
    assert (s.airflow.user, s.airflow.password.get_secret_value()) == ("admin", "admin")
    assert s.services.flask_port == 5000
    assert s.services.external_api_port == 5001
    assert s.services.consumer_port == 8001


def test_env_overrides_every_group(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("KAFKA_BROKER2_PORT", "19094")
    clean_env.setenv("MONGO_URI", "mongodb://db.example:27017/")
    clean_env.setenv("AIRFLOW_UI_PORT", "18080")
    clean_env.setenv("HEADWATER_FLASK_PORT", "15000")
    s = Settings()
    assert s.kafka.bootstrap_servers == "127.0.0.1:9092,127.0.0.1:19094"
    assert s.mongo.uri == "mongodb://db.example:27017/"
    assert not s.mongo.embedded
    assert s.airflow.port == 18080
    assert s.services.flask_port == 15000


def test_dotenv_file_is_read(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("KAFKA_CONTROLLER_PORT=19093\nMONGO_DB=other\n")
    s = Settings()
    assert s.kafka.controller_port == 19093
    assert s.mongo.db == "other"


def test_relative_run_dir_is_inside_the_checkout(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("STACK_RUN_DIR", ".run/elsewhere")
    s = Settings()
    assert s.stack.run_dir == REPO_ROOT / ".run" / "elsewhere"
    assert s.stack.log_dir == REPO_ROOT / ".run" / "elsewhere" / "logs"


def test_bootstrap_override_wins(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("KAFKA_BOOTSTRAP_SERVERS", "b1:9092,b2:9094")
    assert Settings().kafka.bootstrap_servers == "b1:9092,b2:9094"
