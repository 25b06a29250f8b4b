"""The Mongo watchdog's rule: kill only a RUNNING, started server that stopped answering."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from headwater.settings import AirflowSettings, Settings, StackSettings
from infra import stack
from infra.watchdog import (
    HISTORY,
    Decision,
    ServerProcess,
    Watchdog,
    WatchdogPolicy,
    consecutive_failures,
    decide,
)

POLICY = WatchdogPolicy(failures=3, start_grace_s=120)
RUNNING_FOR_AN_HOUR = ServerProcess("RUNNING", 4242, age_s=3600)


def test_consecutive_failures_count_only_the_newest_run() -> None:
    assert consecutive_failures([]) == 0
    assert consecutive_failures([False, False, True]) == 0
    assert consecutive_failures([True, False, True, False, False]) == 2


def test_a_server_that_answers_is_left_alone() -> None:
    assert decide([True] * 10, RUNNING_FOR_AN_HOUR, POLICY).kill is False


def test_three_consecutive_failed_pings_of_a_running_server_kill_it() -> None:
    decision = decide([True, False, False, False], RUNNING_FOR_AN_HOUR, POLICY)
    assert decision == Decision(True, "3 consecutive failed pings of a RUNNING server")


def test_failures_broken_by_an_answer_do_not_add_up() -> None:
    pings = [True, False, False, True, False, False]
    assert decide(pings, RUNNING_FOR_AN_HOUR, POLICY).kill is False


def test_a_program_supervisord_is_still_starting_is_never_killed() -> None:
    starting = ServerProcess("STARTING", 4242, age_s=3600)
    decision = decide([False] * 50, starting, POLICY)
    assert decision == Decision(False, "program is STARTING")


def test_a_program_that_is_not_running_has_nothing_to_kill() -> None:
    for state in ("STOPPED", "BACKOFF", "EXITED", "FATAL", "STOPPING"):
        assert decide([False] * 5, ServerProcess(state, 0, age_s=0), POLICY).kill is False


def test_a_fresh_pid_that_never_answered_gets_the_start_grace() -> None:
    opening = ServerProcess("RUNNING", 4242, age_s=119)
    decision = decide([False] * 20, opening, POLICY)
    assert decision.kill is False and decision.reason.startswith("starting up")
    stuck = ServerProcess("RUNNING", 4242, age_s=121)
    assert decide([False] * 20, stuck, POLICY).kill is True


def test_a_pid_that_has_answered_once_gets_no_start_grace() -> None:
    young = ServerProcess("RUNNING", 4242, age_s=10)
    assert decide([True, False, False, False], young, POLICY).kill is True


def test_a_program_held_down_on_purpose_is_never_killed() -> None:
    held = ServerProcess("RUNNING", 4242, age_s=3600, held=True)
    assert decide([False] * 10, held, POLICY).kill is False


@dataclass
class FakeStack:
    """supervisord's view of the mongo program, a server that answers or not, and the kills."""

    state: str = "RUNNING"
    pid: int = 100
    uptime_s: float = 3600.0
    held: bool = False
    answering: bool = True
    now: float = 0.0
    killed: list[int] = field(default_factory=list)

    def watchdog(self) -> Watchdog:
        return Watchdog(
            policy=POLICY,
            ping=lambda: (self.answering, "ok" if self.answering else "timed out"),
            read_process=lambda: (self.state, self.pid, self.uptime_s, self.held),
            kill=self.kill,
            clock=lambda: self.now,
        )

    def kill(self, pid: int) -> str:
        self.killed.append(pid)
        return "stopped"

    def steps(self, watchdog: Watchdog, n: int) -> list[Decision]:
        decisions = []
        for _ in range(n):
            decisions.append(watchdog.step())
            self.now += 5
            self.uptime_s += 5
        return decisions


