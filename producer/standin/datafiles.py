"""The data folders: every *.json / *.jsonl file is a route, parsed once per version of the file.

A route is ordered and windowed by the event-time field its declared source names (sources.yaml:
the source whose base_url is the stand-in and whose route is the file's); a file no source
declares falls back to guessing among TIME_FIELDS. Parsing and ordering are pure functions;
`Catalog` is the only part that touches the disk. The folders are rescanned on every request, so a
file dropped in while the server runs is served at once.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import yaml

from headwater.sources import Source, TimeFormat, get_path
from producer.standin.paging import Position
from producer.standin.query import MICROS, MICROS_PER_MS, datetime_to_us, epoch_number_to_us

log = logging.getLogger(__name__)

SUFFIXES = (".json", ".jsonl")
# Checked in this order; `time` carries epoch seconds, the others ISO-8601 text.
TIME_FIELDS = ("time", "ts", "utcDate", "timestamp")
DEFAULT_RECORDS_KEY = "records"
# The base_url of the sources this app stands in for.
STANDIN_BASE_URL = "{external_api_url}"
_ROUTE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class DataFileError(ValueError):
    """A data file that cannot be served as records (bad JSON, no records list)."""


@dataclass(frozen=True)
class TimeSpec:
    """Where a route's records carry their event time (a dotted path) and how it is written."""

    field: str
    format: TimeFormat


@dataclass(frozen=True)
class Declaration:
    """The source that declares a route, and the event time it declares."""

    source: str
    time: TimeSpec


@dataclass(frozen=True)
class DataFile:
    """One file's records in event-time order, with the sort keys used to slice windows."""

    route: str
    path: Path
    records_key: str
    time_field: str | None  # None: the records cannot be windowed (see `unwindowed_reason`)
    records: tuple[Any, ...]
    keys: tuple[Position, ...]  # (event time us, index in the file), ascending
    untimed: int = 0  # records left out because their event time is missing or unreadable
    time_field_from: Literal["declared", "detected"] = "detected"
    source: str | None = None  # the declaring source, when declared
    unwindowed_reason: str = ""  # why time_field is None, for the 400 that refuses a window


# ---- pure parsing ------------------------------------------------------------------------------


def parse_records(text: str, suffix: str) -> tuple[str, list[Any]]:
    """The records key and records of a file's text (.jsonl: one JSON value per line)."""
    if suffix == ".jsonl":
        records = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except ValueError as exc:
                raise DataFileError(f"line {number}: {exc}") from None
        return DEFAULT_RECORDS_KEY, records
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise DataFileError(str(exc)) from None
    if isinstance(document, list):
        return DEFAULT_RECORDS_KEY, document
    if isinstance(document, dict):
        lists = [key for key, value in document.items() if isinstance(value, list)]
        if len(lists) == 1:
            return lists[0], document[lists[0]]
        raise DataFileError(f"an object must hold exactly one list field, found {lists}")
    raise DataFileError(f"expected a list or an object, found {type(document).__name__}")


def detect_time_field(records: Sequence[Any]) -> str | None:
    """The first of TIME_FIELDS that any record carries, or None."""
    present = {key for record in records if isinstance(record, dict) for key in record}
    return next((field for field in TIME_FIELDS if field in present), None)


def event_time_us(value: Any) -> int | None:
    """Epoch microseconds of an event-time value (epoch seconds or ISO-8601), None if unreadable."""
    try:
        if isinstance(value, bool):
            return None
        if isinstance(value, int | float):
            return epoch_number_to_us(value)
        if isinstance(value, str):
            return datetime_to_us(datetime.fromisoformat(value))
    except (ValueError, ArithmeticError):
        return None
    return None


def declared_time_us(value: Any, fmt: TimeFormat) -> int | None:
    """Epoch microseconds of an event time written as `fmt`, None if it is not one.

    Accepts what the puller's `headwater.sources.parse_time` accepts (epoch formats: numbers;
    iso8601 and date: ISO-8601 text, a bare YYYY-MM-DD being midnight UTC), but exactly: Decimal
    arithmetic, so a millisecond bound never lands a microsecond off.
    """
    try:
        if fmt in ("epoch_s", "epoch_ms"):
            if isinstance(value, bool) or not isinstance(value, int | float):
                return None
            return epoch_number_to_us(value, MICROS_PER_MS if fmt == "epoch_ms" else MICROS)
        if isinstance(value, str):
            return datetime_to_us(datetime.fromisoformat(value))
    except (ValueError, ArithmeticError):
        return None
    return None


