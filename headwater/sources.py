"""Source declarations (sources.yaml) and the pure rules every part applies to them.

A source says where records come from (URL, window parameters, pagination, where the records sit
in the response), what identifies a record (natural-key fields, event-time field), what a record
must look like (its contract per schema version, see headwater/declarations.py) and where it goes
(topic, collection, indexes, filter rules). Key derivation and time formatting live here so
producer, consumer, DAGs and plugins agree on them.

Each entry is checked on its own: an invalid entry is a problem of that source (reported by the
consumer, pipeline_status and pipeline_health), never a reason to stop the others.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from headwater import transforms
from headwater.contracts import Collections, ContractError, describe_errors, validate_record
from headwater.declarations import (
    FILTER_FIELDS,
    ContractSpec,
    FieldSpec,
    FilterRule,
    IndexSpec,
    Plausibility,
    TimeFormat,
    build_model,
    plausibility_reason,
    stored_body,
    stored_fields,
)
from headwater.settings import REPO_ROOT, Settings, get_settings

SOURCES_FILE = REPO_ROOT / "sources.yaml"
KEY_SEPARATOR = "|"
# Collections Headwater writes itself; no source may store into them.
OWN_COLLECTIONS = frozenset(
    {
        Collections.REJECTED,
        Collections.READINGS_ROLLUP,
        Collections.PIPELINE_STATUS,
        Collections.HEALTH_CHECKS,
    }
)


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

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    description: str = ""
    base_url: str
    route: str
    window: WindowSpec = WindowSpec()
    pagination: PaginationSpec = PaginationSpec()
    records_path: str = "records"
    key_fields: tuple[str, ...]
    event_time_field: str
    # Default: the declared event-time field's format.
    event_time_format: TimeFormat = "iso8601"
    topic: str = Field(pattern=r"^[A-Za-z0-9._-]{1,249}$")
    # The version producers stamp on new messages; every version in `contracts` is accepted.
    schema_version: int = Field(default=1, ge=1)
    interval_s: int = Field(default=60, gt=0)
    auth: AuthSpec | None = None
    # What a record is and where it is stored (see headwater/declarations.py).
    collection: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
    contracts: dict[int, ContractSpec]
    plausibility: Plausibility = Plausibility()
    filters: tuple[FilterRule, ...] = ()
    indexes: tuple[IndexSpec, ...] = ()

    _models: dict[int, type[BaseModel]] = PrivateAttr(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _time_format_from_contract(cls, data: Any) -> Any:
        # The event-time format is the declared field's; saying it twice is allowed, not needed.
        if isinstance(data, dict) and "event_time_format" not in data:
            contracts = data.get("contracts")
            version = data.get("schema_version", 1)
            field_name = data.get("event_time_field")
            if isinstance(contracts, dict) and isinstance(field_name, str):
                spec = (contracts.get(version) or {}).get("fields", {}).get(field_name)
                if isinstance(spec, dict) and spec.get("format"):
                    data = {**data, "event_time_format": spec["format"]}
        return data

    @model_validator(mode="after")
    def _check(self) -> Source:
        if not self.key_fields:
            raise ValueError("key_fields must name at least one field")
        if not self.route.startswith("/"):
            raise ValueError("route must start with '/'")
        if self.collection in OWN_COLLECTIONS:
            raise ValueError(f"collection {self.collection!r} is Headwater's own")
        if self.schema_version not in self.contracts:
            known = ", ".join(str(v) for v in sorted(self.contracts)) or "none"
            raise ValueError(
                f"schema_version {self.schema_version} has no contract (declared: {known})"
            )
        for version, contract in sorted(self.contracts.items()):
            self._check_contract(version, contract)
        # A rule may name a field of any declared version (it passes where the field is absent).
        shape = {n: f for v in sorted(self.contracts) for n, f in self.stored_shape(v).items()}
        known_fields = set(shape) | {"source"}
        for rule in self.filters:
            for attr in FILTER_FIELDS[type(rule)]:
                if getattr(rule, attr) not in known_fields:
                    raise ValueError(
                        f"filter {rule.rule}: {attr} {getattr(rule, attr)!r} is not a stored "
                        f"field (stored: {', '.join(sorted(shape))})"
                    )
        for index in self.indexes:
            for key in index.keys:
                if key.split(".")[0] not in known_fields | {"ingest"}:
                    raise ValueError(f"index {index.name}: {key!r} is not a stored field")
        return self

    def _check_contract(self, version: int, contract: ContractSpec) -> None:
        where = f"contracts[{version}]"
        time_spec = contract.fields.get(self.event_time_field)
        if time_spec is None or time_spec.type != "timestamp":
            raise ValueError(
                f"{where}: event_time_field {self.event_time_field!r} must be a declared "
                "timestamp field"
            )
        if version == self.schema_version and time_spec.time_format != self.event_time_format:
            raise ValueError(
                f"{where}: event_time_format {self.event_time_format} differs from the field's "
                f"format {time_spec.time_format}"
            )
        for key in self.key_fields:
            root = key.split(".")[0]
            if root not in contract.fields and contract.extra != "keep":
                raise ValueError(f"{where}: key field {key!r} is not declared")
        if contract.transform is not None and contract.transform not in transforms.REGISTRY:
            raise ValueError(
                f"{where}: unknown transform {contract.transform!r} "
                f"(registered: {', '.join(sorted(transforms.REGISTRY))})"
            )
        if contract.transform is not None:
            transforms.REGISTRY[contract.transform].check_input(contract)

    # ---- derived from the declaration -------------------------------------------------------

    def contract(self, version: int) -> tuple[ContractSpec, type[BaseModel]]:
        """The contract of `version` and its validating model; ContractError when undeclared."""
        contract = self.contracts.get(version)
        if contract is None:
            known = ", ".join(str(v) for v in sorted(self.contracts))
            raise ContractError(
                f"unknown schema_version {version} for topic {self.topic} (known: {known})"
            )
        model = self._models.get(version)
        if model is None:
            model = self._models[version] = build_model(f"{self.name}_v{version}", contract)
        return contract, model

    def validate(self, version: int, payload: Any) -> BaseModel:
        """The payload as `version`'s model; ContractError with the reason when it does not fit."""
        return validate_record(self.contract(version)[1], payload)

    def stored_shape(self, version: int | None = None) -> dict[str, FieldSpec]:
        """Stored field name -> spec of one version's documents (the current one by default)."""
        contract = self.contracts[self.schema_version if version is None else version]
        if contract.transform is not None:
            return dict(transforms.REGISTRY[contract.transform].fields)
        return stored_fields(contract)

    @property
    def stored_time_field(self) -> str:
        """The stored document's field that holds the event time (a BSON date)."""
        contract = self.contracts[self.schema_version]
        if contract.transform is not None:
            return transforms.REGISTRY[contract.transform].time_field
        spec = contract.fields[self.event_time_field]
        return spec.store_as or self.event_time_field

    def to_body(self, version: int, model: BaseModel) -> dict[str, Any]:
        """The stored fields of a record validated by `version`'s model (before source/ingest)."""
        contract = self.contracts[version]
        body = stored_body(contract, model)
        if contract.transform is not None:
            body = transforms.REGISTRY[contract.transform].apply(body)
        return body

    def check(self, body: Mapping[str, Any], now: datetime) -> str | None:
        """Why a stored body is kept out (event time implausible, a filter rule), or None."""
        time_field = self.stored_time_field
        reason = plausibility_reason(time_field, body.get(time_field), self.plausibility, now)
        if reason is not None:
            return reason
        for rule in self.filters:
            reason = rule.check(body)
            if reason is not None:
                return reason
        return None

    def url(self, settings: Settings) -> str:
        """Base URL with {external_api_url}/{flask_url} filled in from settings, plus the route."""
        svc = settings.services
        base = self.base_url.format(
            external_api_url=f"http://{svc.host}:{svc.external_api_port}",
            flask_url=f"http://{svc.host}:{svc.flask_port}",
        )
        return base.rstrip("/") + self.route


