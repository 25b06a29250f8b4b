"""Airflow 3 as four processes (API server + UI, scheduler, dag-processor, triggerer).

Pure functions build the environment and the command lines; `prepare_airflow` does the one-off I/O
(directories, secrets, the auth manager's passwords file, `airflow db migrate`); two small HTTP
helpers read the API server's health and log in.

Secrets (`[api] secret_key`, `[api_auth] jwt_secret`, `[core] fernet_key`) are generated once into
`<data>/airflow/secrets.json` and written into `$AIRFLOW_HOME/airflow.cfg`, which every process
reads. They stay out of the environment on purpose: the environment is pure (no file to read
before it can be built) and ends up in process-supervisor configs and `ps` output.
"""

from __future__ import annotations

import base64
import importlib.metadata
import json
import logging
import os
import secrets
import sqlite3
import subprocess
import sys
import time
import urllib.request
from contextlib import closing
from pathlib import Path
from typing import Any

import requests

from headwater.clients import airflow_connections
from headwater.settings import REPO_ROOT, Settings
from infra import airflow_db

log = logging.getLogger(__name__)

# The venv's `airflow` console script, next to the interpreter that runs the stack (not resolved:
# the venv's python is a symlink to the base interpreter, whose bin dir has no airflow).
AIRFLOW_BIN = Path(sys.executable).parent / "airflow"
# What /api/v2/monitor/health reports; airflow_health adds "execution_api".
HEALTH_COMPONENTS = ("metadatabase", "scheduler", "dag_processor", "triggerer")
_SECRET_NAMES = ("secret_key", "jwt_secret", "fernet_key")


def airflow_home(settings: Settings) -> Path:
    """AIRFLOW_HOME: holds airflow.cfg (with the secrets) and nothing else of value."""
    return settings.stack.run_dir / "airflow"


def airflow_data_dir(settings: Settings) -> Path:
    """Airflow's durable state: secrets, the passwords file and the migrate marker."""
    return settings.stack.data_dir / "airflow"


def airflow_log_dir(settings: Settings) -> Path:
    """Task logs and the dag-processor's per-file logs."""
    return settings.stack.log_dir / "airflow"


def secrets_path(settings: Settings) -> Path:
    return airflow_data_dir(settings) / "secrets.json"


def passwords_path(settings: Settings) -> Path:
    """SimpleAuthManager's passwords file: a JSON object {username: password}."""
    return airflow_data_dir(settings) / "simple_auth_manager_passwords.json"


def sql_alchemy_conn(settings: Settings) -> str:
    """The metadata DB URL: settings.airflow.sql_alchemy_conn, else the stack's PostgreSQL."""
    return settings.airflow.sql_alchemy_conn or airflow_db.db_url(settings)


def airflow_env(settings: Settings) -> dict[str, str]:
    """Every AIRFLOW_* variable the four processes and the `airflow` CLI need (pure)."""
    a = settings.airflow
    user = a.user
    if not user or any(c in user for c in ":,"):
        raise ValueError(f"Airflow user name must be non-empty without ':' or ',': {user!r}")
    logs = airflow_log_dir(settings)
    return {
        "AIRFLOW_HOME": str(airflow_home(settings)),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": sql_alchemy_conn(settings),
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": str(a.parallelism),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        # Tasks reach the API server's execution API with a JWT the scheduler signs with
        # [api_auth] jwt_secret (from airflow.cfg): same secret everywhere or every task fails.
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{a.base_url}/execution/",
        # Task SDK -> execution API request timeout (default 5 s). On a busy 2-core box a call can
        # outlast 5 s (the first one after an API-server start takes ~5-8 s); each timeout costs a
        # retry with backoff and the server still does the work, so give it headroom instead.
        "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": "30",
        "AIRFLOW__API__HOST": a.host,
        "AIRFLOW__API__PORT": str(a.port),
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__CORE__AUTH_MANAGER": (
            "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
        ),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{user}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords_path(settings)),
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(logs),
        "AIRFLOW__LOGGING__DAG_PROCESSOR_CHILD_PROCESS_LOG_DIRECTORY": str(logs / "dag_processor"),
        # Process output goes to log files, where ANSI colour codes are noise.
        "AIRFLOW__LOGGING__COLORED_CONSOLE_LOG": "False",
        "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_STORAGE_PATH": str(
            airflow_data_dir(settings) / "dag_bundles"
        ),
        # The default lists the DAG folder every 300 s: a new DAG file would take 5 minutes to show.
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
        # kafka_default and mongo_default, for the Kafka and Mongo providers' hooks.
        **airflow_connections(settings),
    }


def airflow_programs(settings: Settings) -> dict[str, list[str]]:
    """Name -> argv of the four long-running processes (pure); run each with `airflow_env`.

    Scheduler and triggerer skip their log-serving subprocesses: every component shares this
    host's log dir, and the fixed ports those bind on all interfaces (8793/8794) would collide
    between side-by-side stacks (dev and test).
    """
    a = settings.airflow
    airflow = str(AIRFLOW_BIN)
    return {
        "airflow-api-server": [
            airflow, "api-server", "--host", a.host, "--port", str(a.port), "--workers", "1",
        ],
        "airflow-scheduler": [airflow, "scheduler", "--skip-serve-logs"],
        "airflow-dag-processor": [airflow, "dag-processor"],
        "airflow-triggerer": [airflow, "triggerer", "--skip-serve-logs"],
    }  # fmt: skip


