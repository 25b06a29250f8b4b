"""What keeps slow clients from holding the events API: body deadlines, the SQLite offload, the
worker's settings (the real server is tested in tests/integration/test_events_http.py)."""

from __future__ import annotations

import contextvars
import fcntl
import io
import json
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import gevent
import gevent.event
import pytest
from gunicorn.config import Config

from headwater.settings import ServiceSettings, get_settings
from infra.stack import gunicorn_command
from producer.events.app import create_app
from producer.events.deadlines import BodyTimeout, DeadlineBody
from producer.events.offload import (
    gevent_patched,
    offload_for_this_process,
    run_inline,
    run_on_gevent_threadpool,
)
from producer.events.server import WORKER_CLASS, EventsWorker
from producer.events.store import EventStore
from producer.events.validation import NewEvent

API_KEY = "test-key"
GOOD = {"user_id": "user-1", "event_type": "page.view"}


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@contextmanager
def never_fires(seconds: float, exc: BaseException) -> Iterator[None]:
    yield


class NeverArrives:
    """A body whose bytes never come: each read waits on an event nobody sets (gevent)."""

    def __init__(self) -> None:
        self.reads = 0
        self.failed = False

    def read(self, size: int | None = None) -> bytes:
        self.reads += 1
        gevent.event.Event().wait()
        return b""

    def readline(self, size: int | None = None) -> bytes:
        return self.read(size)


def test_a_body_within_its_deadline_reads_as_it_is() -> None:
    expired: list[bool] = []
    body = DeadlineBody(
        io.BytesIO(b'{"a": 1}\nrest'), 15, never_fires, lambda: expired.append(True), FakeClock()
    )
    assert body.readline() == b'{"a": 1}\n'
    assert body.read() == b"rest"
    assert (expired, body.failed) == ([], False)


def test_a_body_past_its_deadline_is_not_read_and_closes_the_connection() -> None:
    clock = FakeClock()
    expired: list[bool] = []
    inner = NeverArrives()
    body = DeadlineBody(inner, 15, never_fires, lambda: expired.append(True), clock)
    clock.now += 15
    with pytest.raises(BodyTimeout) as raised:
        body.read(1024)
    assert raised.value.code == 408
    assert "15 s" in str(raised.value.description)
    with pytest.raises(BodyTimeout):
        list(body)
    assert inner.reads == 0
    assert expired == [True]  # told once, however often it is read after
    assert body.failed


def test_a_read_that_waits_past_the_deadline_is_cut_off_by_the_timer() -> None:
    expired: list[bool] = []
    inner = NeverArrives()
    body = DeadlineBody(inner, 0.05, gevent.Timeout, lambda: expired.append(True))
    with pytest.raises(BodyTimeout):
        body.read()
    assert (inner.reads, expired, body.failed) == (1, [True], True)


def test_the_app_answers_a_body_cut_off_by_its_deadline_with_a_json_408(tmp_path: Path) -> None:
    app = create_app({"TESTING": True, "DATABASE": tmp_path / "events.db", "API_KEY": API_KEY})
    clock = FakeClock()
    sent = json.dumps(GOOD).encode()
    slow = DeadlineBody(io.BytesIO(sent), 15, never_fires, lambda: None, clock)
    clock.now += 16
    response = app.test_client().post(
        "/events",
        data=sent,
        environ_overrides={"wsgi.input": slow},
        content_type="application/json",
        headers={"X-API-Key": API_KEY},
    )
    assert response.status_code == 408
    assert response.is_json
    body = response.get_json()
    assert body["error"] == "request_timeout"
    assert [(d["field"], d["problem"]) for d in body["details"]] == [
        ("body", "was not received in full within 15 s")
    ]
    assert app.test_client().get("/healthz").get_json()["events"] == 0


# ---- blocking SQLite calls off the gevent loop --------------------------------------------------


def test_outside_gevent_the_store_calls_sqlite_inline() -> None:
    assert not gevent_patched()
    assert offload_for_this_process() is run_inline


def test_an_offloaded_call_runs_on_a_native_thread_with_the_callers_context() -> None:
    request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id")
    request_id.set("r-1")
    seen = run_on_gevent_threadpool(lambda: (request_id.get(), threading.get_ident()))
    assert seen[0] == "r-1"
    assert seen[1] != threading.get_ident()


def test_an_offloaded_calls_error_is_raised_in_the_caller() -> None:
    def conflict() -> None:
        raise KeyError("taken")

    with pytest.raises(KeyError, match="taken"):
        run_on_gevent_threadpool(conflict)


def test_a_write_waiting_for_the_other_process_leaves_the_loop_serving(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "events.db", offload=run_on_gevent_threadpool)
    store.open().close()  # schema made
    event = NewEvent("user-1", "page.view", None, {})
    with open(store.write_lock.path, "a+b") as other_process:
        # Another open file description of the lock file: as the other worker process, mid-commit.
        fcntl.flock(other_process, fcntl.LOCK_EX)
        db = store.open()
        writer = gevent.spawn(db.save, [event], lambda: 1_800_000_000_000)
        served = gevent.spawn(lambda: "served")
        # The loop runs another greenlet to the end while the writer waits on the flock.
        assert served.get(timeout=30) == "served"
        assert not writer.ready()
        fcntl.flock(other_process, fcntl.LOCK_UN)
    saved = writer.get(timeout=30)
    assert [e.user_id for e in saved.events] == ["user-1"]
    assert db.count() == 1
    db.close()


# ---- the worker and its settings ---------------------------------------------------------------


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """Set variables for get_settings(), which reads them once per process (cached)."""
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()  # the next reader sees the environment as it was


def test_the_worker_takes_its_deadlines_from_the_settings(environment: pytest.MonkeyPatch) -> None:
    environment.setenv("HEADWATER_EVENTS_HEADER_TIMEOUT_S", "4")
    environment.setenv("HEADWATER_EVENTS_BODY_TIMEOUT_S", "6.5")
    worker = EventsWorker(0, 0, [], None, 30, Config(), None)
    try:
        assert (worker.header_timeout_s, worker.body_timeout_s) == (4, 6.5)
        header_deadline: AbstractContextManager[object] = worker.timeout_ctx()
        assert isinstance(header_deadline, gevent.Timeout)
        assert header_deadline.seconds == 4
    finally:
        worker.tmp.close()


def test_deadlines_must_be_positive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEADWATER_EVENTS_BODY_TIMEOUT_S", "0")
    with pytest.raises(ValueError, match="events_body_timeout_s"):
        ServiceSettings()


def test_the_events_api_serves_its_connections_on_greenlets_not_threads() -> None:
    settings = get_settings()
    argv = gunicorn_command(settings, "producer.events.app:create_app()", 5000)
    assert argv[argv.index("--worker-class") + 1] == WORKER_CLASS
    connections = argv[argv.index("--worker-connections") + 1]
    assert connections == str(settings.services.events_worker_connections)
    assert "--threads" not in argv
