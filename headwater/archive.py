"""Parquet archives of source records: schema, rows, keys, layout and retention (pure).

One archive file holds one source's records of one UTC day (by the source's stored event time),
in the collection they are stored in:

    <root>/<collection>/source=<source>/date=<YYYY-MM-DD>/data.parquet
    <root>/<collection>/source=<source>/date=<YYYY-MM-DD>/_manifest.json

`source` and `date` are Hive partitions (the path says them; the file does not repeat them), so
DuckDB, Spark, Trino and pyarrow.dataset read a collection's folder as one table. The manifest is
written last, only after the file was read back and matched MongoDB: a day without one is not
archived. The I/O (MongoDB, filesystems) is headwater.archive_store; this module only decides.

The file's columns come from the declared contracts of every source stored in the collection
(every version, merged): `_id` (the natural key), the stored fields in declaration order, `ingest`
(where the consumer read it) and `_extra` (JSON of any field outside the declared shape, e.g. the
kept extras of an `extra: keep` contract; null when none). Types: string -> string, integer ->
int64, number -> float64, boolean -> bool, timestamp -> timestamp[ms, UTC] (what BSON dates
hold), object and array -> JSON text (DuckDB: json(...)). A field whose declared types disagree
between sources or versions is float64 when all are numeric, JSON text otherwise. A value that
does not fit its column (a document older than its contract) goes to `_extra` under its name and
leaves the column null, so nothing is lost.

The key checksum is the SHA-256 of the sorted `_id`s, each followed by a newline: the same as
`sort | sha256sum` over a file of the keys, so anyone can recompute it from either side.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pyarrow as pa
from bson import json_util

from headwater.declarations import FieldSpec
from headwater.sources import Source, ensure_utc

DATA_FILE = "data.parquet"
MANIFEST_FILE = "_manifest.json"
MANIFEST_FORMAT = 1

_TIMESTAMP = pa.timestamp("ms", tz="UTC")
_ARROW_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "integer": pa.int64(),
    "number": pa.float64(),
    "boolean": pa.bool_(),
    "timestamp": _TIMESTAMP,
    "object": pa.string(),
    "array": pa.string(),
}
_JSON_TYPES = frozenset({"object", "array"})

INGEST_TYPE = pa.struct(
    [
        ("topic", pa.string()),
        ("partition", pa.int32()),
        ("offset", pa.int64()),
        ("ingested_at", _TIMESTAMP),
        ("run_id", pa.string()),
        ("schema_version", pa.int32()),
    ]
)
RESERVED_COLUMNS = ("_id", "ingest", "_extra")
PARTITION_COLUMNS = ("source", "date")


class ArchiveError(RuntimeError):
    """An archive cannot be written, read or trusted; the message says which day and why."""


# ---- schema --------------------------------------------------------------------------------------


def column_kinds(sources: Sequence[Source]) -> dict[str, str]:
    """Stored field -> declared type over every version of every source stored in one collection
    ("number" when numeric types disagree, "object" (JSON text) when others do)."""
    kinds: dict[str, str] = {}
    for source in sources:
        for version in sorted(source.contracts):
            shape: dict[str, FieldSpec] = source.stored_shape(version)
            for name, spec in shape.items():
                seen = kinds.get(name)
                if seen is None or seen == spec.type:
                    kinds[name] = spec.type
                elif {seen, spec.type} <= {"integer", "number"}:
                    kinds[name] = "number"
                else:
                    kinds[name] = "object"
    return kinds


def schema_for(kinds: Mapping[str, str], collection: str) -> pa.Schema:
    """The Arrow schema of rows with these stored-field kinds (see the module docstring)."""
    fields = [pa.field("_id", pa.string(), nullable=False)]
    fields += [pa.field(name, _ARROW_TYPES[kind]) for name, kind in kinds.items()]
    fields += [pa.field("ingest", INGEST_TYPE), pa.field("_extra", pa.string())]
    metadata = {"headwater.collection": collection, "headwater.kinds": json.dumps(dict(kinds))}
    return pa.schema(fields, metadata=metadata)


def archive_schema(sources: Sequence[Source]) -> pa.Schema:
    """The Arrow schema of a collection's archive files (all of its sources share it)."""
    collections = sorted({s.collection for s in sources})
    if len(collections) != 1:
        raise ArchiveError(f"an archive schema is per collection, got {collections}")
    return schema_for(column_kinds(sources), collections[0])