def _write_private(path: Path, text: str) -> None:
    """Atomically replace `path` with `text`, readable by the owner only."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(text)
    os.replace(tmp, path)


def load_or_create_secrets(settings: Settings) -> dict[str, str]:
    """The stack's Airflow secrets, generated on first use and reused afterwards."""
    path = secrets_path(settings)
    stored: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    missing = [name for name in _SECRET_NAMES if not stored.get(name)]
    if missing:
        fresh = {
            "secret_key": secrets.token_urlsafe(32),
            # JWTs are signed with HS512, which wants a key of at least 64 bytes (RFC 7518 3.2).
            "jwt_secret": secrets.token_urlsafe(64),
            # A Fernet key is 32 random bytes, url-safe base64 encoded.
            "fernet_key": base64.urlsafe_b64encode(os.urandom(32)).decode(),
        }
        stored |= {name: fresh[name] for name in missing}
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_private(path, json.dumps(stored, indent=2) + "\n")
        log.info("generated Airflow secrets %s in %s", missing, path)
    return stored


def airflow_cfg_text(stored: dict[str, str]) -> str:
    """airflow.cfg carrying only the secrets; everything else comes from `airflow_env`."""

    def escape(value: str) -> str:
        return value.replace("%", "%%")  # configparser interpolation

    return (
        "# Generated by infra/airflow.py from secrets.json; other settings come from AIRFLOW__*.\n"
        f"[core]\nfernet_key = {escape(stored['fernet_key'])}\n\n"
        f"[api]\nsecret_key = {escape(stored['secret_key'])}\n\n"
        f"[api_auth]\njwt_secret = {escape(stored['jwt_secret'])}\n"
    )


def _run_airflow(args: list[str], env: dict[str, str], timeout_s: float) -> str:
    result = subprocess.run(
        [str(AIRFLOW_BIN), *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).splitlines()[-30:])
        raise RuntimeError(f"airflow {' '.join(args)} exited {result.returncode}:\n{tail}")
    return result.stdout


def prepare_airflow(settings: Settings, env: dict[str, str]) -> None:
    """Everything before the four processes start; idempotent and cheap when already done.

    Creates the directories, the secrets (secrets.json -> $AIRFLOW_HOME/airflow.cfg), the auth
    manager's passwords file with settings.airflow.password, switches a SQLite metadata DB to WAL
    and runs `airflow db migrate` with `env` (skipped when already done, see `migrate_db`).
    """
    home = Path(env.get("AIRFLOW_HOME", airflow_home(settings)))
    data = airflow_data_dir(settings)
    logs = airflow_log_dir(settings)
    for directory in (home, data, logs, logs / "dag_processor", data / "dag_bundles"):
        directory.mkdir(parents=True, exist_ok=True)
    for key in ("AIRFLOW__CORE__DAGS_FOLDER", "AIRFLOW__CORE__PLUGINS_FOLDER"):
        if key in env:
            Path(env[key]).mkdir(parents=True, exist_ok=True)

    # Written before any airflow command runs: without it, the first one writes a full default
    # airflow.cfg with a random jwt_secret (and bakes the current AIRFLOW__* values into it).
    cfg = home / "airflow.cfg"
    cfg_text = airflow_cfg_text(load_or_create_secrets(settings))
    if not cfg.exists() or cfg.read_text() != cfg_text:
        _write_private(cfg, cfg_text)

    # SimpleAuthManager only generates (and prints) a random password for users missing from this
    # file; pre-writing it makes the login the one in settings. Rewritten so a changed setting wins.
    users = {settings.airflow.user: settings.airflow.password.get_secret_value()}
    pw_file = Path(
        env.get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE", passwords_path(settings))
    )
    if not pw_file.exists() or json.loads(pw_file.read_text() or "{}") != users:
        _write_private(pw_file, json.dumps(users) + "\n")

    conn = env.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", sql_alchemy_conn(settings))
    db_file = _sqlite_file(conn)
    if db_file is not None:
        # Four processes plus task workers write this file; with the default rollback journal
        # readers block writers and "database is locked" follows. WAL mode persists in the file.
        db_file.parent.mkdir(parents=True, exist_ok=True)
        with closing(sqlite3.connect(db_file)) as db:
            db.execute("PRAGMA journal_mode=WAL")
    migrate_db(settings, env, conn)


def _sqlite_file(conn: str) -> Path | None:
    """The database file of a sqlite:////abs/path URL, None for any other database."""
    if not conn.startswith("sqlite:///") or conn.startswith("sqlite:///:memory:"):
        return None
    return Path(conn.removeprefix("sqlite:///").partition("?")[0])


