"""Pull exactly one window of a declared source over HTTP, page by page, retrying the transient."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, NoReturn

import requests
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt
from tenacity.wait import wait_base

from headwater import clients
from headwater.settings import Settings
from headwater.sources import Source, get_path, in_window, parse_time, window_params
from producer.prefetch import Prefetcher

log = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({500, 502, 503, 504})


class SourceError(RuntimeError):
    """The source refused the request (4xx) or answered something that is not a page of records."""


class SourceUnavailable(RuntimeError):
    """The source stayed unreachable or failing (5xx, timeouts) through every retry."""


@dataclass(frozen=True)
class RetryPolicy:
    """How hard a pull tries before giving up on a page."""

    attempts: int = 6
    base_delay_s: float = 0.5
    max_delay_s: float = 30.0
    # A Retry-After longer than this is not waited for: the run fails and Airflow retries later.
    max_retry_after_s: float = 120.0
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 30.0

    def backoff(self) -> wait_base:
        """The wait between attempts when the source does not say how long (Retry-After)."""
        return clients.backoff(self.base_delay_s, self.max_delay_s)


@dataclass
class PullStats:
    """What one pull did, for logs and for the task's return value."""

    pages: int = 0
    records: int = 0
    outside_window: int = 0
    retries: int = 0
    last_event_time: datetime | None = None
    errors: list[str] = field(default_factory=list)


# ---- pure decisions ---------------------------------------------------------------------------


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait per a Retry-After header (delta-seconds or HTTP-date); None if unusable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def page_params(
    source: Source, since: datetime, until: datetime, cursor: str | None, page: int
) -> dict[str, str]:
    """Query parameters of one page request."""
    params = window_params(source, since, until)
    spec = source.pagination
    if spec.style == "none":
        return params
    params[spec.limit_param] = str(spec.page_size)
    if spec.style == "cursor" and cursor:
        params[spec.cursor_param] = cursor
    if spec.style == "page":
        params[spec.page_param] = str(page)
    return params


def extract_page(source: Source, body: Any) -> tuple[list[dict[str, Any]], str | None]:
    """Records and the next cursor from one response body."""
    records = get_path(body, source.records_path)
    if not isinstance(records, list):
        raise SourceError(f"source {source.name}: response has no list at {source.records_path!r}")
    found = get_path(body, source.pagination.next_cursor_path)
    next_cursor = str(found) if found else None
    if source.pagination.style == "none" and next_cursor is not None:
        # Declared unpaginated but the answer says there is more: reading one page would
        # silently drop the rest of the window.
        raise SourceError(
            f"source {source.name}: response has a next cursor but pagination style is 'none'"
        )
    return records, next_cursor


def has_more(source: Source, records: list[Any], next_cursor: str | None) -> bool:
    """Whether another page must be requested after this one."""
    style = source.pagination.style
    if style == "cursor":
        return next_cursor is not None
    if style == "page":
        return len(records) >= source.pagination.page_size
    return False


def event_time(source: Source, record: Any) -> datetime | None:
    """The record's event time, or None when it has none that can be read."""
    if not isinstance(record, dict):
        return None
    try:
        return parse_time(get_path(record, source.event_time_field), source.event_time_format)
    except (ValueError, TypeError):
        return None


def auth_headers(source: Source, environ: dict[str, str] | None = None) -> dict[str, str]:
    """The source's auth header, with its value from the environment."""
    if source.auth is None:
        return {}
    env = os.environ if environ is None else environ
    value = env.get(source.auth.env)
    if not value:
        if source.auth.optional:
            return {}
        raise SourceError(f"source {source.name}: environment variable {source.auth.env} unset")
    return {source.auth.header: value}


# ---- I/O ---------------------------------------------------------------------------------------


