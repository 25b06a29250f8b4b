"""PostgreSQL as Airflow's metadata DB: one server per stack, run by supervisord.

Why not SQLite: it has one writer lock. `airflow backfill create` upgrades a read transaction to a
write while the scheduler writes, gets SQLITE_BUSY at once (no busy-timeout applies to a lock
upgrade in WAL mode) and fails, sometimes after committing half a backfill. PostgreSQL has row
locks and is what Airflow supports for a LocalExecutor.

The cluster lives in `<data>/airflow-db`. `init_cluster` runs initdb and creates the database in
single-user mode (no server, no socket needed); `server_command` is what supervisord runs. As root
(PostgreSQL refuses to run as root) every command runs as `settings.airflow_db.os_user`.
"""

from __future__ import annotations

import logging
import os
import pwd
import shutil
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

from headwater.settings import Settings

log = logging.getLogger(__name__)


def embedded(settings: Settings) -> bool:
    """True when the stack runs its own PostgreSQL (no AIRFLOW_UI_SQL_ALCHEMY_CONN given)."""
    return settings.airflow.sql_alchemy_conn is None


def db_url(settings: Settings) -> str:
    """SQLAlchemy URL of the stack's metadata DB on its PostgreSQL server."""
    db = settings.airflow_db
    user, password = quote(db.user, safe=""), quote(db.password.get_secret_value(), safe="")
    return f"postgresql+psycopg2://{user}:{password}@{db.host}:{db.port}/{db.name}"


def data_dir(settings: Settings) -> Path:
    return settings.stack.data_dir / "airflow-db"


def bin_dir(settings: Settings) -> Path | None:
    """Directory holding initdb and postgres: the setting, PATH, or the newest Debian install."""
    if settings.airflow_db.bin_dir is not None:
        return settings.airflow_db.bin_dir
    found = shutil.which("postgres")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/postgres"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    return candidates[-1].parent if candidates else None


def run_as(settings: Settings) -> str | None:
    """The OS user PostgreSQL runs as: None (this user) unless we are root."""
    return settings.airflow_db.os_user if os.geteuid() == 0 else None


def server_command(settings: Settings, binaries: Path) -> list[str]:
    """argv of the server (pure). Loopback TCP only; no unix socket (nothing here needs one)."""
    db = settings.airflow_db
    return [
        str(binaries / "postgres"),
        "-D", str(data_dir(settings)),
        "-c", f"listen_addresses={db.host}",
        "-c", f"port={db.port}",
        "-c", "unix_socket_directories=",
        # Four Airflow processes with pools of 5 (+10 overflow) plus CLI runs and tests.
        "-c", "max_connections=150",
        "-c", "shared_buffers=64MB",
        "-c", "log_line_prefix=%m [%p] ",
        "-c", "log_min_messages=warning",
    ]  # fmt: skip


def _chown_to(path: Path, user: str | None) -> None:
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(path, entry.pw_uid, entry.pw_gid)


def init_cluster(settings: Settings, timeout_s: float = 120) -> bool:
    """initdb + CREATE DATABASE, once; True when it created the cluster just now."""
    data = data_dir(settings)
    if (data / "PG_VERSION").exists():
        return False
    binaries = bin_dir(settings)
    if binaries is None:
        raise RuntimeError("PostgreSQL is not installed (make install installs Debian's package)")
    user = run_as(settings)
    db = settings.airflow_db
    # A half-initialised directory (initdb interrupted) would make initdb refuse: start over.
    if data.exists():
        shutil.rmtree(data)
    data.mkdir(parents=True, mode=0o700)
    _chown_to(data, user)
    pwfile = data.parent / ".airflow-db-password"
    fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(db.password.get_secret_value() + "\n")
    _chown_to(pwfile, user)
    initdb = [
        str(binaries / "initdb"), "-D", str(data), "-U", db.user, f"--pwfile={pwfile}",
        "--auth-host=scram-sha-256", "--auth-local=peer", "--encoding=UTF8", "--locale=C",
    ]  # fmt: skip
    try:
        subprocess.run(
            initdb,
            user=user,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=True,
        )
    except subprocess.CalledProcessError as exc:
        raise RuntimeError(f"initdb failed: {exc.stderr or exc.stdout}") from exc
    finally:
        pwfile.unlink(missing_ok=True)
    # Single-user mode reads SQL from stdin: no server has to be started for this.
    single = subprocess.run(
        [str(binaries / "postgres"), "--single", "-D", str(data), "postgres"],
        input=f'CREATE DATABASE "{db.name}";\n',
        user=user,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    if single.returncode != 0 or "ERROR" in single.stderr:
        shutil.rmtree(data)
        raise RuntimeError(f"creating database {db.name} failed: {single.stderr}")
    log.info("initialised PostgreSQL cluster %s with database %s", data, db.name)
    return True


def ping(settings: Settings, timeout_s: float = 3.0) -> str:
    """The server's version string; raises (psycopg2.Error) when it does not answer."""
    import psycopg2  # imported here: only the stack and its probes need it

    db = settings.airflow_db
    with (
        psycopg2.connect(
            host=db.host,
            port=db.port,
            user=db.user,
            password=db.password.get_secret_value(),
            dbname=db.name,
            connect_timeout=max(1, int(timeout_s)),
        ) as conn,
        conn.cursor() as cur,
    ):
        cur.execute("SHOW server_version")
        row = cur.fetchone()
    conn.close()
    return str(row[0]) if row else "unknown"


def wait_ready(settings: Settings, timeout_s: float) -> str:
    """Poll until the server accepts logins (bounded); returns its version."""
    import psycopg2

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return ping(settings)
        except psycopg2.Error as exc:
            if time.monotonic() > deadline:
                raise TimeoutError(f"PostgreSQL not ready after {timeout_s:.0f}s: {exc}") from exc
            time.sleep(0.5)
