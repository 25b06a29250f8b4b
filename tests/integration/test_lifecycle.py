"""`make up` is idempotent and `make down` leaves nothing behind. Runs last: it stops the stack."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from headwater.settings import REPO_ROOT, Settings
from infra import stack


def _make(target: str) -> str:
    result = subprocess.run(
        ["make", "-C", str(REPO_ROOT), target],
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def _stack_processes(settings: Settings) -> set[int]:
    return stack.descendants(list(stack.stack_pids(settings).values()))


@pytest.mark.lifecycle
def test_make_up_twice_keeps_one_of_each_and_make_down_leaves_none(live_stack: Settings) -> None:
    _make("up")
    first = stack.stack_pids(live_stack)
    expected = {p.name for p in stack.programs(live_stack)} | {"supervisord"}
    assert set(first) == expected

    started = time.monotonic()
    out = _make("up")
    warm_s = time.monotonic() - started
    assert "Headwater stack is up" in out
    print(f"warm make up took {warm_s:.1f}s")
    assert stack.stack_pids(live_stack) == first, "a second `make up` replaced or added processes"

    everything = _stack_processes(live_stack)
    assert len(everything) >= len(expected)
    _make("down")
    survivors = sorted(pid for pid in everything if stack.alive(pid))
    assert survivors == [], f"processes left after make down: {survivors}"
    assert stack.stack_pids(live_stack) == {}
