"""The local stack without Docker: `python -m infra.stack up|down|status|logs|running`.

supervisord runs every service (Kafka controller + two brokers, the MongoDB-wire server unless
`MONGO_URI` points elsewhere, Airflow's four processes); this module renders its config, prepares
state (Kafka storage, Airflow's metadata DB), waits until everything is healthy, creates the topics
and prints where everything is.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from headwater.clients import redact_uri
from headwater.kafka_admin import admin_client, group_members
from headwater.settings import REPO_ROOT, Settings, get_settings
from headwater.sources import load_sources, pipeline_topics
from infra import airflow as airflow_proc
from infra import airflow_db, kafka_cluster, mongo_server, supervisor
from infra.health import Check, check_all
from infra.supervisor import Program
from producer import declarations

log = logging.getLogger("headwater.stack")

VENV_BIN = Path(sys.executable).parent


class StackError(RuntimeError):
    """The stack could not be brought to the requested state."""


def programs(settings: Settings) -> list[Program]:
    """Every long-running process of the stack, in start order."""
    result = [
        Program(
            node.name,
            kafka_cluster.node_command(settings, node),
            priority=10 if node.role == "controller" else 20,
            start_s=5,
        )
        for node in kafka_cluster.kafka_nodes(settings)
    ]
    if settings.mongo.embedded:
        result.append(Program("mongo", mongo_server.server_command(settings), priority=10))
        # Restarts a server that is alive but not answering (supervisord only sees exits).
        watchdog_argv = [str(VENV_BIN / "python"), "-m", "infra.watchdog"]
        result.append(
            Program("mongo-watchdog", watchdog_argv, priority=15, stop_wait_s=10, cwd=REPO_ROOT)
        )
    if airflow_db.embedded(settings):
        binaries = airflow_db.bin_dir(settings)
        if binaries is None:
            raise StackError("PostgreSQL is not installed (run `make install`)")
        result.append(
            Program(
                "airflow-db",
                airflow_db.server_command(settings, binaries),
                priority=10,
                user=airflow_db.run_as(settings),
                stop_signal="INT",
            )
        )
    svc = settings.services
    for name, app, port in (
        ("external-api", "producer.standin.app:create_app()", svc.external_api_port),
        ("events-api", "producer.events.app:create_app()", svc.flask_port),
    ):
        result.append(Program(name, gunicorn_command(settings, app, port), priority=30))
    # One program per group member, each with its own instance name (its pipeline_status
    # document) and port; the group moves a dead member's partitions to the others.
    for member in settings.consumer_members():
        consumer_argv = [str(VENV_BIN / "python"), "-m", "consumer", "--port", str(member.port)]
        result.append(
            Program(
                member.name,
                consumer_argv,
                priority=40,
                cwd=REPO_ROOT,
                env={"HEADWATER_CONSUMER_INSTANCE": member.name},
            )
        )
    for name, argv in airflow_proc.airflow_programs(settings).items():
        # Started by `up` once the metadata DB is migrated, not when supervisord starts.
        result.append(
            Program(name, argv, priority=50, start_s=5, stop_as_group=False, autostart=False)
        )
    return result


def gunicorn_command(settings: Settings, app: str, port: int) -> list[str]:
    """argv serving a Flask app factory with gunicorn."""
    if app.startswith("producer.events."):
        # The events API: gevent, so a slow client holds a greenlet (cut off by the header and
        # body deadlines of ServiceSettings) rather than a thread; blocking SQLite calls run on
        # its native threadpool, gunicorn's own errors are JSON (producer/events/server.py).
        concurrency = [
            "--worker-class",
            "producer.events.server.EventsWorker",
            "--worker-connections",
            str(settings.services.events_worker_connections),
        ]
    else:
        # The stand-in: threads (its requests mostly wait on file reads).
        concurrency = ["--worker-class", "gthread", "--threads", "8"]
    return [
        str(VENV_BIN / "gunicorn"),
        "--bind",
        f"{settings.services.host}:{port}",
        "--workers",
        str(settings.services.gunicorn_workers),
        *concurrency,
        "--graceful-timeout",
        "20",
        "--access-logfile",
        "-",
        # gunicorn 27 otherwise shares one control socket (~/.gunicorn) among all its servers.
        "--no-control-socket",
        "--chdir",
        str(REPO_ROOT),
        app,
    ]


def missing_installs(settings: Settings) -> list[str]:
    """What `make install` has not put in place yet."""
    missing = []
    if not (settings.stack.cache_dir / "kafka" / "libs").is_dir():
        missing.append("Kafka jars (.cache/kafka/libs)")
    if settings.mongo.embedded and not mongo_server.is_built(settings):
        missing.append("MongoDB-wire server (.cache/mongo-server)")
    if not (VENV_BIN / "airflow").exists():
        missing.append("Python virtualenv with Airflow (.venv)")
    if airflow_db.embedded(settings) and airflow_db.bin_dir(settings) is None:
        missing.append("PostgreSQL (Debian's postgresql package)")
    return missing


def stack_env(settings: Settings) -> dict[str, str]:
    """Environment every supervised process inherits."""
    env = dict(os.environ)
    env.update(airflow_proc.airflow_env(settings))
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def _say(message: str) -> None:
    print(f"[stack] {message}", flush=True)


def up(settings: Settings) -> None:
    """Start (or complete) the stack and return once every service is healthy."""
    started = time.monotonic()
    missing = missing_installs(settings)
    if missing:
        raise StackError("not installed: " + "; ".join(missing) + " (run `make install`)")
    for path in (settings.stack.log_dir, settings.stack.data_dir):
        path.mkdir(parents=True, exist_ok=True)

    # A program held down by a test that never released it would otherwise wait forever.
    for hold in supervisor.hold_dir(settings).glob("*"):
        hold.unlink()
    kafka_cluster.write_configs(settings)
    formatted = kafka_cluster.format_storage(settings)
    if formatted:
        _say(f"formatted Kafka storage for {', '.join(formatted)}")
    env = stack_env(settings)
    if airflow_db.embedded(settings) and airflow_db.init_cluster(settings):
        _say(f"initialised the Airflow metadata database in {airflow_db.data_dir(settings)}")

    conf = supervisor.config_path(settings)
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text(supervisor.render_config(settings, programs(settings)))
    if supervisor.is_running(settings):
        _say("supervisord already running: applying config")
        _supervisorctl(settings, "update")
    else:
        _say(f"starting supervisord ({conf})")
        subprocess.run([str(VENV_BIN / "supervisord"), "-c", str(conf)], env=env, check=True)
    if airflow_db.embedded(settings):
        version = airflow_db.wait_ready(settings, settings.stack.start_timeout_s)
        _say(f"Airflow metadata database up (PostgreSQL {version})")
    _say("preparing Airflow metadata database")
    airflow_proc.prepare_airflow(settings, env)
    # Airflow's processes do not autostart (they need the migrated DB): start whatever is stopped.
    _supervisorctl(settings, "start", "all", check=False)

    wait_healthy(settings, settings.stack.start_timeout_s)
    # Every valid source entry: its topic, collection, validator and indexes (an invalid entry is
    # reported and its topic left paused; the others are applied).
    applied = declarations.apply(settings)
    if applied.topics_created:
        _say(f"created topics {', '.join(applied.topics_created)}")
    _say(f"MongoDB collections and indexes ready in database {settings.mongo.db}")
    for name, problem in sorted(applied.problems.items()):
        _say(f"source {name} NOT applied (its topic stays paused): {problem}")
    for path, problem in sorted(applied.file_problems.items()):
        _say(f"declarations file {path}: {problem}")
    running: list[str] = []
    if settings.airflow.unpause_dags:
        sources = load_sources()
        expected = {"ingest_" + name.replace("-", "_") for name in sources}
        # dags/archive.py: one archive DAG per collection that holds source records.
        expected |= {f"archive_{s.collection}" for s in sources.values()}
        expected |= {"rollup_readings", "pipeline_health", "replay_rejected"}
        running = airflow_proc.unpause_dags(settings, expected)
        _say(f"DAGs unpaused: {', '.join(running)}")
    _say(f"healthy in {time.monotonic() - started:.1f}s")
    print_summary(settings, running)


def _supervisorctl(settings: Settings, *args: str, check: bool = True) -> str:
    cmd = [str(VENV_BIN / "supervisorctl"), "-c", str(supervisor.config_path(settings)), *args]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    if check and result.returncode != 0:
        raise StackError(f"{' '.join(args)} failed: {result.stdout}{result.stderr}")
    return result.stdout


def wait_healthy(settings: Settings, timeout_s: float) -> list[Check]:
    """Poll every probe until all pass; print each change so a long start shows progress."""
    deadline = time.monotonic() + timeout_s
    last: dict[str, str] = {}
    while True:
        checks = check_all(settings)
        for check in checks:
            state = f"{'ok' if check.ok else 'waiting'}: {check.detail}"
            if last.get(check.name) != state:
                _say(f"{check.name} {state}")
                last[check.name] = state
        if all(c.ok for c in checks):
            return checks
        if time.monotonic() > deadline:
            bad = [c for c in checks if not c.ok]
            details = "; ".join(f"{c.name}: {c.detail}" for c in bad)
            raise StackError(
                f"not healthy after {timeout_s:.0f}s: {details} (logs in {settings.stack.log_dir})"
            )
        time.sleep(2)


def stack_pids(settings: Settings) -> dict[str, int]:
    """PID of supervisord and of every running program (name -> pid)."""
    pids: dict[str, int] = {}
    pid_file = supervisor.pid_path(settings)
    if pid_file.exists():
        pid = int(pid_file.read_text().strip() or 0)
        if pid > 0 and alive(pid):
            pids["supervisord"] = pid
    if supervisor.is_running(settings):
        for info in supervisor.process_info(settings):
            if int(info["pid"]):  # type: ignore[call-overload]
                pids[str(info["name"])] = int(info["pid"])  # type: ignore[call-overload]
    return pids


def descendants(pids: list[int]) -> set[int]:
    """`pids` and every process below them, read from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found: set[int] = set()
    todo = [p for p in pids if p > 0]
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo.extend(children.get(pid, []))
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    # A zombie has exited; it only waits for its parent to read its status.
    return not (stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z")


def down(settings: Settings, timeout_s: float = 150.0) -> None:
    """Stop every program and supervisord; SIGKILL (by PID) whatever outlives the timeout."""
    pids = descendants(list(stack_pids(settings).values()))
    if supervisor.is_running(settings):
        _say("stopping all services")
        supervisor.rpc(settings).supervisor.shutdown()
    elif not pids:
        _say("stack is not running")
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.5)
    leftover = [p for p in pids if alive(p)]
    for pid in leftover:
        os.kill(pid, signal.SIGKILL)
    if leftover:
        _say(f"killed {len(leftover)} processes that did not stop in {timeout_s:.0f}s: {leftover}")
    supervisor.socket_path(settings).unlink(missing_ok=True)
    _say("stopped")


