"""The embedded MongoDB's watchdog: `python -m infra.watchdog`, supervised next to `mongo`.

supervisord restarts a server that exits, but not one whose process lives on without answering
(stopped, deadlocked, stuck in GC). The watchdog pings the server every MONGO_WATCHDOG_INTERVAL_S
with a MONGO_PING_TIMEOUT_S bound and, after MONGO_WATCHDOG_FAILURES consecutive failed pings of
a program supervisord reports RUNNING, SIGKILLs that PID so supervisord starts a fresh one on the
durable data file. `decide` holds the rule; `Watchdog` feeds it and does the I/O it is handed.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
import xmlrpc.client
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import psutil

from headwater.clients import redact_uri
from headwater.settings import Settings, get_settings
from infra import supervisor
from infra.health import check_mongo

log = logging.getLogger("headwater.watchdog")

PROGRAM = "mongo"
# Ping results kept per PID: an hour at the default interval, so the logged count stays exact.
HISTORY = 720


@dataclass(frozen=True)
class WatchdogPolicy:
    """How many consecutive failed pings kill a server, and how long a fresh one may start."""

    failures: int
    start_grace_s: float

    @classmethod
    def from_settings(cls, settings: Settings) -> WatchdogPolicy:
        m = settings.mongo
        return cls(failures=m.watchdog_failures, start_grace_s=m.watchdog_start_grace_s)


@dataclass(frozen=True)
class ServerProcess:
    """The mongo program as supervisord reports it, plus whether a test holds it down."""

    state: str
    pid: int
    # Seconds since this PID began starting the server (its start, or its release from a hold).
    age_s: float
    held: bool = False


@dataclass(frozen=True)
class Decision:
    kill: bool
    reason: str


def consecutive_failures(pings: Sequence[bool]) -> int:
    """How many of the newest pings failed in a row."""
    count = 0
    for ok in reversed(pings):
        if ok:
            break
        count += 1
    return count


def is_refused(detail: str) -> bool:
    """The ping failed because nothing listens on the port (not because it hung)."""
    return "Connection refused" in detail or "Errno 111" in detail


def decide(pings: Sequence[bool], process: ServerProcess, policy: WatchdogPolicy) -> Decision:
    """Kill the server or not, from this PID's ping results (oldest first) and its state."""
    if process.held:
        return Decision(False, "held down on purpose (hold file)")
    if process.state != "RUNNING" or process.pid <= 0:
        # STARTING is supervisord's own start-up window; anything else has no live server to kill.
        return Decision(False, f"program is {process.state}")
    failed = consecutive_failures(pings)
    if failed < policy.failures:
        return Decision(False, f"{failed}/{policy.failures} consecutive failed pings")
    if True not in pings and process.age_s < policy.start_grace_s:
        return Decision(
            False,
            f"starting up: {process.age_s:.0f}s of {policy.start_grace_s:.0f}s grace, "
            "not answered yet",
        )
    return Decision(True, f"{failed} consecutive failed pings of a RUNNING server")


