"""Helpers for tests that start their own HTTP server process on loopback."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests

START_TIMEOUT_S = 30.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_healthy(
    url: str, process: subprocess.Popen[bytes], log_path: Path, what: str = "server"
) -> None:
    """Poll `url`/healthz until 200; fail with the server's log if it exits or never answers."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{what} exited {process.returncode}:\n{log_path.read_text()}")
        try:
            # A slow first answer on a loaded machine is no failure: retry until the deadline.
            if requests.get(f"{url}/healthz", timeout=5).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    pytest.fail(f"{what} not healthy after {START_TIMEOUT_S}s:\n{log_path.read_text()}")
