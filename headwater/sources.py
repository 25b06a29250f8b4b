"""Source declarations (sources.yaml) and the pure rules every part applies to them.

A source says where records come from (URL, window parameters, pagination, where the records sit
in the response), what identifies a record (natural-key fields, event-time field) and where it
goes (topic). Key derivation and time formatting live here so producer, consumer, DAGs and
plugins agree on them.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from headwater.settings import REPO_ROOT, Settings

SOURCES_FILE = REPO_ROOT / "sources.yaml"
KEY_SEPARATOR = "|"
TimeFormat = Literal["iso8601", "epoch_s", "epoch_ms", "date"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WindowSpec(_Strict):
    """How a window [since, until) is passed to the source."""

    since_param: str = "since"
    until_param: str = "until"
    format: TimeFormat = "iso8601"
    # Some APIs (football-data.org's dateTo) take the last day *included*, not the end bound.
    until_inclusive: bool = False


class PaginationSpec(_Strict):
    """How the source splits a window into pages."""

    style: Literal["cursor", "page", "none"] = "cursor"
    cursor_param: str = "cursor"
    next_cursor_path: str = "next_cursor"
    page_param: str = "page"
    limit_param: str = "limit"
    page_size: int = Field(default=500, gt=0)


class AuthSpec(_Strict):
    """A header whose value is read from an environment variable at run time."""

    header: str
    env: str
    optional: bool = False


class Source(_Strict):
    """One declared source."""

    name: str
    description: str = ""
    base_url: str
    route: str
    window: WindowSpec = WindowSpec()
    pagination: PaginationSpec = PaginationSpec()
    records_path: str = "records"
    key_fields: tuple[str, ...]
    event_time_field: str
    event_time_format: TimeFormat = "iso8601"
    topic: str
    schema_version: int = 1
    interval_s: int = Field(default=60, gt=0)
    auth: AuthSpec | None = None

    @model_validator(mode="after")
    def _check(self) -> Source:
        if not self.key_fields:
            raise ValueError(f"source {self.name}: key_fields must name at least one field")
        if not self.route.startswith("/"):
            raise ValueError(f"source {self.name}: route must start with '/'")
        return self

    def url(self, settings: Settings) -> str:
        """Base URL with {external_api_url}/{flask_url} filled in from settings, plus the route."""
        svc = settings.services
        base = self.base_url.format(
            external_api_url=f"http://{svc.host}:{svc.external_api_port}",
            flask_url=f"http://{svc.host}:{svc.flask_port}",
        )
        return base.rstrip("/") + self.route


def parse_sources(data: dict[str, Any]) -> dict[str, Source]:
    """Validate a sources document ({"sources": {name: {...}}}) into Source objects."""
    entries = data.get("sources") or {}
    if not isinstance(entries, dict) or not entries:
        raise ValueError("sources file declares no sources")
    sources = {name: Source(name=name, **spec) for name, spec in entries.items()}
    topics = [s.topic for s in sources.values()]
    if len(set(topics)) != len(topics):
        raise ValueError(f"two sources share a topic: {sorted(topics)}")
    return sources


@lru_cache(maxsize=4)
def load_sources(path: Path = SOURCES_FILE) -> dict[str, Source]:
    """Every declared source by name."""
    return parse_sources(yaml.safe_load(path.read_text()))


def get_source(name: str) -> Source:
    """One declared source; the error lists the valid names."""
    sources = load_sources()
    if name not in sources:
        raise KeyError(f"unknown source {name!r}; declared: {', '.join(sorted(sources))}")
    return sources[name]


def pipeline_topics() -> list[str]:
    """The topic of every declared source (what the stack creates and the consumer reads)."""
    return sorted(s.topic for s in load_sources().values())


# ---- pure rules -------------------------------------------------------------------------------


def get_path(document: Any, dotted: str) -> Any:
    """document["a"]["b"] for "a.b"; None when any step is missing. "" returns the document."""
    current = document
    for part in [p for p in dotted.split(".") if p]:
        if isinstance(current, dict):
            current = current.get(part)
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return None
    return current


def _key_part(value: Any) -> str:
    if isinstance(value, str):
        return value
    # Numbers, booleans and nested values get one canonical text form.
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def record_key(source: Source, record: dict[str, Any]) -> str:
    """The Kafka key (and MongoDB _id basis) of a record: its natural-key values joined by '|'.

    Raises KeyError naming the missing field when a key field is absent: such a record cannot be
    identified, and the caller decides how to quarantine it.
    """
    parts = []
    for field in source.key_fields:
        value = get_path(record, field)
        if value is None:
            raise KeyError(f"record has no key field {field!r}")
        parts.append(_key_part(value))
    return KEY_SEPARATOR.join(parts)


def ensure_utc(moment: datetime) -> datetime:
    """A timezone-aware UTC datetime (naive input is taken as UTC)."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def format_time(moment: datetime, fmt: TimeFormat) -> str:
    """A window bound as the source expects it."""
    moment = ensure_utc(moment)
    if fmt == "iso8601":
        text = moment.isoformat(timespec="milliseconds" if moment.microsecond else "seconds")
        return text.replace("+00:00", "Z")
    if fmt == "epoch_s":
        seconds = moment.timestamp()
        return str(int(seconds)) if seconds.is_integer() else repr(seconds)
    if fmt == "epoch_ms":
        return str(int(moment.timestamp() * 1000))
    return moment.date().isoformat()


def parse_time(value: Any, fmt: TimeFormat) -> datetime:
    """An event time from a record as a UTC datetime; ValueError when it is not one."""
    if fmt in ("epoch_s", "epoch_ms"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"expected epoch number, got {value!r}")
        seconds = value / 1000 if fmt == "epoch_ms" else value
        return datetime.fromtimestamp(seconds, tz=UTC)
    if not isinstance(value, str):
        raise ValueError(f"expected ISO-8601 text, got {value!r}")
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return ensure_utc(parsed)


def window_params(source: Source, since: datetime, until: datetime) -> dict[str, str]:
    """Query parameters that ask the source for [since, until)."""
    spec = source.window
    end = ensure_utc(until)
    if spec.until_inclusive:
        # An inclusive bound at the source's granularity: the last unit before `until`.
        end = end - (timedelta(days=1) if spec.format == "date" else timedelta(milliseconds=1))
    return {
        spec.since_param: format_time(since, spec.format),
        spec.until_param: format_time(end, spec.format),
    }


def in_window(moment: datetime, since: datetime, until: datetime) -> bool:
    """since <= moment < until."""
    return ensure_utc(since) <= ensure_utc(moment) < ensure_utc(until)