@dataclass
class Watchdog:
    """One ping and one decision per `step`; the I/O (ping, supervisord, kill) is handed in."""

    policy: WatchdogPolicy
    ping: Callable[[], tuple[bool, str]]
    # (statename, pid, seconds since supervisord started it, held down) of the mongo program.
    read_process: Callable[[], tuple[str, int, float, bool]]
    kill: Callable[[int], str]
    clock: Callable[[], float] = time.monotonic
    pid: int = 0
    pings: list[bool] = field(default_factory=list)
    released_at: float | None = None
    killed_pid: int = 0

    def step(self) -> Decision:
        """Ping once, update this PID's history, and kill the server when `decide` says so."""
        state, pid, uptime_s, held = self.read_process()
        now = self.clock()
        if pid != self.pid:
            log.info("watching program=%s pid=%d state=%s", PROGRAM, pid, state)
            self.pid, self.pings, self.released_at = pid, [], None
        if held:
            # A held program's start begins when the hold is released (same PID: the wrapper execs).
            self.pings, self.released_at = [], now
            return decide(self.pings, ServerProcess(state, pid, 0.0, held=True), self.policy)
        if self.killed_pid and pid == self.killed_pid:
            return Decision(False, "killed, waiting for supervisord to restart it")
        if state not in ("RUNNING", "STARTING"):
            # Stopped, backing off or fatal: no server to ping, and supervisord is on it.
            self.pings = []
            return decide(self.pings, ServerProcess(state, pid, uptime_s), self.policy)
        age_s = uptime_s if self.released_at is None else min(uptime_s, now - self.released_at)
        ok, detail = self.ping()
        if not ok and True not in self.pings and is_refused(detail):
            # Not listening yet: the JVM is still opening its data file (building an index over
            # millions of documents can take minutes). A stopped or wedged process that was bound
            # still accepts TCP connections, so refusal is never a hang.
            return Decision(False, "not listening yet: still opening its data file")
        self._note_ping(ok, detail, pid, state)
        process = ServerProcess(state, pid, age_s)
        decision = decide(self.pings, process, self.policy)
        if not ok:
            log.warning(
                "ping failed program=%s pid=%d state=%s consecutive=%d action=%s reason=%r "
                "detail=%r",
                PROGRAM,
                pid,
                state,
                consecutive_failures(self.pings),
                "kill" if decision.kill else "wait",
                decision.reason,
                detail[:200],
            )
        if decision.kill:
            # Re-read just before the kill: supervisord may have restarted it since the ping.
            state_now, pid_now, _, held_now = self.read_process()
            if (state_now, pid_now, held_now) != ("RUNNING", pid, False):
                log.info(
                    "kill skipped program=%s pid=%d now=%s/%d", PROGRAM, pid, state_now, pid_now
                )
                return Decision(False, f"changed before the kill: {state_now} pid {pid_now}")
            outcome = self.kill(pid)
            self.killed_pid = pid
            log.warning(
                "killed program=%s pid=%d signal=SIGKILL failures=%d outcome=%s reason=%r",
                PROGRAM,
                pid,
                consecutive_failures(self.pings),
                outcome,
                decision.reason,
            )
        return decision

    def _note_ping(self, ok: bool, detail: str, pid: int, state: str) -> None:
        failed_before = consecutive_failures(self.pings)
        if ok and True not in self.pings:
            log.info("answering program=%s pid=%d state=%s", PROGRAM, pid, state)
        elif ok and failed_before:
            log.info(
                "ping answered again program=%s pid=%d after_failures=%d",
                PROGRAM,
                pid,
                failed_before,
            )
        self.pings.append(ok)
        if len(self.pings) > HISTORY:
            # `decide` needs the newest run of failures and whether this PID ever answered.
            answered = True in self.pings
            self.pings = ([True] if answered else []) + self.pings[-(HISTORY - 1) :]


# --- the real I/O ----------------------------------------------------------------------------


def read_mongo_process(settings: Settings) -> tuple[str, int, float, bool]:
    """supervisord's state, PID and uptime of the mongo program, and whether it is held down."""
    info = supervisor.rpc(settings, timeout_s=10).supervisor.getProcessInfo(PROGRAM)
    start, now = int(info["start"]), int(info["now"])
    uptime_s = float(now - start) if start else 0.0
    held = supervisor.hold_path(settings, PROGRAM).exists()
    return str(info["statename"]), int(info["pid"]), uptime_s, held


def kill_pid(pid: int) -> str:
    """SIGKILL `pid`; returns what the process was doing ("stopped", "sleeping", "gone")."""
    try:
        proc = psutil.Process(pid)
        status = proc.status()
        proc.kill()
    except psutil.NoSuchProcess:
        return "gone"
    return status


def ping_mongo(settings: Settings) -> tuple[bool, str]:
    check = check_mongo(settings)
    return check.ok, check.detail


def run(settings: Settings, stop: threading.Event) -> None:
    """Step every interval until `stop`; supervisord being unreachable is waited out."""
    m = settings.mongo
    watchdog = Watchdog(
        policy=WatchdogPolicy.from_settings(settings),
        ping=lambda: ping_mongo(settings),
        read_process=lambda: read_mongo_process(settings),
        kill=kill_pid,
    )
    log.info(
        "watchdog started program=%s uri=%s interval_s=%s timeout_s=%s failures=%d "
        "start_grace_s=%s",
        PROGRAM,
        redact_uri(m.uri),
        m.watchdog_interval_s,
        m.ping_timeout_s,
        m.watchdog_failures,
        m.watchdog_start_grace_s,
    )
    unreachable = ""
    while not stop.is_set():
        started = time.monotonic()
        try:
            watchdog.step()
            if unreachable:
                log.info("supervisord reachable again")
                unreachable = ""
        except (OSError, xmlrpc.client.Error) as exc:
            # Transient: supervisord is busy or restarting. Without its view nothing is killed.
            error = f"{type(exc).__name__}: {exc}"
            if error != unreachable:
                log.warning("supervisord unreachable, not deciding error=%r", error)
                unreachable = error
        stop.wait(max(0.0, m.watchdog_interval_s - (time.monotonic() - started)))
    log.info("watchdog stopped")


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = get_settings()
    if not settings.mongo.embedded:
        log.error("MONGO_URI points at another server: nothing of ours to watch")
        return 2
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        run(settings, stop)
    except Exception:
        log.exception("watchdog failed; supervisord restarts it")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