def program_pid(settings: Settings, name: str) -> int:
    """PID of one running program (0 when it is not running)."""
    return int(supervisor.rpc(settings).supervisor.getProcessInfo(name)["pid"])


def kill_program(settings: Settings, name: str, hold_down: bool = True) -> int:
    """SIGKILL one program by its PID (a crash, not a shutdown); returns the PID killed.

    With `hold_down` the supervisor's restart waits (see supervisor.hold_path) until
    `start_program`, so a test can watch the stack without it; otherwise the supervisor restarts
    it at once, as in production.
    """
    pid = program_pid(settings, name)
    if pid <= 0:
        raise StackError(f"{name} is not running")
    if hold_down:
        hold = supervisor.hold_path(settings, name)
        hold.parent.mkdir(parents=True, exist_ok=True)
        hold.touch()
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    log.info("killed name=%s pid=%d hold_down=%s", name, pid, hold_down)
    return pid


def start_program(settings: Settings, name: str, timeout_s: float = 180) -> int:
    """Start one stopped program, wait until the stack is healthy again, and return its PID."""
    return start_programs(settings, [name], timeout_s)[name]


def start_programs(settings: Settings, names: list[str], timeout_s: float = 180) -> dict[str, int]:
    """Start stopped programs (all released before the wait: each one's health check needs the
    others, e.g. every consumer member), wait until the stack is healthy, return their PIDs."""
    rpc = supervisor.rpc(settings, timeout_s=120)
    for name in names:
        supervisor.hold_path(settings, name).unlink(missing_ok=True)
        if rpc.supervisor.getProcessInfo(name)["statename"] not in ("RUNNING", "STARTING"):
            rpc.supervisor.startProcess(name, False)
    # A restarted broker is only back once it has caught up: every ISR full again.
    deadline = time.monotonic() + timeout_s
    while not all(c.ok for c in check_all(settings)):
        if time.monotonic() > deadline:
            raise StackError(
                f"stack not healthy {timeout_s:.0f}s after restarting {', '.join(names)}"
            )
        time.sleep(1)
    return {name: program_pid(settings, name) for name in names}


