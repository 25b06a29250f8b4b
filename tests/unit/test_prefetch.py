"""The prefetcher: items in order, never more than `depth` ahead, errors and closes handled."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from producer.prefetch import Prefetcher

DEPTH = 2
# A safety net so a broken prefetcher fails the test instead of hanging it; never a sync point.
HANG_S = 30.0


class CountingPages:
    """A page source that records, at each fetch, how far ahead of the consumer the fetcher is."""

    def __init__(self, pages: int | None) -> None:
        self.pages = pages
        self.changed = threading.Condition()
        self.fetched = 0  # fetches started
        self.requested = 0  # next() calls the consumer has started
        self.too_far_ahead: list[int] = []
        self.closed = threading.Event()

    def __iter__(self) -> Iterator[list[int]]:
        k = 0
        try:
            while self.pages is None or k < self.pages:
                with self.changed:
                    # Each next() gives back at most one slot, so with `requested` calls started the
                    # fetcher may start fetch k only while k < requested + DEPTH.
                    if k >= self.requested + DEPTH:
                        self.too_far_ahead.append(k)
                    self.fetched = k + 1
                    self.changed.notify_all()
                yield [k]
                k += 1
        finally:
            self.closed.set()

    def take(self, prefetcher: Prefetcher[list[int]]) -> list[int]:
        """Wait until the fetcher has filled its window, then take one page."""
        with self.changed:
            full = self.requested + DEPTH
            if self.pages is not None:
                full = min(full, self.pages)
            assert self.changed.wait_for(lambda: self.fetched >= full, HANG_S)
            self.requested += 1
        return next(prefetcher)


def test_pages_come_out_in_the_order_the_source_gave_them() -> None:
    pages = [[i, i + 1] for i in range(0, 40, 2)]
    with Prefetcher(iter(pages), DEPTH) as ahead:
        assert list(ahead) == pages


def test_the_fetcher_fills_its_window_and_is_never_more_than_depth_pages_ahead() -> None:
    source = CountingPages(pages=25)
    with Prefetcher(source, DEPTH, join_timeout_s=HANG_S) as ahead:
        got = [source.take(ahead) for _ in range(25)]
        with pytest.raises(StopIteration):
            next(ahead)
    assert got == [[k] for k in range(25)]
    assert source.too_far_ahead == []
    assert not ahead.fetcher_alive


def test_an_error_in_the_source_reaches_the_consumer_after_the_pages_before_it() -> None:
    boom = RuntimeError("source refused page 3")

    def pages() -> Iterator[list[int]]:
        yield [1]
        yield [2]
        raise boom

    ahead = Prefetcher(pages(), DEPTH, join_timeout_s=HANG_S)
    got = []
    with pytest.raises(RuntimeError) as raised, ahead:
        for page in ahead:
            got.append(page)
    assert got == [[1], [2]]
    assert raised.value is boom
    assert not ahead.fetcher_alive


def test_closing_early_stops_the_fetcher_and_closes_the_source() -> None:
    source = CountingPages(pages=None)  # endless: only close() ends it
    ahead = Prefetcher(source, DEPTH, join_timeout_s=HANG_S)
    with ahead:
        assert source.take(ahead) == [0]
    assert not ahead.fetcher_alive
    assert source.closed.is_set()
    assert source.too_far_ahead == []
    with pytest.raises(StopIteration):
        next(ahead)


def test_a_consumer_that_fails_stops_the_fetcher() -> None:
    source = CountingPages(pages=None)
    ahead = Prefetcher(source, DEPTH, join_timeout_s=HANG_S)
    with pytest.raises(ValueError, match="produce failed"), ahead:
        source.take(ahead)
        raise ValueError("produce failed")
    assert not ahead.fetcher_alive
    assert source.closed.is_set()


def test_close_cuts_short_a_wait_inside_the_source() -> None:
    waiting = threading.Event()
    ahead: Prefetcher[list[int]]

    def pages() -> Iterator[list[int]]:
        yield [1]
        waiting.set()
        ahead.sleep(3600)  # a long Retry-After: close() must not outwait it
        yield [2]

    ahead = Prefetcher(pages(), DEPTH, join_timeout_s=HANG_S)
    with ahead:
        assert next(ahead) == [1]
        assert waiting.wait(HANG_S)
    assert not ahead.fetcher_alive


def test_no_thread_is_left_behind() -> None:
    before = set(threading.enumerate())
    with Prefetcher(iter([[1], [2], [3]]), DEPTH, name="prefetch-leak-check") as ahead:
        assert next(ahead) == [1]
    with Prefetcher(iter([[1]]), DEPTH, name="prefetch-leak-check") as ahead:
        assert list(ahead) == [[1]]
    never_started = Prefetcher(iter([[1]]), DEPTH, name="prefetch-leak-check")
    never_started.close()
    assert set(threading.enumerate()) - before == set()


def test_depth_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Prefetcher(iter([]), 0)