# The `rejected` collection is not archived (it is not pruned either), but `make duckdb` exports
# it for db/sql/reject_reasons.sql with this shape.
REJECT_KINDS: dict[str, str] = {
    "stage": "string",
    "reason": "string",
    "topic": "string",
    "partition": "integer",
    "offset": "integer",
    "contract_topic": "string",
    "run_id": "string",
    "rejected_at": "timestamp",
    "kafka_timestamp_ms": "integer",
    "key": "object",
    "headers": "array",
    "raw": "object",
}


def schema_kinds(schema: pa.Schema) -> dict[str, str]:
    """The declared kind of each stored-field column of an archive schema."""
    return dict(json.loads((schema.metadata or {})[b"headwater.kinds"]))


# ---- rows ----------------------------------------------------------------------------------------


_JSON_OPTIONS = json_util.RELAXED_JSON_OPTIONS.with_options(tz_aware=True, tzinfo=UTC)


def _json_text(value: Any) -> str:
    return json_util.dumps(value, sort_keys=True, json_options=_JSON_OPTIONS)


def _json_value(text: str) -> Any:
    return json_util.loads(text, json_options=_JSON_OPTIONS)


def _fit(value: Any, kind: str) -> tuple[bool, Any]:
    """(fits, column value) of one stored value for a column of `kind`."""
    if value is None:
        return True, None
    if kind == "string":
        return isinstance(value, str), value
    if kind == "boolean":
        return isinstance(value, bool), value
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool), value
    if kind == "number":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return ok, float(value) if ok else None
    if kind == "timestamp":
        return isinstance(value, datetime), ensure_utc(value) if isinstance(
            value, datetime
        ) else None
    return True, _json_text(value)


def _ingest_row(meta: Any, extra: dict[str, Any]) -> dict[str, Any] | None:
    if meta is None:
        return None
    if not isinstance(meta, Mapping):
        extra["ingest"] = meta
        return None
    row: dict[str, Any] = {}
    for child in INGEST_TYPE:
        value = meta.get(child.name)
        kind = (
            "timestamp"
            if pa.types.is_timestamp(child.type)
            else "string"
            if pa.types.is_string(child.type)
            else "integer"
        )
        ok, fitted = _fit(value, kind)
        row[child.name] = fitted if ok else None
        if not ok:
            extra[f"ingest.{child.name}"] = value
    for name, value in meta.items():
        if name not in row:
            extra[f"ingest.{name}"] = value
    return row


def document_row(doc: Mapping[str, Any], kinds: Mapping[str, str]) -> dict[str, Any]:
    """One stored document as an archive row (its `source` is the partition, not a column)."""
    extra: dict[str, Any] = {}
    row: dict[str, Any] = {"_id": str(doc["_id"])}
    for name, kind in kinds.items():
        ok, fitted = _fit(doc.get(name), kind)
        row[name] = fitted if ok else None
        if not ok:
            extra[name] = doc[name]
    row["ingest"] = _ingest_row(doc.get("ingest"), extra)
    for name, value in doc.items():
        if name not in kinds and name not in ("_id", "source", "ingest"):
            extra[name] = value
    row["_extra"] = _json_text(extra) if extra else None
    return row


def rows_to_batch(rows: Sequence[Mapping[str, Any]], schema: pa.Schema) -> pa.RecordBatch:
    """Archive rows as one record batch of `schema`."""
    return pa.RecordBatch.from_pylist(list(rows), schema=schema)


def row_document(row: Mapping[str, Any], source: str, kinds: Mapping[str, str]) -> dict[str, Any]:
    """The stored document an archive row came from (the inverse of document_row, up to the type
    mapping: numbers as floats, objects and arrays parsed back from their JSON)."""
    doc: dict[str, Any] = {"_id": row["_id"]}
    extra = _json_value(row["_extra"]) if row.get("_extra") else {}
    for name, kind in kinds.items():
        value = row.get(name)
        if kind in _JSON_TYPES and value is not None:
            value = _json_value(value)
        doc[name] = value
    doc["source"] = source
    ingest = dict(row["ingest"]) if row.get("ingest") is not None else None
    for name, value in extra.items():
        if name.startswith("ingest."):
            ingest = ingest if ingest is not None else {}
            ingest[name.removeprefix("ingest.")] = value
        else:
            doc[name] = value
    doc["ingest"] = ingest
    return doc


# ---- keys ----------------------------------------------------------------------------------------


