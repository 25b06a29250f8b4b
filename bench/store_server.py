"""The server under the store bench: whether it answers, its PID and memory, the scratch drop.

Every call is bounded: a server that died (supervisord restarts it) or stopped answering costs
at most SERVER_RETURN_S of waiting, and the bench records what it saw instead of hanging.
"""

from __future__ import annotations

import logging
import threading
import time
import xmlrpc.client
from typing import Any

import psutil
import pymongo
from pymongo import MongoClient
from pymongo.errors import PyMongoError
from store_queries import short_error

from headwater.settings import Settings
from infra.health import check_mongo
from infra.stack import program_pid

log = logging.getLogger("bench.store")

# How long to wait for a server that stopped answering (supervisord restarts one that exited,
# and a large data file takes a while to open).
SERVER_RETURN_S = 180.0
DROP_TIMEOUT_S = 120.0
RSS_INTERVAL_S = 0.5
BYTES_PER_MIB = 1024 * 1024


def server_answers(settings: Settings) -> bool:
    """Whether the server answers ping within the stack's ping bound (a fresh connection)."""
    return check_mongo(settings).ok


def wait_for_server(settings: Settings, max_wait_s: float) -> float | None:
    """Seconds until the server answered ping again, None when it did not within `max_wait_s`."""
    started = time.monotonic()
    while True:
        if server_answers(settings):
            return round(time.monotonic() - started, 1)
        if time.monotonic() - started > max_wait_s:
            return None
        time.sleep(2.0)


class ServerWatch:
    """Whether the server is there for the next measurement: waits (bounded) the first time it is
    not, and after giving up once does not wait again, so a dead server costs one wait."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.gave_up = False

    def unavailable(self) -> str | None:
        """None when the server answers ping (now, or after a bounded wait); else why not."""
        if server_answers(self._settings):
            self.gave_up = False
            return None
        if self.gave_up:
            return "server still not answering"
        waited = wait_for_server(self._settings, SERVER_RETURN_S)
        if waited is None:
            self.gave_up = True
            return f"server not answering for {SERVER_RETURN_S:.0f}s"
        log.warning("store bench: server answered again after %.0fs", waited)
        return None


def mongo_pid(settings: Settings) -> int:
    """The embedded server's PID from the stack's supervisor (0: not running or not known)."""
    if not settings.mongo.embedded:
        return 0
    try:
        return program_pid(settings, "mongo")
    except (OSError, xmlrpc.client.Error) as exc:
        log.warning("store bench: no PID for the mongo program: %s", exc)
        return 0


def rss_mib(pid: int) -> float | None:
    """Resident memory of one process in MiB (None when it is gone)."""
    if pid <= 0:
        return None
    try:
        return psutil.Process(pid).memory_info().rss / BYTES_PER_MIB
    except psutil.Error:
        return None


class RssSampler:
    """Samples the server's RSS in a thread; follows a restarted server to its new PID."""

    def __init__(self, settings: Settings, interval_s: float = RSS_INTERVAL_S) -> None:
        self._settings = settings
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="store-bench-rss", daemon=True)
        self._lock = threading.Lock()
        self.pid = mongo_pid(settings)
        self.pids = [self.pid] if self.pid else []
        self.peak_mib: float | None = None
        self.samples = 0
        self.gone_samples = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def current_mib(self) -> float | None:
        """One sample now (also counted towards the peak)."""
        with self._lock:
            value = rss_mib(self.pid)
            if value is None:
                self.gone_samples += 1
                # Gone: supervisord may have restarted it under another PID.
                pid = mongo_pid(self._settings)
                if pid and pid != self.pid:
                    log.warning("store bench: mongo PID changed %d -> %d", self.pid, pid)
                    self.pid = pid
                    self.pids.append(pid)
                    value = rss_mib(pid)
            if value is not None:
                self.samples += 1
                self.peak_mib = value if self.peak_mib is None else max(self.peak_mib, value)
            return value

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.current_mib()


def drop_databases(client: MongoClient, settings: Settings, names: list[str]) -> dict[str, Any]:
    """Drop every scratch database, waiting (bounded) for a server that went away."""
    if not names:
        return {"dropped": [], "left": []}
    if not server_answers(settings):
        log.warning("store bench: server not answering, waiting to drop %s", names)
        wait_for_server(settings, SERVER_RETURN_S)
    dropped, left = [], []
    for name in names:
        try:
            with pymongo.timeout(DROP_TIMEOUT_S):
                client.drop_database(name)
            dropped.append(name)
        except PyMongoError as exc:
            log.error("store bench: could not drop %s: %s", name, short_error(exc))
            left.append(name)
    return {"dropped": dropped, "left": left}


def round_mib(value: float | None) -> float | None:
    """MiB to one decimal, None kept."""
    return None if value is None else round(value, 1)
