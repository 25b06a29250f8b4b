"""Group commit: writes that arrive while one is being committed share the next commit.

A commit of the events database costs one fsync (a few milliseconds), whether it holds one event
or a thousand. So writes queue here, and one writer at a time, the leader, takes every write
queued (up to `max_size`) and commits them together with a single call of `commit`; the writes
that arrive meanwhile queue for the next leader. No write waits for a timer: a write that finds
nobody committing leads at once, alone, and the batches grow only as fast as writes arrive
during a commit. When the leader is done it hands the lead to the oldest write still queued,
then hands every write of its batch its outcome: each caller returns only once the commit that
holds its write has returned.

`commit` gets the writes of one batch and returns an outcome for each (a write refused on its
own, e.g. an Idempotency-Key conflict, fails alone); if it raises, the shared commit failed and
every write of the batch fails with (a copy of) that error.

Only threading primitives are used: under gevent's monkey-patching they are gevent's, so the
writers are greenlets that wait cooperatively; anywhere else they are threads.
"""

from __future__ import annotations

import copy
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from producer.events.offload import Outcome
from producer.events.writelock import LockTimeout

W = TypeVar("W")
R = TypeVar("R")


@dataclass(eq=False)
class _Waiter(Generic[W, R]):
    write: W
    woken: threading.Event = field(default_factory=threading.Event)
    leads: bool = False
    outcome: Outcome[R] | None = None


def take_batch(sizes: Sequence[int], max_size: int) -> int:
    """How many of the queued writes (their sizes, oldest first) the next commit takes.

    As many as fit in `max_size` in queue order, and always the first, however large.
    """
    taken, total = 0, 0
    for size in sizes:
        if taken and total + size > max_size:
            break
        taken += 1
        total += size
    return taken


def copy_error(error: BaseException) -> BaseException:
    """A copy of `error` for one more caller (each raises its own), or `error` if it won't copy."""
    try:
        duplicate = copy.copy(error)
    except Exception:  # noqa: BLE001 - an exception type that cannot be rebuilt from its args
        return error
    duplicate.__cause__ = error.__cause__
    return duplicate


class GroupCommit(Generic[W, R]):
    """Commits concurrent writes in shared batches; `submit` returns once its write committed."""

    def __init__(
        self,
        commit: Callable[[list[W]], list[Outcome[R]]],
        size: Callable[[W], int],
        max_size: int,
        timeout_s: float,
    ) -> None:
        if max_size < 1:
            raise ValueError(f"max_size must be at least 1, got {max_size}")
        self._commit = commit
        self._size = size
        self.max_size = max_size
        self.timeout_s = timeout_s
        self._mutex = threading.Lock()
        self._queue: deque[_Waiter[W, R]] = deque()
        self._leading = False
        self._in_batch = 0

    def pending(self) -> int:
        """Writes submitted and not yet answered: queued, plus the batch being committed."""
        with self._mutex:
            return len(self._queue) + self._in_batch

    def submit(self, write: W) -> R:
        """Commit `write` (with whatever else is queued); its result, or its error raised.

        LockTimeout when the write was still queued, untouched, after `timeout_s`.
        """
        waiter: _Waiter[W, R] = _Waiter(write)
        with self._mutex:
            self._queue.append(waiter)
            if not self._leading:
                self._leading = waiter.leads = True
        if not waiter.leads:
            self._wait(waiter)
        if waiter.outcome is None:  # woken to lead: its own write is first in the queue
            self._lead()
        outcome = waiter.outcome
        assert outcome is not None
        if outcome.error is not None:
            raise outcome.error
        return outcome.value  # type: ignore[return-value]

    def _wait(self, waiter: _Waiter[W, R]) -> None:
        if waiter.woken.wait(self.timeout_s):
            return
        with self._mutex:
            if waiter.leads or waiter.outcome is not None:
                return
            if any(queued is waiter for queued in self._queue):
                self._queue.remove(waiter)
                raise LockTimeout(f"write not committed within {self.timeout_s:.0f}s")
        # Taken into the batch being committed: its outcome comes when that commit returns.
        waiter.woken.wait()

    def _lead(self) -> None:
        with self._mutex:
            count = take_batch([self._size(w.write) for w in self._queue], self.max_size)
            batch = [self._queue.popleft() for _ in range(count)]
            self._in_batch = count
        failure: BaseException | None = None
        try:
            outcomes = self._commit([w.write for w in batch])
            if len(outcomes) != len(batch):
                raise RuntimeError(f"commit answered {len(outcomes)} of {len(batch)} writes")
        except BaseException as exc:  # noqa: BLE001 - every write of the batch gets it
            failure = exc
            outcomes = [Outcome(error=copy_error(exc)) for _ in batch]
        finally:
            # The next batch may start while this one's callers are being answered.
            with self._mutex:
                self._in_batch = 0
                successor = self._queue[0] if self._queue else None
                if successor is None:
                    self._leading = False
                else:
                    successor.leads = True
            if successor is not None:
                successor.woken.set()
        for waiter, outcome in zip(batch, outcomes, strict=True):
            waiter.outcome = outcome
            waiter.woken.set()
        if failure is not None and not isinstance(failure, Exception):
            raise failure  # the leader itself was interrupted (GreenletExit, KeyboardInterrupt)
