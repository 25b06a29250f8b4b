"""Which window an ingest run pulls: its data interval, or the explicit window of a manual run."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from headwater.sources import ensure_utc


class WindowError(ValueError):
    """The run has no usable window; the message says which parameter to set."""


def param_time(params: Mapping[str, Any], name: str) -> datetime | None:
    """Param `name` as an aware UTC time (None when unset); WindowError when not ISO-8601."""
    value = params.get(name)
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        return ensure_utc(value)
    try:
        return ensure_utc(datetime.fromisoformat(str(value).replace("Z", "+00:00")))
    except ValueError as exc:
        raise WindowError(f"param {name}={value!r} is not an ISO-8601 time") from exc


def run_window(
    interval_start: datetime | None, interval_end: datetime | None, params: dict[str, Any]
) -> tuple[datetime, datetime]:
    """[since, until) of a run: explicit `since`/`until` params win over the data interval.

    A manual run's own data interval can be empty (start == end), so such a run must say its
    window; a scheduled or backfill run uses its data interval as is.
    """
    since, until = param_time(params, "since"), param_time(params, "until")
    if (since is None) != (until is None):
        raise WindowError("set both params since and until, or neither")
    if since is None or until is None:
        if interval_start is None or interval_end is None:
            raise WindowError("run has no data interval: set params since and until")
        since, until = ensure_utc(interval_start), ensure_utc(interval_end)
    if until <= since:
        raise WindowError(
            f"empty window {since.isoformat()} .. {until.isoformat()}: "
            "a manual run needs params since and until"
        )
    return since, until
