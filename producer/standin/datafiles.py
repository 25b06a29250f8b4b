"""The data folder: every *.json / *.jsonl file is a route, parsed once per (path, mtime, size).

Parsing and ordering are pure functions; `Catalog` is the only part that touches the disk. The
folder is rescanned on every request, so a file dropped in while the server runs is served at once.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from producer.standin.paging import Position
from producer.standin.query import datetime_to_us, epoch_number_to_us

log = logging.getLogger(__name__)

SUFFIXES = (".json", ".jsonl")
# Checked in this order; `time` carries epoch seconds, the others ISO-8601 text.
TIME_FIELDS = ("time", "ts", "utcDate", "timestamp")
DEFAULT_RECORDS_KEY = "records"
_ROUTE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class DataFileError(ValueError):
    """A data file that cannot be served as records (bad JSON, no records list)."""


@dataclass(frozen=True)
class DataFile:
    """One file's records in event-time order, with the sort keys used to slice windows."""

    route: str
    path: Path
    records_key: str
    time_field: str | None
    records: tuple[Any, ...]
    keys: tuple[Position, ...]  # (event time us, index in the file), ascending
    untimed: int = 0  # records left out because their event time is missing or unreadable


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


def order_records(route: str, path: Path, records_key: str, records: list[Any]) -> DataFile:
    """A DataFile with records in event-time order, ties kept in file order."""
    field = detect_time_field(records)
    if field is None:
        keys = [(0, index) for index in range(len(records))]
    else:
        keys = []
        for index, record in enumerate(records):
            moment = event_time_us(record.get(field)) if isinstance(record, dict) else None
            if moment is not None:
                keys.append((moment, index))
        keys.sort()
    return DataFile(
        route=route,
        path=path,
        records_key=records_key,
        time_field=field,
        records=tuple(records[index] for _, index in keys),
        keys=tuple(keys),
        untimed=len(records) - len(keys),
    )


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
    """A route's file exists but cannot be parsed now (e.g. it is still being written)."""


class Catalog:
    """The routes of one data folder, with parsed files cached by (path, mtime, size)."""

    def __init__(self, data_dir: Path, reserved: Collection[str]) -> None:
        self.data_dir = data_dir
        self.reserved = frozenset(reserved)
        self._cache: dict[Path, tuple[tuple[int, int], DataFile | DataFileError]] = {}
        self._warned: set[str] = set()
        # gunicorn's gthread workers share one app between threads.
        self._lock = threading.Lock()

    def routes(self) -> dict[str, Path]:
        """Route name -> file path, as the folder is now."""
        try:
            names = [entry.name for entry in os.scandir(self.data_dir) if entry.is_file()]
        except FileNotFoundError:
            names = []
        routes, skipped = route_files(names, self.reserved)
        for name in skipped:
            if name not in self._warned:
                self._warned.add(name)
                log.warning(
                    "standin data file not served (reserved, duplicate or bad name): %s", name
                )
        return {route: self.data_dir / name for route, name in routes.items()}

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
        version = (stat.st_mtime_ns, stat.st_size)
        with self._lock:
            for gone in set(self._cache) - set(paths.values()):
                del self._cache[gone]
            cached = self._cache.get(path)
            if cached is None or cached[0] != version:
                cached = (version, self._load(route, path))
                self._cache[path] = cached
        result = cached[1]
        if isinstance(result, DataFileError):
            raise DataFileUnavailable(f"{path.name}: {result}")
        return result

    def _load(self, route: str, path: Path) -> DataFile | DataFileError:
        try:
            key, records = parse_records(path.read_text(encoding="utf-8"), path.suffix)
        except (DataFileError, OSError, UnicodeDecodeError) as exc:
            log.error("standin data file unreadable path=%s problem=%s", path, exc)
            return DataFileError(str(exc))
        datafile = order_records(route, path, key, records)
        log.info(
            "standin data file loaded route=/%s records=%d time_field=%s untimed=%d",
            route,
            len(datafile.records),
            datafile.time_field,
            datafile.untimed,
        )
        if datafile.untimed:
            log.warning(
                "standin records without a readable %s left out route=/%s count=%d",
                datafile.time_field,
                route,
                datafile.untimed,
            )
        return datafile