def test_watchdog_kills_a_hung_pid_once_then_watches_its_successor_from_scratch() -> None:
    fake = FakeStack()
    watchdog = fake.watchdog()
    fake.steps(watchdog, 2)
    fake.answering = False
    decisions = fake.steps(watchdog, 5)
    assert [d.kill for d in decisions] == [False, False, True, False, False]
    assert fake.killed == [100]
    # supervisord restarts it: a fresh PID, opening its data file, gets the grace.
    fake.pid, fake.uptime_s = 101, 0.0
    decisions = fake.steps(watchdog, 10)
    assert not any(d.kill for d in decisions)
    assert fake.killed == [100]


def test_watchdog_does_not_ping_a_program_supervisord_has_stopped() -> None:
    fake = FakeStack(state="STOPPED", pid=0, answering=False)
    pings: list[int] = []
    watchdog = fake.watchdog()
    watchdog.ping = lambda: pings.append(1) or (False, "refused")
    decisions = fake.steps(watchdog, 5)
    assert pings == [] and fake.killed == []
    assert decisions[-1] == Decision(False, "program is STOPPED")


def test_watchdog_restarts_the_grace_when_a_hold_is_released() -> None:
    # Held for ten minutes: same PID (the wrapper execs the server), whose uptime counts the hold.
    fake = FakeStack(held=True, answering=False, uptime_s=600)
    watchdog = fake.watchdog()
    fake.steps(watchdog, 3)
    fake.held = False
    decisions = fake.steps(watchdog, 20)  # 5..100 s since the release, within the 120 s grace
    assert not any(d.kill for d in decisions)
    decisions = fake.steps(watchdog, 6)  # 105..130 s: killed once the grace is over
    assert [d.kill for d in decisions] == [False, False, False, True, False, False]
    assert fake.killed == [100]


def test_watchdog_history_stays_bounded_and_remembers_that_the_pid_answered() -> None:
    fake = FakeStack()
    watchdog = fake.watchdog()
    watchdog.policy = WatchdogPolicy(failures=10**6, start_grace_s=10**9)  # never kills
    fake.steps(watchdog, 1)
    fake.answering = False
    fake.steps(watchdog, HISTORY + 10)
    assert len(watchdog.pings) <= HISTORY
    assert consecutive_failures(watchdog.pings) == HISTORY - 1
    # It answered once: under the real policy no start grace applies, however young it is.
    young = ServerProcess("RUNNING", 100, age_s=1)
    assert decide(watchdog.pings, young, POLICY).kill is True


def _program_names(tmp_path: Path) -> list[str]:
    settings = Settings(
        stack=StackSettings(run_dir=tmp_path / "run", cache_dir=tmp_path / "cache"),
        airflow=AirflowSettings(sql_alchemy_conn="sqlite:////tmp/unused.db"),
    )
    return [p.name for p in stack.programs(settings)]


def test_the_stack_supervises_a_watchdog_next_to_its_own_server_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env
    monkeypatch.delenv("MONGO_URI", raising=False)
    names = _program_names(tmp_path)
    assert names.index("mongo") < names.index("mongo-watchdog")
    monkeypatch.setenv("MONGO_URI", "mongodb://db.example:27017/")
    assert "mongo-watchdog" not in _program_names(tmp_path)


def test_a_server_still_opening_its_data_file_is_not_killed_however_long_it_takes() -> None:
    fake = FakeStack(uptime_s=0.0)
    watchdog = fake.watchdog()
    watchdog.ping = lambda: (
        False,
        "AutoReconnect: 127.0.0.1:27017: [Errno 111] Connection refused",
    )
    decisions = fake.steps(watchdog, 100)  # 500 s, far past the start grace
    assert not any(d.kill for d in decisions)
    assert fake.killed == []
    # once it has answered, a server that stops listening is a fault like any other
    watchdog.ping = lambda: (True, "ok")
    fake.steps(watchdog, 1)
    watchdog.ping = lambda: (False, "AutoReconnect: [Errno 111] Connection refused")
    assert [d.kill for d in fake.steps(watchdog, 3)] == [False, False, True]