def rss_mib(pid: int) -> float:
    """Resident memory of a process and all its descendants, in MiB."""
    total_kib = 0
    for proc in descendants([pid]):
        try:
            status_text = Path(f"/proc/{proc}/status").read_text()
        except OSError:
            continue
        for line in status_text.splitlines():
            if line.startswith("VmRSS:"):
                total_kib += int(line.split()[1])
    return total_kib / 1024


def status(settings: Settings) -> bool:
    """Print each program's state, memory and each health check; True when all is well."""
    ok = True
    if supervisor.is_running(settings):
        total = 0.0
        for info in supervisor.process_info(settings):
            pid = int(info["pid"])  # type: ignore[call-overload]
            rss = rss_mib(pid) if pid else 0.0
            total += rss
            name, state = info["name"], info["statename"]
            print(f"{name:<24} {state:<10} {rss:7.0f} MiB  {info['description']}")
            ok = ok and state == "RUNNING"
        print(f"{'all services':<35} {total:7.0f} MiB resident")
    else:
        print("supervisord is not running (make up starts the stack)")
        ok = False
    for check in check_all(settings):
        print(f"health {check.name:<17} {'ok  ' if check.ok else 'FAIL'} {check.detail}")
        ok = ok and check.ok
    print(describe_group(settings))
    return ok


