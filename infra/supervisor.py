"""supervisord for the local stack: config rendering (pure) and a thin XML-RPC client."""

from __future__ import annotations

import http.client
import shlex
import socket
import xmlrpc.client
from dataclasses import dataclass, field
from pathlib import Path

from headwater.settings import Settings


@dataclass(frozen=True)
class Program:
    """One supervised long-running process."""

    name: str
    argv: list[str]
    # Lower starts first and stops last: the Kafka controller outlives its brokers.
    priority: int = 100
    # Kafka's controlled shutdown and Airflow's task draining need time; SIGKILL comes after this.
    stop_wait_s: int = 60
    cwd: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    start_s: int = 3
    # Airflow's processes stop their own children on SIGTERM; signalling the whole group at once
    # makes forked workers die mid-task. killasgroup still applies to the SIGKILL fallback.
    stop_as_group: bool = True
    # False: started explicitly once its prerequisites hold (Airflow waits for its DB migration).
    autostart: bool = True
    # Run as this OS user (supervisord runs as root); None = supervisord's own user.
    user: str | None = None
    # PostgreSQL's TERM is a "smart" shutdown that waits for every client; INT is the fast one.
    stop_signal: str = "TERM"


def hold_dir(settings: Settings) -> Path:
    return settings.stack.run_dir / "hold"


def hold_path(settings: Settings, name: str) -> Path:
    """While this file exists, a (re)start of program `name` waits before running it."""
    return hold_dir(settings) / name


# Each program starts through this: wait while its hold file exists, then exec the real command
# (same PID, so signals and supervision go to the service itself). Tests that SIGKILL a service
# create the hold file first, so the supervisor's immediate restart cannot race them.
_HOLD_WRAPPER = 'while [ -e "$0" ]; do sleep 0.2; done; exec "$@"'


def wrapped_argv(settings: Settings, program: Program) -> list[str]:
    return ["sh", "-c", _HOLD_WRAPPER, str(hold_path(settings, program.name)), *program.argv]


def socket_path(settings: Settings) -> Path:
    return settings.stack.run_dir / "supervisor.sock"


def config_path(settings: Settings) -> Path:
    return settings.stack.run_dir / "conf" / "supervisord.conf"


def pid_path(settings: Settings) -> Path:
    return settings.stack.run_dir / "supervisord.pid"


def _quote(value: str) -> str:
    # supervisord expands %(...)s in most values, so a literal % must be doubled.
    return value.replace("%", "%%")


def render_config(settings: Settings, programs: list[Program]) -> str:
    """The supervisord.conf text that runs `programs` with logs under the stack's log dir."""
    log_dir = settings.stack.log_dir
    lines = [
        "[unix_http_server]",
        f"file={socket_path(settings)}",
        "chmod=0700",
        "",
        "[supervisord]",
        f"logfile={log_dir / 'supervisord.log'}",
        f"pidfile={pid_path(settings)}",
        "logfile_maxbytes=10MB",
        "logfile_backups=2",
        "loglevel=info",
        f"identifier={settings.stack.name}",
        "",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "",
        "[supervisorctl]",
        f"serverurl=unix://{socket_path(settings)}",
        "",
    ]
    for program in programs:
        lines += [
            f"[program:{program.name}]",
            f"command={_quote(shlex.join(wrapped_argv(settings, program)))}",
            f"priority={program.priority}",
            f"autostart={str(program.autostart).lower()}",
            "autorestart=true",
            f"startsecs={program.start_s}",
            "startretries=10",
            f"stopwaitsecs={program.stop_wait_s}",
            f"stopsignal={program.stop_signal}",
            # Whatever a program forked dies with it if it outlives the stop timeout.
            f"stopasgroup={str(program.stop_as_group).lower()}",
            "killasgroup=true",
            "redirect_stderr=true",
            f"stdout_logfile={log_dir / (program.name + '.log')}",
            "stdout_logfile_maxbytes=20MB",
            "stdout_logfile_backups=3",
        ]
        if program.cwd is not None:
            lines.append(f"directory={program.cwd}")
        if program.user is not None:
            lines.append(f"user={program.user}")
        if program.env:
            pairs = ",".join(f'{k}="{_quote(v)}"' for k, v in sorted(program.env.items()))
            lines.append(f"environment={pairs}")
        lines.append("")
    return "\n".join(lines)


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


class _UnixTransport(xmlrpc.client.Transport):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__()
        self._path = path
        self._timeout = timeout

    def make_connection(self, host: object) -> http.client.HTTPConnection:
        return _UnixHTTPConnection(self._path, self._timeout)


def rpc(settings: Settings, timeout_s: float = 10.0) -> xmlrpc.client.ServerProxy:
    """An XML-RPC proxy to the stack's supervisord over its unix socket."""
    transport = _UnixTransport(str(socket_path(settings)), timeout_s)
    return xmlrpc.client.ServerProxy("http://localhost", transport=transport)


def is_running(settings: Settings) -> bool:
    """True when this stack's supervisord answers on its socket."""
    if not socket_path(settings).exists():
        return False
    try:
        return rpc(settings, timeout_s=3).supervisor.getState()["statename"] == "RUNNING"
    except (OSError, xmlrpc.client.Error):
        return False


def process_info(settings: Settings) -> list[dict[str, object]]:
    """supervisord's view of every program: name, statename, pid, description."""
    return list(rpc(settings).supervisor.getAllProcessInfo())
