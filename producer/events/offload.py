"""Where the store's blocking SQLite calls run: in the caller, or on gevent's native threadpool.

Under gunicorn's gevent worker (producer/events/server.py) one OS thread runs the greenlets of
every connection, so a call that blocks that thread stalls them all: an fsync on commit, a flock
held by the other worker process, a COUNT(*) over a large table. There each such call is handed
to one of gevent's native threads while the greenlet that asked waits cooperatively and the loop
goes on serving everyone else. Anywhere else (tests, scripts, a threaded server) calls run inline.
"""

from __future__ import annotations

import contextvars
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

import gevent

T = TypeVar("T")


class Offload(Protocol):
    """Runs a blocking call to completion and returns (or raises) what it did."""

    def __call__(self, call: Callable[[], T], /) -> T: ...


def run_inline(call: Callable[[], T]) -> T:
    """Run `call` in the calling thread."""
    return call()


def run_on_gevent_threadpool(call: Callable[[], T]) -> T:
    """Run `call` on the current hub's native threadpool; only this greenlet waits for it."""
    # The call sees the caller's context (Flask's app and request), which a native thread would
    # not have otherwise.
    context = contextvars.copy_context()
    outcome: Outcome[T] = gevent.get_hub().threadpool.apply(context.run, (_outcome_of, call))
    if outcome.error is not None:
        # Raised here, in the greenlet that asked: gevent would print every error of a pool
        # task as a crash (an IdempotencyConflict is an answer, not a crash).
        raise outcome.error
    return outcome.value  # type: ignore[return-value]


@dataclass(frozen=True)
class Outcome(Generic[T]):
    """What a call returned, or the exception it raised."""

    value: T | None = None
    error: BaseException | None = None


def _outcome_of(call: Callable[[], T]) -> Outcome[T]:
    try:
        return Outcome(value=call())
    except BaseException as exc:  # noqa: BLE001 - handed back to the caller, raised there
        return Outcome(error=exc)


def gevent_patched() -> bool:
    """Whether gevent has monkey-patched this process (as gunicorn's gevent worker does)."""
    monkey = sys.modules.get("gevent.monkey")
    return monkey is not None and bool(monkey.is_module_patched("socket"))


def offload_for_this_process() -> Offload:
    """gevent's threadpool in a gevent-patched process, the caller's thread anywhere else."""
    return run_on_gevent_threadpool if gevent_patched() else run_inline