def describe_group(settings: Settings) -> str:
    """One line: the consumer group's state and how many partitions each member owns (as the
    group coordinator sees it; a killed member is listed until its session times out)."""
    group = settings.consumer.group or settings.kafka.consumer_group
    try:
        state, members = group_members(admin_client(settings, log_level="0"), group, 5.0)
    except Exception as exc:  # noqa: BLE001 - status reports, never raises
        return f"group  {group}: not described ({type(exc).__name__}: {exc})"
    owned = ", ".join(f"{m.client_id} {len(m.partitions)} partitions" for m in members)
    return f"group  {group} {state}: {len(members)} members{': ' + owned if owned else ''}"


def print_summary(settings: Settings, dags: list[str] | None = None) -> None:
    """Where everything is, for the person who just ran `make up`."""
    a, k, m, svc = settings.airflow, settings.kafka, settings.mongo, settings.services
    embedded = " (embedded server)" if m.embedded else ""
    group = settings.consumer.group or k.consumer_group
    consumers = ", ".join(f"{c.name} {c.url}" for c in settings.consumer_members())
    print(
        f"""
Headwater stack is up ({settings.stack.run_dir})
  Airflow UI     {a.base_url}   login {a.user} / {a.password.get_secret_value()}
  Airflow DB     {redact_uri(airflow_proc.sql_alchemy_conn(settings))}
  Kafka          {k.bootstrap_servers} (controller {k.host}:{k.controller_port})
  MongoDB        {redact_uri(m.uri)} database {m.db}{embedded}
  mongosh        make mongosh
  Events API     http://{svc.host}:{svc.flask_port}   (POST /events with header X-API-Key)
  External API   http://{svc.host}:{svc.external_api_port}   (stand-in: /devices and data files)
  Consumers      {consumers}   (/healthz, /metrics; group {group})
  Topics         {", ".join(pipeline_topics())}
  Logs           {settings.stack.log_dir}  (make logs)
  DAGs running   {", ".join(dags or []) or "none (paused: unpause them in the UI)"}
  Status / stop  make status / make down
""",
        flush=True,
    )


def logs(settings: Settings) -> None:
    """Follow every service's log."""
    files = sorted(str(p) for p in settings.stack.log_dir.glob("*.log"))
    if not files:
        print(f"no logs in {settings.stack.log_dir}")
        return
    os.execvp("tail", ["tail", "-n", "20", "-F", *files])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.stack", description=__doc__)
    parser.add_argument(
        "command", choices=["up", "down", "status", "logs", "running", "pids", "airflow"]
    )
    parser.add_argument("args", nargs=argparse.REMAINDER, help="airflow: the CLI's arguments")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = get_settings()
    try:
        if args.command == "up":
            up(settings)
        elif args.command == "down":
            down(settings)
        elif args.command == "status":
            return 0 if status(settings) else 1
        elif args.command == "logs":
            logs(settings)
        elif args.command == "running":
            return 0 if supervisor.is_running(settings) else 1
        elif args.command == "airflow":
            # The Airflow CLI with the stack's environment (home, metadata DB, connections).
            env = stack_env(settings)
            os.execve(str(VENV_BIN / "airflow"), ["airflow", *args.args], env)
        elif args.command == "pids":
            for name, pid in stack_pids(settings).items():
                print(name, pid)
    except StackError as exc:
        print(f"[stack] error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