def declarations(route: str, sources: Mapping[str, Source]) -> list[Declaration]:
    """The declarations of `/route` by sources served by the stand-in, by source name."""
    return [
        Declaration(source.name, TimeSpec(source.event_time_field, source.event_time_format))
        for _, source in sorted(sources.items())
        if source.route == f"/{route}" and source.base_url.rstrip("/") == STANDIN_BASE_URL
    ]


def _time_keys(records: Sequence[Any], moment: Callable[[Any], int | None]) -> list[Position]:
    keys = []
    for index, record in enumerate(records):
        us = moment(record)
        if us is not None:
            keys.append((us, index))
    keys.sort()
    return keys


def order_records(
    route: str,
    path: Path,
    records_key: str,
    records: list[Any],
    declared: Declaration | None = None,
) -> DataFile:
    """A DataFile with records in event-time order, ties kept in file order.

    The event time is the declared field read in its declared format; without a declaration, the
    first of TIME_FIELDS any record carries. Records that cannot be windowed are served in file
    order, and `unwindowed_reason` says why.
    """
    field: str | None
    if declared is None:
        field = detect_time_field(records)
        reason = "records have none of " + ", ".join(repr(name) for name in TIME_FIELDS)
        keys = [] if field is None else _time_keys(records, lambda r: _detected_us(r, field))
        windowable = field is not None
    else:
        spec = declared.time
        field = spec.field
        keys = _time_keys(records, lambda r: declared_time_us(get_path(r, spec.field), spec.format))
        # An empty file windows (to nothing); a file where no record's time reads cannot.
        windowable = bool(keys) or not records
        if any(get_path(record, spec.field) is not None for record in records):
            reason = f"no record's {spec.field!r} reads as {spec.format}"
        else:
            reason = f"records have no {spec.field!r}"
    if not windowable:
        field = None
        keys = [(0, index) for index in range(len(records))]
    return DataFile(
        route=route,
        path=path,
        records_key=records_key,
        time_field=field,
        records=tuple(records[index] for _, index in keys),
        keys=tuple(keys),
        untimed=len(records) - len(keys),
        time_field_from="detected" if declared is None else "declared",
        source=None if declared is None else declared.source,
        unwindowed_reason="" if windowable else reason,
    )


def _detected_us(record: Any, field: str) -> int | None:
    return event_time_us(record.get(field)) if isinstance(record, dict) else None


def route_files(
    names: Sequence[str], reserved: Collection[str]
) -> tuple[dict[str, str], list[str]]:
    """Route name -> file name for the servable names, and the names that were passed over."""
    routes: dict[str, str] = {}
    skipped: list[str] = []
    for name in sorted(names):
        stem, suffix = os.path.splitext(name)
        if suffix not in SUFFIXES or name.startswith("."):
            continue
        # Reserved names would be shadowed by the app's own routes; a second suffix by the first.
        if not _ROUTE_NAME.fullmatch(stem) or stem in reserved or stem in routes:
            skipped.append(name)
            continue
        routes[stem] = name
    return routes, skipped


# ---- the folder ----------------------------------------------------------------------------------


class DataFileUnavailable(RuntimeError):
    """A route's file exists but cannot be served now (still being written, sources unreadable)."""


# A parsed file is current while its mtime, size and declaration are.
_Version = tuple[int, int, Declaration | None]


