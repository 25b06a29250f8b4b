"""An events API started by a bench: the stack's gunicorn argv on a free loopback port.

Its database lives under a run dir the bench chooses (a scratch one), so it needs no running
stack and leaves nothing behind. `source_root` serves another checkout of the code (e.g. the
commit before a change, for an interleaved before/after comparison) with the same virtualenv.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from headwater.settings import REPO_ROOT, Settings
from infra.stack import gunicorn_command

APP = "producer.events.app:create_app()"
HOST = "127.0.0.1"
START_TIMEOUT_S = 60.0


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@dataclass
class ApiServer:
    """The events API this bench started, in a process group of its own."""

    process: subprocess.Popen[bytes]
    port: int
    argv: list[str]

    @property
    def url(self) -> str:
        """Its base URL."""
        return f"http://{HOST}:{self.port}"

    def cpu_seconds(self) -> float:
        """CPU seconds used so far by the master and its workers (its process group)."""
        tick = os.sysconf("SC_CLK_TCK")
        total = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rpartition(")")[2].split()
            except OSError:
                continue
            if int(fields[2]) == self.process.pid:  # pgrp
                total += int(fields[11]) + int(fields[12])  # utime + stime
        return total / tick

    def stop(self) -> None:
        """Stop the whole group (master and workers) by its id."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)


def start_api(
    settings: Settings,
    run_dir: Path,
    log_path: Path,
    env: dict[str, str] | None = None,
    source_root: Path = REPO_ROOT,
) -> ApiServer:
    """The stack's events API argv on a free loopback port, its database under `run_dir`."""
    port = free_port()
    argv = gunicorn_command(settings, APP, port)
    argv[argv.index("--bind") + 1] = f"{HOST}:{port}"
    argv[argv.index("--chdir") + 1] = str(source_root)
    process_env = {**os.environ, "STACK_RUN_DIR": str(run_dir), **(env or {})}
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            argv, cwd=source_root, env=process_env, stdout=log_file, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    server = ApiServer(process, port, argv)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"events API exited {process.returncode}: {log_path.read_text()}")
        try:
            if requests.get(f"{server.url}/healthz", timeout=5).status_code == 200:
                return server
        except requests.RequestException:
            pass
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"events API not healthy after {START_TIMEOUT_S:.0f}s: {log_path}")
