"""The lock that lets one writer at a time into the events database, fairly across processes.

SQLite's own busy handler waits by sleeping and polling (up to 100 ms between tries), so a worker
process that keeps the write lock busy starves the other one: its writers lose every race. Here
the threads (or greenlets) of a process queue on a mutex, and the one at the front waits for the
other processes in `flock`, which the kernel wakes the moment the lock is released.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class LockTimeout(RuntimeError):
    """The write lock stayed taken for the whole timeout."""


class WriteLock:
    """Exclusive access for one writer among every thread and process sharing `path`."""

    def __init__(self, path: Path, timeout_s: float) -> None:
        self.path = path
        self.timeout_s = timeout_s
        self._mutex = threading.Lock()
        self._fd: int | None = None
        self._fd_pid = 0

    def _lock_fd(self) -> int:
        # A flock belongs to an open file description, which fork shares: one per process.
        if self._fd is None or self._fd_pid != os.getpid():
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            self._fd_pid = os.getpid()
        return self._fd

    @contextmanager
    def hold(self) -> Iterator[None]:
        """Hold the lock for a `with` body; LockTimeout when this process's queue is too long."""
        with self.turn(), self.across_processes():
            yield

    @contextmanager
    def turn(self) -> Iterator[None]:
        """This process's turn: its other writers wait. LockTimeout when the queue is too long.

        Taken in the caller's thread or greenlet (a cooperative wait under gevent); the rest of
        the lock, `across_processes`, may then be taken on another thread.
        """
        if not self._mutex.acquire(timeout=self.timeout_s):
            raise LockTimeout(f"write lock not free after {self.timeout_s:.0f}s")
        try:
            yield
        finally:
            self._mutex.release()

    @contextmanager
    def across_processes(self) -> Iterator[None]:
        """The other processes' writers wait (call within `turn`, on any one thread)."""
        fd = self._lock_fd()
        # Blocks for at most the other processes' current transactions (one each: their own
        # writers queue on their mutex), and the kernel frees the lock of a process that dies.
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def close(self) -> None:
        """Close the lock file (the lock must not be held)."""
        if self._fd is not None and self._fd_pid == os.getpid():
            os.close(self._fd)
        self._fd = None