@dataclass(frozen=True)
class Catalog:
    """Every declared source that is valid, and the problem of every one that is not.

    `problems`: entry name -> what is wrong; `paused_topics`: topic -> problem, for invalid entries
    whose topic could still be read (their messages wait in Kafka until the entry is fixed);
    `file_problems`: a file that could not be read as YAML at all.
    """

    sources: dict[str, Source]
    problems: dict[str, str] = field(default_factory=dict)
    paused_topics: dict[str, str] = field(default_factory=dict)
    file_problems: dict[str, str] = field(default_factory=dict)
    files: tuple[str, ...] = ()

    @property
    def topics(self) -> list[str]:
        return sorted(s.topic for s in self.sources.values())

    def by_topic(self) -> dict[str, Source]:
        return {s.topic: s for s in self.sources.values()}


def _entries(data: Any, origin: str) -> dict[str, Any]:
    if data is None:
        return {}
    if not isinstance(data, dict) or not isinstance(data.get("sources") or {}, dict):
        raise ValueError(f"{origin}: expected a mapping with a 'sources' mapping")
    return dict(data.get("sources") or {})


def build_catalog(documents: list[tuple[str, Any]]) -> Catalog:
    """The catalog of parsed YAML documents [(origin, data)], each entry checked on its own."""
    raw: dict[str, tuple[str, Any]] = {}
    problems: dict[str, str] = {}
    file_problems: dict[str, str] = {}
    for origin, data in documents:
        try:
            entries = _entries(data, origin)
        except ValueError as exc:
            file_problems[origin] = str(exc)
            continue
        for name, spec in entries.items():
            name = str(name)
            if name in raw:
                problems[name] = f"declared in both {raw[name][0]} and {origin}"
                continue
            raw[name] = (origin, spec)
    sources: dict[str, Source] = {}
    for name, (_origin, spec) in raw.items():
        if name in problems:
            continue
        if not isinstance(spec, dict):
            problems[name] = "entry must be a mapping"
            continue
        try:
            sources[name] = Source(name=name, **spec)
        except ValidationError as exc:
            problems[name] = describe_errors(exc, whole="entry")
        except TypeError as exc:
            problems[name] = str(exc)
    by_topic: dict[str, list[str]] = {}
    for source in sources.values():
        by_topic.setdefault(source.topic, []).append(source.name)
    for topic, names in by_topic.items():
        if len(names) > 1:
            for name in names:
                problems[name] = f"topic {topic} is also the topic of {', '.join(sorted(names))}"
                sources.pop(name, None)
    # One index name means one index per collection: a later entry that redefines it is refused
    # (the first declaration keeps working), instead of failing every collection's bootstrap.
    declared_indexes: dict[tuple[str, str], tuple[str, IndexSpec]] = {}
    for source in list(sources.values()):
        for index in source.indexes:
            seen = declared_indexes.get((source.collection, index.name))
            if seen is None:
                declared_indexes[(source.collection, index.name)] = (source.name, index)
            elif seen[1] != index:
                problems[source.name] = (
                    f"index {index.name} of collection {source.collection} is already declared "
                    f"by source {seen[0]} as {dict(seen[1].keys)}"
                    f"{' unique' if seen[1].unique else ''}"
                )
                sources.pop(source.name, None)
                break
    paused: dict[str, str] = {}
    for name, problem in problems.items():
        spec = raw.get(name, ("", {}))[1]
        topic = spec.get("topic") if isinstance(spec, dict) else None
        if isinstance(topic, str) and topic and topic not in {s.topic for s in sources.values()}:
            paused[topic] = f"source {name}: {problem}"
    return Catalog(
        sources=sources,
        problems=problems,
        paused_topics=paused,
        file_problems=file_problems,
        files=tuple(origin for origin, _ in documents),
    )