class _Retryable(Exception):
    """One attempt at a page failed in a way another attempt can cure."""

    def __init__(self, problem: str, retry_after_s: float | None = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.retry_after_s = retry_after_s


def _get_once(
    session: requests.Session,
    url: str,
    params: dict[str, str],
    headers: dict[str, str],
    policy: RetryPolicy,
) -> Any:
    """One GET of a page: its JSON body, or _Retryable, SourceError or SourceUnavailable."""
    try:
        resp = session.get(
            url,
            params=params,
            headers=headers,
            timeout=(policy.connect_timeout_s, policy.read_timeout_s),
        )
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise _Retryable(f"{type(exc).__name__}: {exc}") from exc
    if resp.status_code == 200:
        try:
            return resp.json()
        except ValueError as exc:
            raise SourceError(f"{url}: response is not JSON ({exc})") from exc
    problem = f"HTTP {resp.status_code}: {resp.text[:300]}"
    if resp.status_code == 429:
        wait = parse_retry_after(resp.headers.get("Retry-After"), datetime.now(UTC))
        if wait is not None and wait > policy.max_retry_after_s:
            raise SourceUnavailable(f"{url}: rate limited for {wait:.0f}s ({problem})")
        raise _Retryable(problem, wait)
    if resp.status_code in RETRYABLE_STATUS:
        raise _Retryable(problem)
    raise SourceError(f"{url} {params}: {problem}")


def _get_page(
    session: requests.Session,
    url: str,
    params: dict[str, str],
    headers: dict[str, str],
    policy: RetryPolicy,
    stats: PullStats,
    sleep: Callable[[float], None],
) -> Any:
    """GET one page; retry 5xx, timeouts and 429 (honouring Retry-After); raise on other 4xx."""
    backoff_wait = policy.backoff()

    def _problem(state: RetryCallState) -> _Retryable:
        error = state.outcome.exception() if state.outcome else None
        assert isinstance(error, _Retryable)
        return error

    def wait(state: RetryCallState) -> float:
        asked = _problem(state).retry_after_s
        return asked if asked is not None else backoff_wait(state)

    def count_retry(state: RetryCallState) -> None:
        stats.retries += 1
        log.warning(
            "source retry url=%s attempt=%d delay_s=%.2f problem=%s",
            url,
            state.attempt_number,
            state.upcoming_sleep,
            _problem(state).problem,
        )

    def give_up(state: RetryCallState) -> NoReturn:
        problem = _problem(state)
        raise SourceUnavailable(
            f"{url}: gave up after {state.attempt_number} attempts ({problem.problem})"
        ) from problem

    retrying = Retrying(
        stop=stop_after_attempt(policy.attempts),
        wait=wait,
        retry=retry_if_exception_type(_Retryable),
        before_sleep=count_retry,
        retry_error_callback=give_up,
        sleep=sleep,
    )
    return retrying(_get_once, session, url, params, headers, policy)


def fetch_pages(
    source: Source,
    since: datetime,
    until: datetime,
    settings: Settings,
    *,
    session: requests.Session | None = None,
    policy: RetryPolicy,
    stats: PullStats,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[list[Any]]:
    """Yield the records of each page of [since, until) as the source sent them, in order.

    Retries are counted in `stats` here; pages and records are counted by `window_records`, as
    the consumer takes them.
    """
    session = session or requests.Session()
    url = source.url(settings)
    headers = {"Accept": "application/json", **auth_headers(source)}
    cursor: str | None = None
    page = 1
    seen_cursors: set[str] = set()
    while True:
        params = page_params(source, since, until, cursor, page)
        body = _get_page(session, url, params, headers, policy, stats, sleep)
        records, next_cursor = extract_page(source, body)
        yield records
        if not has_more(source, records, next_cursor):
            return
        if next_cursor is not None:
            if next_cursor in seen_cursors:
                raise SourceError(f"source {source.name}: cursor repeated, the source is looping")
            seen_cursors.add(next_cursor)
        cursor = next_cursor
        page += 1


def window_records(
    source: Source,
    pages: Iterable[list[Any]],
    since: datetime,
    until: datetime,
    stats: PullStats,
) -> Iterator[Any]:
    """Yield the records of `pages` that lie in [since, until), counting pages and records."""
    for records in pages:
        stats.pages += 1
        for record in records:
            moment = event_time(source, record)
            if moment is not None:
                if not in_window(moment, since, until):
                    stats.outside_window += 1
                    continue
                stats.last_event_time = moment
            stats.records += 1
            yield record


def pull(
    source: Source,
    since: datetime,
    until: datetime,
    settings: Settings,
    *,
    session: requests.Session | None = None,
    policy: RetryPolicy | None = None,
    stats: PullStats | None = None,
    sleep: Callable[[float], None] | None = None,
    prefetch: int = 0,
) -> Iterator[dict[str, Any]]:
    """Yield every record of [since, until) from `source`, following its pagination.

    Records whose event time the source put outside the window are counted and left out; a record
    whose event time cannot be read is still yielded, so the consumer can quarantine it visibly.
    With `prefetch` > 0 a background thread fetches up to that many pages ahead of the records
    yielded (so the caller's work on one page overlaps the fetch of the next); closing this
    generator stops that thread.
    """
    if until <= since:
        raise ValueError(f"empty or inverted window: {since} .. {until}")
    policy = policy or RetryPolicy()
    stats = stats if stats is not None else PullStats()
    ahead: Prefetcher[list[Any]]

    def wait(seconds: float) -> None:
        # A retry's wait ends early when the run stops (produce failed): no lingering thread.
        ahead.sleep(seconds)

    pages = fetch_pages(
        source,
        since,
        until,
        settings,
        session=session,
        policy=policy,
        stats=stats,
        sleep=sleep or (wait if prefetch > 0 else time.sleep),
    )
    if prefetch <= 0:
        yield from window_records(source, pages, since, until, stats)
    else:
        # Bounded by the longest a page request can take once started (then the thread sees
        # the stop); a wait between attempts is cut short by `wait` above.
        join_s = policy.connect_timeout_s + policy.read_timeout_s + 1.0
        ahead = Prefetcher(pages, prefetch, name=f"pull-{source.name}", join_timeout_s=join_s)
        with ahead:
            yield from window_records(source, ahead, since, until, stats)
    log.info(
        "pull done source=%s since=%s until=%s records=%d pages=%d retries=%d outside_window=%d",
        source.name,
        since.isoformat(),
        until.isoformat(),
        stats.records,
        stats.pages,
        stats.retries,
        stats.outside_window,
    )