def db_revision(conn: str) -> str | None:
    """The Alembic revision the metadata DB at `conn` is at, None when there is none (yet)."""
    db_file = _sqlite_file(conn)
    if db_file is not None:
        if not db_file.exists():
            return None
        try:
            with closing(sqlite3.connect(f"file:{db_file}?mode=ro", uri=True)) as db:
                row = db.execute("SELECT version_num FROM alembic_version").fetchone()
        except sqlite3.Error:
            return None
        return str(row[0]) if row else None
    if not conn.startswith("postgresql"):
        return None
    import sqlalchemy  # a dependency of Airflow; only needed here

    engine = sqlalchemy.create_engine(conn, connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as db:
            row = db.execute(sqlalchemy.text("SELECT version_num FROM alembic_version")).first()
    except sqlalchemy.exc.SQLAlchemyError:
        return None
    finally:
        engine.dispose()
    return str(row[0]) if row else None


def migrate_db(settings: Settings, env: dict[str, str], conn: str) -> None:
    """`airflow db migrate`, skipped for a DB this Airflow version already migrated.

    The CLI costs ~10 s even with nothing to do (importing Airflow alone is ~4 s), so the revision
    reached is recorded and compared with the DB's alembic_version on the next start. A changed
    Airflow version, URL or revision always gets the real command, which is idempotent.
    """
    marker = airflow_data_dir(settings) / "migrated.json"
    stamp = {"airflow": _airflow_version(), "conn": conn}
    if marker.exists():
        recorded = json.loads(marker.read_text())
        current = db_revision(conn)
        if current and recorded == {**stamp, "revision": current}:
            log.info("Airflow metadata DB already at %s; skipping db migrate", current)
            return
    _run_airflow(["db", "migrate"], env, timeout_s=settings.stack.start_timeout_s)
    if revision := db_revision(conn):
        _write_private(marker, json.dumps({**stamp, "revision": revision}) + "\n")
    log.info("Airflow metadata DB migrated (%s)", conn.split("://")[0])


def _airflow_version() -> str:
    try:
        return importlib.metadata.version("apache-airflow-core")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _http_json(request: urllib.request.Request, timeout_s: float) -> Any:
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        return json.load(response)


def airflow_health(settings: Settings, timeout_s: float = 5) -> dict[str, str]:
    """Component -> status: /api/v2/monitor/health (no login needed) plus the execution API.

    A component that never reported (e.g. a triggerer that has not started) is "unknown".
    "execution_api" is what tasks call: its first request after an API-server start builds the
    versioned app (~5 s, blocking the server), which is exactly the task SDK's request timeout, so
    the first task would time out and retry. Polling this until "healthy" takes that hit up front.
    Raises OSError (urllib's URLError) when the API server does not answer.
    """
    base = settings.airflow.base_url
    body = _http_json(urllib.request.Request(f"{base}/api/v2/monitor/health"), timeout_s)
    health = {
        name: str((body.get(name) or {}).get("status") or "unknown") for name in HEALTH_COMPONENTS
    }
    try:
        execution = _http_json(urllib.request.Request(f"{base}/execution/health"), timeout_s)
        health["execution_api"] = str(execution.get("status") or "unknown")
    except TimeoutError:
        health["execution_api"] = "starting"
    except OSError as exc:
        starting = isinstance(getattr(exc, "reason", None), TimeoutError)
        health["execution_api"] = "starting" if starting else "unhealthy"
    return health


def airflow_token(settings: Settings, timeout_s: float = 10) -> str:
    """An access token for the REST API (`Authorization: Bearer ...`), from the settings login."""
    a = settings.airflow
    payload = json.dumps({"username": a.user, "password": a.password.get_secret_value()})
    request = urllib.request.Request(
        f"{a.base_url}/auth/token",
        data=payload.encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    return str(_http_json(request, timeout_s)["access_token"])


def unpause_dags(
    settings: Settings, expected: set[str], tag: str = "headwater", timeout_s: float = 120
) -> list[str]:
    """Wait (bounded) until the dag-processor has registered `expected`, then unpause every DAG
    tagged `tag`; returns the DAG ids now running on their schedules."""
    base = settings.airflow.base_url
    headers = {"Authorization": f"Bearer {airflow_token(settings)}"}
    deadline = time.monotonic() + timeout_s
    while True:
        listing = requests.get(
            f"{base}/api/v2/dags", params={"tags": tag, "limit": 1000}, headers=headers, timeout=10
        )
        listing.raise_for_status()
        dags = {d["dag_id"]: d for d in listing.json()["dags"]}
        if expected <= set(dags):
            break
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"DAGs not registered after {timeout_s:.0f}s: {expected - set(dags)}"
            )
        time.sleep(2)
    for dag_id, dag in sorted(dags.items()):
        if dag["is_paused"]:
            resp = requests.patch(
                f"{base}/api/v2/dags/{dag_id}",
                json={"is_paused": False},
                headers=headers,
                timeout=10,
            )
            resp.raise_for_status()
    return sorted(dags)
