"""A request body with a deadline: a client that trickles its body is cut off with a 408.

The server's worker (producer/events/server.py) wraps each request's body in `DeadlineBody` once
its head is parsed. Every read then waits at most for what is left of the body's time; past it
the read raises `BodyTimeout`, which the app answers as a JSON 408 (producer/events/errors.py)
and after which the connection is closed, wherever the body was cut.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Protocol, TypeVar

from werkzeug.exceptions import RequestTimeout

T = TypeVar("T")

# A context that raises the given exception in its block once the given seconds have passed
# (gevent.Timeout under the gevent worker).
Within = Callable[[float, BaseException], AbstractContextManager[object]]


class BodyTimeout(RequestTimeout):
    """The request body did not arrive in full within its time."""

    def __init__(self, timeout_s: float) -> None:
        super().__init__(description=f"was not received in full within {timeout_s:g} s")
        self.timeout_s = timeout_s


class Body(Protocol):
    """What the server hands the app as `wsgi.input` (gunicorn.http.body.Body)."""

    def read(self, size: int | None = None) -> bytes: ...

    def readline(self, size: int | None = None) -> bytes: ...


class DeadlineBody:
    """`body`, each read bounded by a deadline `timeout_s` after this wrapper was made."""

    def __init__(
        self,
        body: Body,
        timeout_s: float,
        within: Within,
        on_expired: Callable[[], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.body = body
        self.timeout_s = timeout_s
        self._within = within
        self._on_expired = on_expired
        self._clock = clock
        self._deadline = clock() + timeout_s
        self.expired = False

    @property
    def failed(self) -> bool:
        """Whether a read failed (gunicorn then does not reuse the connection)."""
        return self.expired or bool(getattr(self.body, "failed", False))

    def _bounded(self, read: Callable[[], T]) -> T:
        remaining = self._deadline - self._clock()
        timeout = BodyTimeout(self.timeout_s)
        try:
            if remaining <= 0:
                raise timeout
            with self._within(remaining, timeout):
                return read()
        except BodyTimeout:
            if not self.expired:
                self.expired = True
                self._on_expired()
            raise

    def read(self, size: int | None = None) -> bytes:
        """Up to `size` bytes (all that is left when None); BodyTimeout past the deadline."""
        return self._bounded(lambda: self.body.read(size))

    def readline(self, size: int | None = None) -> bytes:
        """One line of at most `size` bytes; BodyTimeout past the deadline."""
        return self._bounded(lambda: self.body.readline(size))

    def readlines(self, hint: int | None = None) -> list[bytes]:
        """Every line that is left (WSGI lets `hint` be ignored); BodyTimeout past the deadline."""
        lines = []
        while line := self.readline():
            lines.append(line)
        return lines

    def __iter__(self) -> Iterator[bytes]:
        while line := self.readline():
            yield line