class Catalog:
    """The routes of the data folders, with parsed files cached per version and declaration.

    `extra_dir` is served alongside `data_dir` (a route in both is served from `data_dir`) and may
    not exist yet. `load_sources` is called on every lookup, so a changed declaration re-orders a
    file on the next request.
    """

    def __init__(
        self,
        data_dir: Path,
        reserved: Collection[str],
        *,
        load_sources: Callable[[], Mapping[str, Source]],
        extra_dir: Path | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.extra_dir = extra_dir
        self.reserved = frozenset(reserved)
        self._load_sources = load_sources
        self._cache: dict[Path, tuple[_Version, DataFile | DataFileError]] = {}
        self._warned: set[str] = set()
        # gunicorn's gthread workers share one app between threads.
        self._lock = threading.Lock()

    def routes(self) -> dict[str, Path]:
        """Route name -> file path, as the folders are now."""
        routes = self._folder_routes(self.data_dir)
        if self.extra_dir is not None:
            for route, path in self._folder_routes(self.extra_dir).items():
                if route in routes:
                    self._warn_once(
                        f"shadowed {path}",
                        "standin data file not served (route /%s is served from %s): %s",
                        route,
                        routes[route],
                        path,
                    )
                else:
                    routes[route] = path
        return routes

    def get(self, route: str) -> DataFile | None:
        """The parsed file behind `route`, or None when there is no such route."""
        paths = self.routes()
        path = paths.get(route)
        if path is None:
            return None
        try:
            stat = path.stat()
        except FileNotFoundError:
            return None
        declared = self._declaration(route)
        version = (stat.st_mtime_ns, stat.st_size, declared)
        with self._lock:
            for gone in set(self._cache) - set(paths.values()):
                del self._cache[gone]
            cached = self._cache.get(path)
            if cached is None or cached[0] != version:
                cached = (version, self._load(route, path, declared))
                self._cache[path] = cached
        result = cached[1]
        if isinstance(result, DataFileError):
            raise DataFileUnavailable(f"{path.name}: {result}")
        return result

    def _folder_routes(self, folder: Path) -> dict[str, Path]:
        try:
            names = [entry.name for entry in os.scandir(folder) if entry.is_file()]
        except (FileNotFoundError, NotADirectoryError):
            names = []
        routes, skipped = route_files(names, self.reserved)
        for name in skipped:
            self._warn_once(
                f"skipped {folder / name}",
                "standin data file not served (reserved, duplicate or bad name): %s",
                folder / name,
            )
        return {route: folder / name for route, name in routes.items()}

    def _declaration(self, route: str) -> Declaration | None:
        try:
            sources = self._load_sources()
        except (OSError, ValueError, yaml.YAMLError) as exc:
            # 503 like a file caught mid-write: guessing instead could serve a declared route in
            # another order than the one its source declares.
            raise DataFileUnavailable(f"sources unreadable: {exc}") from exc
        found = declarations(route, sources)
        if len({declaration.time for declaration in found}) > 1:
            self._warn_once(
                f"conflict /{route}",
                "standin sources disagree on the event time of route=/%s, using %s: %s",
                route,
                found[0].source,
                ", ".join(f"{d.source}={d.time.field}:{d.time.format}" for d in found),
            )
        return found[0] if found else None

    def _warn_once(self, key: str, message: str, *args: Any) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(message, *args)

    def _load(
        self, route: str, path: Path, declared: Declaration | None
    ) -> DataFile | DataFileError:
        try:
            key, records = parse_records(path.read_text(encoding="utf-8"), path.suffix)
        except (DataFileError, OSError, UnicodeDecodeError) as exc:
            log.error("standin data file unreadable path=%s problem=%s", path, exc)
            return DataFileError(str(exc))
        datafile = order_records(route, path, key, records, declared)
        log.info(
            "standin data file loaded route=/%s path=%s records=%d time_field=%s "
            "time_field_from=%s source=%s untimed=%d",
            route,
            path,
            len(datafile.records),
            datafile.time_field,
            datafile.time_field_from,
            datafile.source or "-",
            datafile.untimed,
        )
        if declared is not None and datafile.unwindowed_reason:
            log.warning(
                "standin data file cannot be windowed route=/%s source=%s: %s",
                route,
                declared.source,
                datafile.unwindowed_reason,
            )
        if datafile.untimed:
            log.warning(
                "standin records without a readable %s left out route=/%s count=%d",
                datafile.time_field,
                route,
                datafile.untimed,
            )
        return datafile