def parse_sources(data: dict[str, Any]) -> dict[str, Source]:
    """Validate a sources document ({"sources": {name: {...}}}); ValueError on any problem."""
    catalog = build_catalog([("sources", data)])
    if catalog.file_problems:
        raise ValueError("; ".join(catalog.file_problems.values()))
    if catalog.problems:
        raise ValueError("; ".join(f"source {n}: {p}" for n, p in sorted(catalog.problems.items())))
    if not catalog.sources:
        raise ValueError("sources file declares no sources")
    return catalog.sources


def source_files(settings: Settings | None = None) -> list[Path]:
    """The files sources are declared in: sources.yaml and the optional local extra file."""
    services = (settings or get_settings()).services
    files = [services.sources_file]
    if services.sources_extra_file is not None:
        files.append(services.sources_extra_file)
    return files


def _stamp(path: Path) -> tuple[str, int, int]:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return (str(path), -1, -1)
    return (str(path), stat.st_mtime_ns, stat.st_size)


_cache_lock = threading.Lock()
_cache: dict[tuple[tuple[str, int, int], ...], Catalog] = {}


def read_catalog(files: list[Path]) -> Catalog:
    """The catalog of these files as they are on disk now (a missing extra file is empty)."""
    documents: list[tuple[str, Any]] = []
    unreadable: dict[str, str] = {}
    for index, path in enumerate(files):
        try:
            documents.append((str(path), yaml.safe_load(path.read_text(encoding="utf-8"))))
        except FileNotFoundError:
            if index == 0:
                unreadable[str(path)] = "file not found"
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            unreadable[str(path)] = f"not readable as YAML: {exc}"
    catalog = build_catalog(documents)
    if not unreadable:
        return catalog
    return Catalog(
        catalog.sources,
        catalog.problems,
        catalog.paused_topics,
        {**catalog.file_problems, **unreadable},
        tuple(str(p) for p in files),
    )


def load_catalog(settings: Settings | None = None) -> Catalog:
    """The catalog as the declaration files are now; re-read only when one of them changed."""
    files = source_files(settings)
    key = tuple(_stamp(p) for p in files)
    with _cache_lock:
        cached = _cache.get(key)
        if cached is not None:
            return cached
    catalog = read_catalog(files)
    with _cache_lock:
        if len(_cache) > 8:
            _cache.clear()
        _cache[key] = catalog
    return catalog


def load_sources(path: Path | None = None) -> dict[str, Source]:
    """Every valid declared source by name (of `path` alone when given)."""
    if path is not None:
        return read_catalog([path]).sources
    return load_catalog().sources


def get_source(name: str) -> Source:
    """One declared source; the error says what is wrong with it or lists the valid names."""
    catalog = load_catalog()
    if name in catalog.problems:
        raise KeyError(f"source {name!r} is declared but invalid: {catalog.problems[name]}")
    if name not in catalog.sources:
        raise KeyError(f"unknown source {name!r}; declared: {', '.join(sorted(catalog.sources))}")
    return catalog.sources[name]


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
    for name in source.key_fields:
        value = get_path(record, name)
        if value is None:
            raise KeyError(f"record has no key field {name!r}")
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
