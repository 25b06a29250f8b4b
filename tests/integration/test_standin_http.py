"""The stand-in served by gunicorn over real HTTP, as the stack runs it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from headwater.settings import REPO_ROOT, get_settings
from producer.standin import generate_data
from tests.integration.http_helpers import free_port, wait_healthy

COMMITTED_DATA = Path(generate_data.__file__).parent / "data"
GUNICORN = Path(sys.executable).parent / "gunicorn"


@dataclass
class Server:
    url: str
    data_dir: Path
    extra_dir: Path
    process: subprocess.Popen[bytes]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    data_dir = shutil.copytree(COMMITTED_DATA, tmp_path / "data")
    port = free_port()
    log_path = tmp_path / "gunicorn.log"
    extra_dir = tmp_path / "extra"  # created by the test that needs it
    env = {
        **os.environ,
        "HEADWATER_STANDIN_DATA_DIR": str(data_dir),
        "HEADWATER_STANDIN_EXTRA_DATA_DIR": str(extra_dir),
    }
    argv = [
        str(GUNICORN),
        "-b",
        f"127.0.0.1:{port}",
        "--workers",
        "2",
        "--worker-class",
        "gthread",
        "--threads",
        "4",
        "producer.standin.app:create_app()",
    ]
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            argv, cwd=REPO_ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT
        )
    running = Server(f"http://127.0.0.1:{port}", data_dir, extra_dir, process)
    try:
        wait_healthy(running.url, process, log_path, "stand-in")
        yield running
    finally:
        # Only the process this fixture started, by its PID.
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def get_json(url: str, **params: Any) -> dict[str, Any]:
    response = requests.get(url, params=params, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def test_ten_minute_devices_window_walks_to_exactly_every_reading(server: Server) -> None:
    window = {"since": "2026-01-05T12:00:00Z", "until": "2026-01-05T12:10:00Z", "limit": 1000}
    keys: list[tuple[str, str]] = []
    cursor = None
    for _ in range(100):
        body = get_json(f"{server.url}/devices", **window, **({"cursor": cursor} if cursor else {}))
        keys += [(r["device_id"], r["ts"]) for r in body["records"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert cursor is None
    # The server reads the same environment as this test: 8 devices unless overridden.
    devices = get_settings().services.simulator_devices
    assert len(keys) == devices * 600
    assert len(set(keys)) == devices * 600


def test_a_file_copied_in_while_running_becomes_a_route(server: Server) -> None:
    assert requests.get(f"{server.url}/late-metrics", timeout=10).status_code == 404
    shutil.copy(server.data_dir / "machine-metrics.jsonl", server.data_dir / "late-metrics.jsonl")
    # Several requests so that both workers (each with its own cache) answer at least once.
    for _ in range(6):
        body = get_json(f"{server.url}/late-metrics", since=1_624_320_000, until=1_624_320_300)
        assert body["count"] == 20 and body["next_cursor"] is None
    assert "/late-metrics" in get_json(f"{server.url}/healthz")["routes"]


def test_the_extra_folder_is_served_once_created_and_never_shadows_the_data_folder(
    server: Server,
) -> None:
    assert requests.get(f"{server.url}/extra-metrics", timeout=10).status_code == 404
    server.extra_dir.mkdir()
    shutil.copy(server.data_dir / "machine-metrics.jsonl", server.extra_dir / "extra-metrics.jsonl")
    (server.extra_dir / "machine-metrics.jsonl").write_text('{"id": 99, "time": 1624320000}\n')
    window = {"since": 1_624_320_000, "until": 1_624_320_300}
    # Several requests so that both workers (each with its own catalog) answer at least once.
    for _ in range(6):
        assert get_json(f"{server.url}/extra-metrics", **window)["count"] == 20
        assert get_json(f"{server.url}/machine-metrics", **window)["count"] == 20
    routes = get_json(f"{server.url}/healthz")["routes"]
    assert "/extra-metrics" in routes and routes.count("/machine-metrics") == 1


def test_errors_over_http_are_json(server: Server) -> None:
    response = requests.get(f"{server.url}/devices", params={"since": "2026-01-05"}, timeout=10)
    assert response.status_code == 400
    assert response.json()["details"] == [
        {"field": "until", "problem": "required (or dateTo as YYYY-MM-DD)"}
    ]
    response = requests.get(f"{server.url}/nowhere", timeout=10)
    assert response.status_code == 404
    assert "/machine-metrics" in response.json()["routes"]