def key_checksum(keys: Iterable[str]) -> str:
    """SHA-256 hex of the sorted keys, each followed by a newline (`sort | sha256sum`)."""
    digest = hashlib.sha256()
    for key in sorted(keys):
        digest.update(key.encode("utf-8") + b"\n")
    return digest.hexdigest()


# ---- days and layout -----------------------------------------------------------------------------


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """[start, end) of a UTC day."""
    start = datetime.combine(day, time(0), tzinfo=UTC)
    return start, start + timedelta(days=1)


def days_of(since: datetime, until: datetime) -> list[date]:
    """The whole UTC days in [since, until): a daily run's interval is exactly one."""
    since, until = ensure_utc(since), ensure_utc(until)
    if since.time() != time(0) or until.time() != time(0):
        raise ArchiveError(
            f"an archive window is whole UTC days, not {since.isoformat()} .. {until.isoformat()}"
        )
    first, last = since.date(), until.date()
    return [first + timedelta(days=n) for n in range((last - first).days)]


def partition_dir(collection: str, source: str, day: date) -> str:
    """The folder of one source's day under the archive root (forward slashes, relative)."""
    return f"{collection}/source={source}/date={day.isoformat()}"


def day_closed(day: date, now: datetime, grace_s: float) -> bool:
    """Whether a day is over long enough (grace_s after its end) to be archived."""
    return ensure_utc(now) >= day_bounds(day)[1] + timedelta(seconds=grace_s)


# ---- manifest ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Manifest:
    """What a verified archive of one source's day holds, written beside it last."""

    collection: str
    source: str
    date: str
    rows: int
    key_checksum: str
    # SHA-256 of the file's bytes, and its size (None, 0: a day with no records has no file).
    file: str | None
    file_sha256: str | None
    file_bytes: int
    # The BSON bytes of the documents it holds, as MongoDB stored them.
    bson_bytes: int
    schema_fingerprint: str
    run_id: str | None
    written_at: str
    verified_at: str
    # Set (before any delete) once the prune started removing the day from MongoDB: from then on
    # the archive, not MongoDB, holds the day, and a re-archive merges instead of replacing.
    pruned_at: str | None = None
    pruned_rows: int = 0
    format: int = MANIFEST_FORMAT
    history: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        try:
            data = json.loads(text)
            if data.get("format") != MANIFEST_FORMAT:
                raise ArchiveError(f"manifest format {data.get('format')!r} is not supported")
            return cls(**data)
        except (TypeError, ValueError) as exc:
            raise ArchiveError(f"unreadable manifest: {exc}") from exc


def schema_fingerprint(schema: pa.Schema) -> str:
    """A short hash of the columns and their types (changes when a contract changes a column)."""
    text = ";".join(f"{f.name}:{f.type}" for f in schema)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# ---- retention -----------------------------------------------------------------------------------

OFF = ("off", "none", "never", "")


def parse_days(text: str | int | None, what: str) -> int | None:
    """A retention in days (None = off) from a setting's text; ValueError naming the setting."""
    if text is None:
        return None
    if isinstance(text, int):
        value = text
    else:
        word = str(text).strip().lower()
        if word in OFF:
            return None
        if word.endswith("d"):
            word = word[:-1]
        try:
            value = int(word)
        except ValueError:
            raise ValueError(f"{what}={text!r}: a whole number of days, or off") from None
    if value < 1:
        raise ValueError(f"{what}={text!r}: at least 1 day, or off")
    return value


def parse_retention(text: str) -> dict[str, int | None]:
    """Per-collection retention from `readings=7,user_events=30,matches=off`."""
    result: dict[str, int | None] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, sep, value = part.partition("=")
        if not sep or not name.strip():
            raise ValueError(
                f"retention entry {part!r}: expected collection=days or collection=off"
            )
        result[name.strip()] = parse_days(value, f"retention of {name.strip()}")
    return result


def retention_days(
    collection: str, per_collection: Mapping[str, int | None], default: str, embedded: bool
) -> int | None:
    """Days a collection's raw records stay in MongoDB (None: kept forever). `default` is
    "auto" (7 days on the embedded server, off with MONGO_URI), a number of days or off."""
    if collection in per_collection:
        return per_collection[collection]
    if default.strip().lower() == "auto":
        return 7 if embedded else None
    return parse_days(default, "HEADWATER_ARCHIVE_RETENTION_DEFAULT")


def prune_cutoff(now: datetime, days: int) -> date:
    """Days strictly before this one are past a retention of `days` (whole days kept besides
    today's: a day is pruned once all of it is older than `days` days)."""
    return ensure_utc(now).date() - timedelta(days=days)
