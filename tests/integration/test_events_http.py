"""The events API under real gunicorn (the stack's argv): concurrency, group commit, kill -9, bad
input, slow clients."""

from __future__ import annotations

import fcntl
import itertools
import json
import os
import secrets
import signal
import socket
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from headwater.settings import REPO_ROOT, get_settings
from infra.stack import gunicorn_command
from tests.integration.http_helpers import free_port, wait_healthy

APP = "producer.events.app:create_app()"
MAX_BODY_BYTES = 256 * 1024
BATCH_LIMIT = 50
GOOD = {"user_id": "user-1", "event_type": "page.view"}


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def kill_group(self) -> None:
        """SIGKILL the master and every worker: the process group this test started, by its id."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        deadline = time.monotonic() + 10
        while living_members(self.process.pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not living_members(self.process.pid), "gunicorn workers survived SIGKILL"


def living_members(pgid: int) -> list[int]:
    """PIDs of process group `pgid` still running (a zombie, awaiting init, counts as dead)."""
    living = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # pid (comm) state ppid pgrp ...; comm may hold spaces, so split after its ")".
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            living.append(int(stat.parent.name))
    return living


@pytest.fixture
def api_key() -> str:
    return secrets.token_urlsafe(16)


@pytest.fixture
def start_server(
    tmp_path: Path, api_key: str, request: pytest.FixtureRequest
) -> Callable[..., Server]:
    """Starts gunicorn on this test's run dir (its own DB); every start is killed at the end.

    `workers` replaces the stack's number of workers; keyword arguments are settings for this
    start, e.g. HEADWATER_EVENTS_BODY_TIMEOUT_S="3".
    """
    env = {
        **os.environ,
        "STACK_RUN_DIR": str(tmp_path / "run"),
        "HEADWATER_API_KEY": api_key,
        "HEADWATER_EVENTS_MAX_BODY_BYTES": str(MAX_BODY_BYTES),
        "HEADWATER_EVENTS_BATCH_LIMIT": str(BATCH_LIMIT),
    }
    starts = 0

    def start(workers: int | None = None, **settings_env: str) -> Server:
        nonlocal starts
        starts += 1
        port = free_port()
        log_path = tmp_path / f"gunicorn-{starts}.log"
        # The stack's own command (worker class, threads, no shared control socket), on a free
        # port; its own process group, killed whole.
        argv = gunicorn_command(get_settings(), APP, port)
        argv[argv.index("--bind") + 1] = f"127.0.0.1:{port}"
        if workers is not None:
            argv[argv.index("--workers") + 1] = str(workers)
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(
                argv,
                cwd=REPO_ROOT,
                env={**env, **settings_env},
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        server = Server(f"http://127.0.0.1:{port}", process, log_path)
        request.addfinalizer(server.kill_group)
        wait_healthy(server.url, server.process, server.log_path, "events API")
        return server

    return start


@pytest.fixture
def server(start_server: Callable[..., Server]) -> Server:
    return start_server()


class Client:
    """requests with the API key, one session per thread."""

    def __init__(self, url: str, api_key: str) -> None:
        self.url = url
        self.api_key = api_key
        self._local = threading.local()

    def _session(self) -> requests.Session:
        if not hasattr(self._local, "session"):
            self._local.session = requests.Session()
        return self._local.session

    def post(self, path: str, body: Any, **headers: str) -> requests.Response:
        all_headers = {"X-API-Key": self.api_key, "Content-Type": "application/json", **headers}
        data = body if isinstance(body, bytes | str) else json.dumps(body)
        return self._session().post(self.url + path, data=data, headers=all_headers, timeout=30)

    def count(self) -> int:
        return int(self.health()["events"])

    def health(self) -> dict[str, Any]:
        response = requests.get(f"{self.url}/healthz", timeout=10)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def all_events(self) -> list[dict[str, Any]]:
        events, cursor = [], None
        for _ in range(1000):
            params = {"limit": 100, **({"cursor": cursor} if cursor else {})}
            response = requests.get(f"{self.url}/events", params=params, timeout=10)
            assert response.status_code == 200, response.text
            events += response.json()["events"]
            cursor = response.json()["next_cursor"]
            if cursor is None:
                return events
        raise AssertionError("paging never ended")


def client_for(server: Server, api_key: str) -> Client:
    return Client(server.url, api_key)


def test_200_concurrent_posts_are_all_stored_once_in_id_order(server: Server, api_key: str) -> None:
    client = client_for(server, api_key)

    def post_one(i: int) -> requests.Response:
        return client.post("/events", {**GOOD, "user_id": f"user-{i}", "properties": {"i": i}})

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=32) as pool:
        responses = list(pool.map(post_one, range(200)))
    elapsed = time.monotonic() - started
    assert [r.status_code for r in responses] == [201] * 200, [r.text for r in responses[:3]]
    acked = [r.json()["event"] for r in responses]
    assert len({e["event_id"] for e in acked}) == 200
    assert sorted(e["properties"]["i"] for e in acked) == list(range(200))

    stored = client.all_events()
    assert client.count() == 200
    assert sorted(stored, key=lambda e: e["event_id"]) == sorted(acked, key=lambda e: e["event_id"])
    ids = [e["event_id"] for e in stored]  # served in id order
    assert all(a < b for a, b in itertools.pairwise(ids))
    received = [e["received_at"] for e in stored]
    assert received == sorted(received)
    print(f"200 concurrent POSTs in {elapsed:.2f}s")


def test_acknowledged_events_survive_kill_9_of_master_and_workers(
    start_server: Callable[[], Server], api_key: str
) -> None:
    server = start_server()
    client = client_for(server, api_key)
    acked: dict[str, dict[str, Any]] = {}  # idempotency key -> event answered 201/200
    failed: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def keep_posting(worker: int) -> None:
        n = 0
        while not stop.is_set():
            key = f"w{worker}-{n}"
            n += 1
            try:
                response = client.post(
                    "/events", {**GOOD, "user_id": key}, **{"Idempotency-Key": key}
                )
            except requests.RequestException:
                # Cut off by the kill: stored or not, nobody was told. Retried after the restart.
                with lock:
                    failed.append(key)
                return
            assert response.status_code == 201, response.text
            with lock:
                acked[key] = response.json()["event"]

    threads = [threading.Thread(target=keep_posting, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 30
    while len(acked) < 100 and time.monotonic() < deadline:
        time.sleep(0.02)
    # Mid-stream, without warning: master and both workers at once.
    server.kill_group()
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    assert len(acked) >= 100

    restarted = start_server()
    client = client_for(restarted, api_key)
    stored = {e["event_id"]: e for e in client.all_events()}
    for event in acked.values():
        assert stored.get(event["event_id"]) == event
    # Requests cut off by the kill are retried with their keys: each lands exactly once.
    for key in failed:
        response = client.post("/events", {**GOOD, "user_id": key}, **{"Idempotency-Key": key})
        assert response.status_code in (200, 201), response.text
    assert client.count() == len(acked) + len(failed)
    user_ids = [e["user_id"] for e in client.all_events()]
    assert sorted(user_ids) == sorted([*acked, *failed])
    print(f"acked before kill: {len(acked)}, cut off and retried: {len(failed)}")


def test_same_idempotency_key_over_http_stores_one_event(server: Server, api_key: str) -> None:
    client = client_for(server, api_key)
    headers = {"Idempotency-Key": "checkout-42"}
    first = client.post("/events", GOOD, **headers)
    again = client.post("/events", GOOD, **headers)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    # Racing copies of one request, spread over both workers, still store one batch.
    batch = {"events": [{**GOOD, "user_id": f"u{i}"} for i in range(3)]}
    with ThreadPoolExecutor(max_workers=16) as pool:
        racing = list(
            pool.map(
                lambda _: client.post("/events/batch", batch, **{"Idempotency-Key": "b-1"}),
                range(16),
            )
        )
    assert sorted(r.status_code for r in racing) == [200] * 15 + [201]
    assert len({json.dumps(r.json()) for r in racing}) == 1
    conflict = client.post("/events", {**GOOD, "user_id": "other"}, **headers)
    assert conflict.status_code == 409
    assert client.count() == 4


# ---- group commit: concurrent writes share a transaction ------------------------------------


@contextmanager
def other_writer_holding_the_lock(tmp_path: Path) -> Iterator[None]:
    """Hold the events database's write lock, as another worker mid-commit does."""
    lock_path = tmp_path / "run" / "data" / "events" / "events.db.lock"
    with lock_path.open("a+b") as other:
        fcntl.flock(other, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(other, fcntl.LOCK_UN)


def post_queued(
    client: Client, pool: ThreadPoolExecutor, posts: list[tuple[str, Any, dict[str, str]]]
) -> list[Future[requests.Response]]:
    """Send each POST from a thread of its own, the next once the one worker holds it pending.

    With the write lock held elsewhere, the first becomes the worker's leader and waits for it;
    the others queue behind it in the order sent.
    """
    futures = []
    for i, (path, body, headers) in enumerate(posts):
        futures.append(pool.submit(client.post, path, body, **headers))
        deadline = time.monotonic() + 30
        while client.health()["writes_pending"] < i + 1:
            assert time.monotonic() < deadline, f"POST {i} never reached the group commit"
            assert not futures[-1].done(), futures[-1].result().text
    return futures


def test_concurrent_posts_share_commits_each_event_stored_once_in_commit_order(
    start_server: Callable[..., Server], api_key: str, tmp_path: Path
) -> None:
    server = start_server(workers=1)  # one worker, so that every POST queues in the same group
    client = client_for(server, api_key)
    before = client.health()["commits"]
    posts: list[tuple[str, Any, dict[str, str]]] = [
        ("/events", {**GOOD, "user_id": f"user-{i}"}, {}) for i in range(12)
    ]
    posts.append(("/events/batch", {"events": [{**GOOD, "user_id": "b-0"}, GOOD]}, {}))
    with ThreadPoolExecutor(max_workers=len(posts)) as pool:
        with other_writer_holding_the_lock(tmp_path):
            futures = post_queued(client, pool, posts)
        responses = [f.result(timeout=30) for f in futures]
    assert [r.status_code for r in responses] == [201] * len(posts), responses[0].text
    # 13 requests, 2 fsynced transactions: the first alone, the 12 queued meanwhile together.
    assert client.health()["commits"] - before == 2
    answered = [r.json()["event"] for r in responses[:-1]] + responses[-1].json()["events"]
    assert [e["user_id"] for e in answered] == [f"user-{i}" for i in range(12)] + ["b-0", "user-1"]
    ids = [e["event_id"] for e in answered]
    assert all(a < b for a, b in itertools.pairwise(ids))  # commit order, then queue order
    assert client.all_events() == answered  # each stored once, as answered
    for answer in answered:
        one = requests.get(f"{server.url}/events/{answer['event_id']}", timeout=10)
        assert one.json() == {"event": answer}


def test_a_failed_shared_transaction_fails_every_post_in_it_and_stores_none(
    start_server: Callable[..., Server], api_key: str, tmp_path: Path
) -> None:
    server = start_server(workers=1)
    client = client_for(server, api_key)
    before = client.health()["commits"]
    # A storage failure in the middle of a shared transaction, as a broken disk would cause.
    with sqlite3.connect(tmp_path / "run" / "data" / "events" / "events.db") as conn:
        conn.execute(
            "CREATE TRIGGER poison BEFORE INSERT ON events WHEN NEW.user_id = 'poison' "
            "BEGIN SELECT RAISE(ROLLBACK, 'poisoned'); END"
        )
    posts: list[tuple[str, Any, dict[str, str]]] = [
        ("/events", {**GOOD, "user_id": user}, {}) for user in ("first", "u-1", "poison", "u-3")
    ]
    with ThreadPoolExecutor(max_workers=len(posts)) as pool:
        with other_writer_holding_the_lock(tmp_path):
            futures = post_queued(client, pool, posts)
        responses = [f.result(timeout=30) for f in futures]
    assert responses[0].status_code == 201
    # u-1 was in the transaction before the poison, u-3 after it: all three fail, with a 503.
    for response in responses[1:]:
        assert response.status_code == 503, response.text
        assert response.headers["Content-Type"] == "application/json"
        assert response.json()["error"] == "unavailable"
    assert [e["user_id"] for e in client.all_events()] == ["first"]
    assert client.health()["commits"] - before == 1
    assert client.post("/events", {**GOOD, "user_id": "after"}).status_code == 201


def test_idempotent_copies_sharing_a_transaction_store_once_and_replay_the_first_answer(
    start_server: Callable[..., Server], api_key: str, tmp_path: Path
) -> None:
    server = start_server(workers=1)
    client = client_for(server, api_key)
    keyed = {"Idempotency-Key": "checkout-7"}
    posts: list[tuple[str, Any, dict[str, str]]] = [
        ("/events", {**GOOD, "user_id": "first"}, {}),
        ("/events", {**GOOD, "user_id": "u-7"}, keyed),
        ("/events", {**GOOD, "user_id": "u-7"}, keyed),
        ("/events", {**GOOD, "user_id": "someone-else"}, keyed),
        ("/events", {**GOOD, "user_id": "u-7"}, keyed),
    ]
    with ThreadPoolExecutor(max_workers=len(posts)) as pool:
        with other_writer_holding_the_lock(tmp_path):
            futures = post_queued(client, pool, posts)
        responses = [f.result(timeout=30) for f in futures]
    assert [r.status_code for r in responses] == [201, 201, 200, 409, 200]
    assert responses[2].json() == responses[4].json() == responses[1].json()
    assert [e["user_id"] for e in client.all_events()] == ["first", "u-7"]
    again = client.post("/events", {**GOOD, "user_id": "u-7"}, **keyed)
    assert (again.status_code, again.json()) == (200, responses[1].json())


def oversize_chunks() -> Iterator[bytes]:
    # A generator body goes out chunked, without Content-Length.
    yield json.dumps(GOOD).encode()
    for _ in range(2 * MAX_BODY_BYTES // 4096):
        yield b" " * 4096


BAD_INPUT: list[tuple[str, str, Any, dict[str, str], int, str]] = [
    ("malformed json", "/events", '{"user_id": "u",', {}, 400, "body"),
    ("wrong type", "/events", {**GOOD, "user_id": 12}, {}, 400, "user_id"),
    ("missing field", "/events", {"user_id": "u"}, {}, 400, "event_type"),
    ("unknown field", "/events", {**GOOD, "x": 1}, {}, 400, "x"),
    (
        "bad item in batch",
        "/events/batch",
        {"events": [GOOD, {**GOOD, "event_type": "Nope"}]},
        {},
        400,
        "events[1].event_type",
    ),
    # Refused before its body is read, yet the connection stays usable for the next case.
    (
        "no api key, large body",
        "/events",
        " " * (MAX_BODY_BYTES - 1),
        {"X-API-Key": ""},
        401,
        "X-API-Key",
    ),
    ("wrong content type", "/events", GOOD, {"Content-Type": "text/plain"}, 415, "Content-Type"),
    ("no api key", "/events", GOOD, {"X-API-Key": ""}, 401, "X-API-Key"),
]


def test_bad_input_over_http_is_a_json_4xx_and_stores_nothing(server: Server, api_key: str) -> None:
    client = client_for(server, api_key)
    assert client.post("/events", GOOD).status_code == 201
    for name, path, body, headers, status, field in BAD_INPUT:
        response = client.post(path, body, **headers)
        assert response.status_code == status, (name, response.text)
        assert response.headers["Content-Type"] == "application/json", name
        assert field in [d["field"] for d in response.json()["details"]], (name, response.text)
    missing_key = requests.post(f"{server.url}/events", json=GOOD, timeout=10)
    assert missing_key.status_code == 401
    # Over the limit, the body is never read and gunicorn closes the connection after the 413:
    # each of these goes out on a connection of its own.
    oversize = requests.post(
        f"{server.url}/events",
        json={**GOOD, "properties": {"k": "x" * MAX_BODY_BYTES}},
        headers={"X-API-Key": api_key},
        timeout=30,
    )
    assert oversize.status_code == 413, oversize.text
    assert [d["field"] for d in oversize.json()["details"]] == ["body"]
    chunked = requests.post(
        f"{server.url}/events",
        data=oversize_chunks(),
        headers={"X-API-Key": api_key, "Content-Type": "application/json"},
        timeout=30,
    )
    assert chunked.status_code == 413, chunked.text
    not_found = requests.get(f"{server.url}/events/nope", timeout=10)
    assert (not_found.status_code, not_found.json()["error"]) == (404, "not_found")
    assert client.count() == 1


def raw_exchange(server: Server, request: bytes) -> tuple[int, dict[str, str], Any]:
    """Send `request` as bytes on a connection of its own; the status, headers and JSON body."""
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(request)
        raw = b""
        while chunk := conn.recv(65536):
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value for name, _, value in (h.partition(": ") for h in lines)}
    return int(status_line.split()[1]), headers, json.loads(body)


def test_the_servers_own_errors_are_json_like_the_apps(server: Server, api_key: str) -> None:
    # Refused by gunicorn before the app sees them: once HTML, now the API's error shape.
    big_header = requests.get(f"{server.url}/healthz", headers={"X-Big": "x" * 20_000}, timeout=10)
    assert big_header.status_code == 431
    assert big_header.headers["Content-Type"] == "application/json"
    assert big_header.json()["error"] == "request_header_fields_too_large"
    assert [d["field"] for d in big_header.json()["details"]] == ["headers"]
    long_line = requests.get(f"{server.url}/events?since={'9' * 10_240}", timeout=10)
    assert long_line.status_code == 414
    assert long_line.headers["Content-Type"] == "application/json"
    assert [d["field"] for d in long_line.json()["details"]] == ["request_line"]
    status, headers, body = raw_exchange(server, b"NOT A REQUEST LINE\r\n\r\n")
    assert (status, headers["content-type"], body["error"]) == (
        400,
        "application/json",
        "bad_request",
    )
    status, headers, body = raw_exchange(
        server, b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n"
    )
    assert (status, headers["content-type"]) == (400, "application/json")
    assert [d["field"] for d in body["details"]] == ["headers"]
    # A chunked body broken partway is found by gunicorn while the app reads it: 400, not 500.
    broken = (
        f"POST /events HTTP/1.1\r\nHost: x\r\nX-API-Key: {api_key}\r\n"
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        "2\r\n{}XX0\r\n\r\n"
    ).encode()
    status, headers, body = raw_exchange(server, broken)
    assert (status, headers["content-type"]) == (400, "application/json")
    assert (body["error"], [d["field"] for d in body["details"]]) == ("malformed_body", ["body"])
    # The workers that answered them keep serving.
    assert requests.get(f"{server.url}/healthz", timeout=10).status_code == 200


# ---- slow clients: cut off by the deadlines, never holding the API ------------------------------

HEADER_TIMEOUT_S = 2
BODY_TIMEOUT_S = 3
# A trickler sends one byte per tick, for at most this many ticks (far past either deadline).
TICK_S = 0.25
TICKS = 40 * max(HEADER_TIMEOUT_S, BODY_TIMEOUT_S)
SLOW_SOCKETS = 200


def slow_head(api_key: str) -> bytes:
    """A whole POST /events head announcing a body far longer than a trickler ever sends."""
    return (
        f"POST /events HTTP/1.1\r\nHost: x\r\nX-API-Key: {api_key}\r\n"
        "Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
    ).encode()


def trickle_until_cut(server: Server, start: bytes, byte: bytes) -> bytes | None:
    """Send `start`, then `byte` each tick until the server ends the connection.

    What the server answered before it did (b"" for nothing), or None when it never cut us off.
    Each tick waits for the server to answer or close, so the loop ends as soon as it does.
    """
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    received = b""
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(start)
        conn.settimeout(TICK_S)
        for _ in range(TICKS):
            try:
                chunk = conn.recv(65536)
            except TimeoutError:
                try:
                    conn.sendall(byte)
                except OSError:  # closed by the server while we waited
                    return received
                continue
            except ConnectionResetError:
                return received
            if not chunk:
                return received
            received += chunk
    return None


def test_a_client_trickling_its_headers_is_cut_off(
    start_server: Callable[..., Server], api_key: str
) -> None:
    server = start_server(HEADWATER_EVENTS_HEADER_TIMEOUT_S=str(HEADER_TIMEOUT_S))
    answer = trickle_until_cut(server, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ", b"a")
    assert answer is not None, "a client trickling its headers was never cut off"
    # Closed without an answer, as an idle keep-alive connection is.
    assert answer == b""
    assert requests.get(f"{server.url}/healthz", timeout=10).status_code == 200


def test_a_client_trickling_its_body_is_cut_off_with_a_json_408(
    start_server: Callable[..., Server], api_key: str
) -> None:
    server = start_server(HEADWATER_EVENTS_BODY_TIMEOUT_S=str(BODY_TIMEOUT_S))
    answer = trickle_until_cut(server, slow_head(api_key) + b'{"user_id": "u-1"', b" ")
    assert answer is not None, "a client trickling its body was never cut off"
    if answer:  # the 408 arrives unless the close raced it (the socket was still sending)
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408 "), head
        assert b"Content-Type: application/json" in head
        assert b"Connection: close" in head
        error = json.loads(body)
        assert error["error"] == "request_timeout"
        assert [d["field"] for d in error["details"]] == ["body"]
    assert client_for(server, api_key).count() == 0


def test_normal_clients_are_served_while_200_slow_sockets_are_open(
    start_server: Callable[..., Server], api_key: str
) -> None:
    # Deadlines far longer than the test: every slow socket stays open throughout.
    server = start_server(
        HEADWATER_EVENTS_HEADER_TIMEOUT_S="120", HEADWATER_EVENTS_BODY_TIMEOUT_S="120"
    )
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    starts = [b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: a", slow_head(api_key) + b"{"]
    slow: list[socket.socket] = []
    try:
        for i in range(SLOW_SOCKETS):
            conn = socket.create_connection((host, int(port)), timeout=10)
            slow.append(conn)
            conn.sendall(starts[i % 2])  # half stop inside their headers, half in a body
        client = client_for(server, api_key)

        def post_one(i: int) -> requests.Response:
            return client.post("/events", {**GOOD, "user_id": f"user-{i}"})

        with ThreadPoolExecutor(max_workers=8) as pool:
            responses = list(pool.map(post_one, range(50)))
        assert [r.status_code for r in responses] == [201] * 50, responses[0].text
        assert client.count() == 50
        assert requests.get(f"{server.url}/events", timeout=30).json()["count"] == 50
        # ...and the slow sockets were all still held open while the API answered.
        for conn in slow:
            conn.setblocking(False)
            with pytest.raises(BlockingIOError):
                conn.recv(1)
    finally:
        for conn in slow:
            conn.close()
