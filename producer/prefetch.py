"""Iterate a slow source on a background thread, a bounded number of items ahead of its consumer."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class PrefetchClosed(Exception):
    """The prefetcher was closed while its fetcher waited (raised inside the fetcher thread)."""


@dataclass(frozen=True)
class _End:
    """The fetcher's last word: the source ran out (error None) or raised `error`."""

    error: BaseException | None = None


class Prefetcher(Generic[T]):
    """Items of `source`, fetched by a thread at most `depth` items ahead of whoever iterates.

    An exception the source raises reaches the consumer after every item fetched before it.
    close() (also on leaving a `with` block) stops the fetcher and joins it, bounded by
    `join_timeout_s`. The source is iterated, and closed, only by the fetcher thread, which
    starts on entering a `with` block or at the first next().
    """

    def __init__(
        self,
        source: Iterable[T],
        depth: int = 2,
        *,
        name: str = "prefetch",
        join_timeout_s: float = 10.0,
    ) -> None:
        if depth < 1:
            raise ValueError(f"prefetch depth must be at least 1, got {depth}")
        self.depth = depth
        self.join_timeout_s = join_timeout_s
        self._source = source
        # One permit per item the fetcher may hold ahead of the consumer: it takes one before
        # fetching an item and the consumer gives it back on taking that item, so fetched minus
        # taken never exceeds `depth` (a full Queue alone lets one more wait in the fetcher's hand).
        self._permits = threading.Semaphore(depth)
        # Never blocks: at most `depth` items plus the end marker are ever in it.
        self._items: queue.Queue[T | _End] = queue.Queue(maxsize=depth + 1)
        self._stop = threading.Event()
        self._done = False
        self._thread = threading.Thread(target=self._fetch, name=name, daemon=True)

    # ---- the fetcher thread ---------------------------------------------------------------------

    def _fetch(self) -> None:
        end = _End()
        iterator: Iterator[T] | None = None
        try:
            iterator = iter(self._source)
            while True:
                self._permits.acquire()
                if self._stop.is_set():
                    return
                try:
                    item = next(iterator)
                except StopIteration:
                    return
                if self._stop.is_set():
                    return
                self._items.put(item)
        except PrefetchClosed:
            return
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, who re-raises it
            end = _End(exc)
        finally:
            close = getattr(iterator, "close", None)  # a generator: run its finally here
            if close is not None:
                try:
                    close()
                except Exception:  # closing after a stop must not hide why it stopped
                    log.exception("prefetch %s: closing the source failed", self._thread.name)
            self._items.put(end)

    def sleep(self, seconds: float) -> None:
        """Wait like time.sleep, but raise PrefetchClosed at once if the prefetcher is closed.

        For the source's own waits (retry backoff, Retry-After), so close() need not outwait them.
        """
        if self._stop.wait(seconds):
            raise PrefetchClosed(f"prefetch {self._thread.name} closed")

    # ---- the consumer's side --------------------------------------------------------------------

    def start(self) -> None:
        """Start the fetcher thread (idempotent; not after close)."""
        if self._thread.ident is None and not self._done:
            self._thread.start()

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        if self._done:
            raise StopIteration
        self.start()
        item = self._items.get()
        if isinstance(item, _End):
            self._done = True
            self._thread.join(self.join_timeout_s)
            if item.error is not None:
                raise item.error
            raise StopIteration
        self._permits.release()
        return item

    def close(self) -> None:
        """Stop the fetcher and wait (bounded) for its thread to end; idempotent."""
        self._done = True
        self._stop.set()
        # Wake a fetcher that waits for a permit; it then sees the stop and leaves.
        self._permits.release()
        if self._thread.ident is None:
            return  # never started
        self._thread.join(self.join_timeout_s)
        if self._thread.is_alive():
            log.warning(
                "prefetch %s: fetcher still busy %.1fs after close (a request in flight); "
                "it stops when that returns",
                self._thread.name,
                self.join_timeout_s,
            )

    @property
    def fetcher_alive(self) -> bool:
        """Whether the fetcher thread is still running."""
        return self._thread.is_alive()

    def __enter__(self) -> Prefetcher[T]:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
