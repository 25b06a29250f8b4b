"""Archive I/O: read a source's day from MongoDB, write and verify its Parquet file, prune.

The decisions (schema, rows, keys, layout, retention) are headwater.archive; this module moves
the bytes. Filesystems: a local folder, or any URL pyarrow opens itself (s3://, gs://, hdfs://,
abfs://) or through fsspec (memory://, and whatever fsspec implementations are installed).

Writes are atomic: a file is written under a hidden temporary name in its own folder and then
moved over the final name (a rename on local disks and HDFS; on object stores an object appears
whole once its upload completes). The manifest is the commit: it is written only after the file
was read back and its keys matched MongoDB's for the day.
"""

from __future__ import annotations

import hashlib
import io
import logging
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import bson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from pymongo.database import Database

from headwater.archive import (
    DATA_FILE,
    MANIFEST_FILE,
    ArchiveError,
    Manifest,
    archive_schema,
    day_bounds,
    document_row,
    key_checksum,
    partition_dir,
    prune_cutoff,
    schema_fingerprint,
    schema_kinds,
)
from headwater.sources import Source

log = logging.getLogger(__name__)

PARQUET_OPTIONS: dict[str, Any] = {
    "compression": "zstd",
    "compression_level": 3,
    "write_page_checksum": True,
    "row_group_size": 128 * 1024,
}
DELETE_CHUNK = 5_000
_ONE_DAY = timedelta(days=1)


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


# ---- filesystems ---------------------------------------------------------------------------------


def open_root(root: str) -> tuple[pafs.FileSystem, str]:
    """(filesystem, base path) of an archive root: a local folder or a filesystem URL."""
    if "://" not in root:
        path = Path(root).resolve()
        path.mkdir(parents=True, exist_ok=True)
        return pafs.LocalFileSystem(), path.as_posix()
    try:
        filesystem, base = pafs.FileSystem.from_uri(root)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        import fsspec  # fsspec implementations: memory://, and any installed (gcsfs, adlfs, ...)

        fs, base = fsspec.core.url_to_fs(root)
        filesystem = pafs.PyFileSystem(pafs.FSSpecHandler(fs))
    filesystem.create_dir(base, recursive=True)
    return filesystem, base.rstrip("/")


class ArchiveFiles:
    """The archive root's files: manifests, data files, atomic writes and read-backs."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.fs, self.base = open_root(root)

    def path(self, *parts: str) -> str:
        return "/".join([self.base, *parts])

    def exists(self, path: str) -> bool:
        return self.fs.get_file_info(path).type == pafs.FileType.File

    def read_bytes(self, path: str) -> bytes:
        with self.fs.open_input_stream(path) as stream:
            return bytes(stream.read())

    def write_atomic(self, path: str, data: bytes) -> None:
        """Write `data` to `path` whole or not at all (temp file in the same folder, then move)."""
        folder, _, name = path.rpartition("/")
        self.fs.create_dir(folder, recursive=True)
        temp = f"{folder}/.{name}.{uuid.uuid4().hex}.tmp"
        try:
            with self.fs.open_output_stream(temp) as out:
                out.write(data)
            self.fs.move(temp, path)
        except BaseException:
            if self.fs.get_file_info(temp).type == pafs.FileType.File:
                self.fs.delete_file(temp)
            raise

    def delete(self, path: str) -> None:
        if self.exists(path):
            self.fs.delete_file(path)

    # -- one source's day

    def day_dir(self, collection: str, source: str, day: date) -> str:
        return self.path(partition_dir(collection, source, day))

    def manifest(self, collection: str, source: str, day: date) -> Manifest | None:
        path = f"{self.day_dir(collection, source, day)}/{MANIFEST_FILE}"
        if not self.exists(path):
            return None
        try:
            return Manifest.from_json(self.read_bytes(path).decode("utf-8"))
        except (UnicodeDecodeError, ArchiveError) as exc:
            raise ArchiveError(f"{collection} {source} {day}: {path}: {exc}") from exc

    def write_manifest(self, manifest: Manifest) -> None:
        day = date.fromisoformat(manifest.date)
        folder = self.day_dir(manifest.collection, manifest.source, day)
        self.write_atomic(f"{folder}/{MANIFEST_FILE}", manifest.to_json().encode("utf-8"))

    def manifests(self, collection: str) -> list[Manifest]:
        """Every manifest under a collection's folder (any source, any day)."""
        selector = pafs.FileSelector(self.path(collection), recursive=True, allow_not_found=True)
        found = []
        for info in self.fs.get_file_info(selector):
            if info.type == pafs.FileType.File and info.base_name == MANIFEST_FILE:
                found.append(Manifest.from_json(self.read_bytes(info.path).decode("utf-8")))
        return sorted(found, key=lambda m: (m.source, m.date))

    def data_path(self, manifest: Manifest) -> str | None:
        if manifest.file is None:
            return None
        day = date.fromisoformat(manifest.date)
        return f"{self.day_dir(manifest.collection, manifest.source, day)}/{manifest.file}"

    def read_table(self, manifest: Manifest, columns: list[str] | None = None) -> pa.Table:
        path = self.data_path(manifest)
        if path is None:
            return pa.table({"_id": pa.array([], pa.string())})
        # partitioning=None: the file alone, not the `source=`/`date=` columns pyarrow would
        # otherwise add from its hive-style directory names.
        return pq.read_table(path, filesystem=self.fs, columns=columns, partitioning=None)

    def verified_keys(self, manifest: Manifest) -> list[str]:
        """The keys of an archived day after checking its file against its manifest (bytes,
        rows and key checksum); ArchiveError saying what does not match."""
        where = f"{manifest.collection} {manifest.source} {manifest.date}"
        path = self.data_path(manifest)
        if path is None:
            if manifest.rows != 0:
                raise ArchiveError(f"{where}: the manifest names no file but {manifest.rows} rows")
            return []
        if not self.exists(path):
            raise ArchiveError(f"{where}: archive file {path} is missing")
        data = self.read_bytes(path)
        if hashlib.sha256(data).hexdigest() != manifest.file_sha256:
            raise ArchiveError(f"{where}: archive file {path} changed since it was verified")
        try:
            keys = pq.read_table(io.BytesIO(data), columns=["_id"]).column("_id").to_pylist()
        except (pa.ArrowException, OSError) as exc:
            raise ArchiveError(f"{where}: archive file {path} is unreadable: {exc}") from exc
        if len(keys) != manifest.rows or key_checksum(keys) != manifest.key_checksum:
            raise ArchiveError(f"{where}: archive file {path} does not hold the manifest's keys")
        return keys


# ---- MongoDB -------------------------------------------------------------------------------------


def sources_by_collection(sources: Mapping[str, Source]) -> dict[str, list[Source]]:
    """Collection -> the declared sources stored in it (by name): one archive DAG each."""
    grouped: dict[str, list[Source]] = {}
    for source in sorted(sources.values(), key=lambda s: s.name):
        grouped.setdefault(source.collection, []).append(source)
    return grouped


def day_filter(source: Source, day: date) -> dict[str, Any]:
    start, end = day_bounds(day)
    return {"source": source.name, source.stored_time_field: {"$gte": start, "$lt": end}}


def iter_day(db: Database, source: Source, day: date, batch: int) -> Iterator[list[dict[str, Any]]]:
    """A source's stored documents of one day, `batch` at a time (the (source, time) index)."""
    cursor = db[source.collection].find(day_filter(source, day), batch_size=batch)
    chunk: list[dict[str, Any]] = []
    for doc in cursor:
        chunk.append(doc)
        if len(chunk) >= batch:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def day_keys(db: Database, source: Source, day: date) -> list[str]:
    """The _ids MongoDB holds for a source's day."""
    found = db[source.collection].find(day_filter(source, day), {"_id": 1}, batch_size=20_000)
    return [str(doc["_id"]) for doc in found]


def oldest_day(db: Database, source: Source) -> date | None:
    """The day of a source's oldest stored record (None: it has none)."""
    return next_day(db, source, None)


def next_day(db: Database, source: Source, first: date | None) -> date | None:
    """The day of a source's first stored record on or after `first` (any, when None): one
    sorted, limited find on the (source, time) index, so walking the days that hold records
    costs one query per such day, not one per calendar day."""
    field_name = source.stored_time_field
    bound: dict[str, Any] = {"$type": "date"}
    if first is not None:
        bound = {"$gte": day_bounds(first)[0]}
    found = list(
        db[source.collection]
        .find({"source": source.name, field_name: bound}, {field_name: 1})
        .sort(field_name, 1)
        .limit(1)
    )
    return found[0][field_name].astimezone(UTC).date() if found else None


# ---- archive one day -----------------------------------------------------------------------------


@dataclass(frozen=True)
class DayResult:
    """What archiving one source's day did."""

    source: str
    date: str
    rows: int
    mongo_rows: int
    kept_from_archive: int
    file_bytes: int
    bson_bytes: int
    seconds: float
    merged: bool

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def conform(table: pa.Table, schema: pa.Schema, where: str) -> pa.Table:
    """An older archive's table in today's schema: a column the contracts added since is null;
    one they dropped is an error (merging would lose it)."""
    dropped = [name for name in table.column_names if name not in schema.names]
    if dropped:
        raise ArchiveError(
            f"{where}: the archive has columns the contracts no longer declare: {dropped}"
        )
    columns = [
        table.column(f.name).cast(f.type)
        if f.name in table.column_names
        else pa.nulls(table.num_rows, f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(columns, schema=schema)


def _table_of(
    db: Database, source: Source, day: date, schema: pa.Schema, batch: int
) -> tuple[pa.Table, int]:
    kinds = schema_kinds(schema)
    batches = []
    bson_bytes = 0
    for docs in iter_day(db, source, day, batch):
        bson_bytes += sum(len(bson.encode(doc)) for doc in docs)
        batches.append(pa.RecordBatch.from_pylist([document_row(d, kinds) for d in docs], schema))
    return pa.Table.from_batches(batches, schema=schema), bson_bytes


def archive_day(
    db: Database,
    files: ArchiveFiles,
    collection_sources: Sequence[Source],
    source: Source,
    day: date,
    *,
    run_id: str | None,
    batch: int = 20_000,
) -> DayResult:
    """Write one source's day to its Parquet file, verify it, then write its manifest.

    Until the day was pruned the file holds exactly what MongoDB holds for the day, so a re-run
    leaves the same rows. Once pruned, the archive holds the day: a re-run keeps its rows and
    merges in whatever MongoDB holds for the day now (late records; MongoDB wins on a key).
    """
    started = _now()
    where = f"{source.collection} {source.name} {day}"
    schema = archive_schema(collection_sources)
    previous = files.manifest(source.collection, source.name, day)
    merged = previous is not None and previous.pruned_at is not None
    table, bson_bytes = _table_of(db, source, day, schema, batch)
    mongo_rows = table.num_rows
    kept = 0
    if merged and previous is not None:
        files.verified_keys(previous)  # an archive that cannot be trusted is not merged into
        old = conform(files.read_table(previous), schema, where)
        keep = pc.invert(pc.is_in(old.column("_id"), value_set=table.column("_id")))
        old = old.filter(keep)
        kept = old.num_rows
        table = pa.concat_tables([old, table])
        if previous.rows:
            bson_bytes += round(previous.bson_bytes * kept / previous.rows)
    table = table.sort_by("_id")
    keys = table.column("_id").to_pylist()
    folder = files.day_dir(source.collection, source.name, day)
    data_path = f"{folder}/{DATA_FILE}"
    if table.num_rows:
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, **PARQUET_OPTIONS)
        data = sink.getvalue().to_pybytes()
        files.write_atomic(data_path, data)
        file_name: str | None = DATA_FILE
    else:
        files.delete(data_path)
        data, file_name = b"", None
    written = Manifest(
        collection=source.collection,
        source=source.name,
        date=day.isoformat(),
        rows=len(keys),
        key_checksum=key_checksum(keys),
        file=file_name,
        file_sha256=hashlib.sha256(data).hexdigest() if file_name else None,
        file_bytes=len(data),
        bson_bytes=bson_bytes,
        schema_fingerprint=schema_fingerprint(schema),
        run_id=run_id,
        written_at=_iso(started),
        verified_at="",
        pruned_at=previous.pruned_at if previous else None,
        pruned_rows=previous.pruned_rows if previous else 0,
        history=[
            *(previous.history if previous else []),
            {"run_id": run_id, "written_at": _iso(started), "rows": len(keys)},
        ][-20:],
    )
    # Verify what is on the filesystem now, against MongoDB now (a second, key-only read).
    stored = files.verified_keys(replace(written, verified_at="-"))
    now_keys = day_keys(db, source, day)
    if merged:
        missing = set(now_keys) - set(stored)
        if missing:
            raise ArchiveError(
                f"{where}: {len(missing)} documents arrived while archiving; the retry re-reads"
            )
    elif len(now_keys) != len(stored) or key_checksum(now_keys) != written.key_checksum:
        raise ArchiveError(
            f"{where}: MongoDB holds {len(now_keys)} documents (key checksum "
            f"{key_checksum(now_keys)[:12]}), the archive {len(stored)} "
            f"({written.key_checksum[:12]}): the day changed while archiving; the retry re-reads"
        )
    files.write_manifest(replace(written, verified_at=_iso(_now())))
    seconds = (_now() - started).total_seconds()
    result = DayResult(
        source=source.name,
        date=day.isoformat(),
        rows=len(keys),
        mongo_rows=mongo_rows,
        kept_from_archive=kept,
        file_bytes=len(data),
        bson_bytes=bson_bytes,
        seconds=round(seconds, 3),
        merged=merged,
    )
    log.info(
        "archive day collection=%s source=%s date=%s rows=%d mongo_rows=%d kept=%d "
        "file_bytes=%d bson_bytes=%d seconds=%.1f",
        source.collection,
        source.name,
        day,
        result.rows,
        mongo_rows,
        kept,
        result.file_bytes,
        bson_bytes,
        seconds,
    )
    return result


# ---- prune ---------------------------------------------------------------------------------------


@dataclass
class PruneReport:
    """What a prune removed, and which days it refused and why."""

    collection: str
    retention_days: int | None
    cutoff: str | None = None
    pruned: list[dict[str, Any]] = field(default_factory=list)
    blocked: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "collection": self.collection,
            "retention_days": self.retention_days,
            "cutoff": self.cutoff,
            "pruned": self.pruned,
            "blocked": self.blocked,
            "deleted": sum(p["deleted"] for p in self.pruned),
        }


def prune_day(
    db: Database, files: ArchiveFiles, source: Source, day: date, now: datetime
) -> dict[str, Any] | None:
    """Delete one source's day from MongoDB if its archive holds every document MongoDB has
    for it; None when MongoDB holds nothing for the day. ArchiveError when the archive is
    missing, does not match its manifest, or lacks documents MongoDB holds."""
    where = f"{source.collection} {source.name} {day}"
    keys = day_keys(db, source, day)
    if not keys:
        return None
    manifest = files.manifest(source.collection, source.name, day)
    if manifest is None:
        raise ArchiveError(f"{where}: not archived ({len(keys)} documents in MongoDB)")
    archived = set(files.verified_keys(manifest))
    missing = [k for k in keys if k not in archived]
    if missing:
        raise ArchiveError(
            f"{where}: {len(missing)} of MongoDB's {len(keys)} documents are not in the archive "
            f"(stored after it was written, e.g. {missing[0]!r}): re-run the day's archive"
        )
    # Marked first: if the deletes stop halfway, a re-archive merges instead of replacing.
    if manifest.pruned_at is None:
        manifest = replace(manifest, pruned_at=_iso(now))
        files.write_manifest(manifest)
    deleted = 0
    collection = db[source.collection]
    for start in range(0, len(keys), DELETE_CHUNK):
        chunk = keys[start : start + DELETE_CHUNK]
        deleted += collection.delete_many(
            {"_id": {"$in": chunk}, "source": source.name}
        ).deleted_count
    files.write_manifest(replace(manifest, pruned_rows=manifest.pruned_rows + deleted))
    log.info(
        "prune day collection=%s source=%s date=%s deleted=%d archived_rows=%d",
        source.collection,
        source.name,
        day,
        deleted,
        manifest.rows,
    )
    return {"source": source.name, "date": day.isoformat(), "deleted": deleted}


def prune(
    db: Database,
    files: ArchiveFiles,
    collection_sources: Sequence[Source],
    retention: int | None,
    now: datetime,
) -> PruneReport:
    """Remove from MongoDB every day past the retention whose archive is verified. Days that
    cannot be (no archive, a changed or unreadable file, documents the archive lacks) stay and
    are listed in report.blocked; the caller fails loudly on them."""
    collection = collection_sources[0].collection
    report = PruneReport(collection=collection, retention_days=retention)
    if retention is None:
        return report
    cutoff = prune_cutoff(now, retention)
    report.cutoff = cutoff.isoformat()
    for source in collection_sources:
        # The days that hold records, oldest first (one indexed query each), up to the cutoff.
        day = next_day(db, source, None)
        while day is not None and day < cutoff:
            this_day, day = day, next_day(db, source, day + _ONE_DAY)
            try:
                done = prune_day(db, files, source, this_day, now)
            except ArchiveError as exc:
                log.error(
                    "prune blocked collection=%s source=%s date=%s reason=%s",
                    collection,
                    source.name,
                    this_day,
                    exc,
                )
                report.blocked.append(
                    {"source": source.name, "date": this_day.isoformat(), "reason": str(exc)}
                )
                continue
            if done is not None:
                report.pruned.append(done)
    return report


# ---- hot export (make duckdb) --------------------------------------------------------------------


def _export_day(
    db: Database, source: Source, day: date, schema: pa.Schema, dest: Path, batch: int
) -> int:
    """One unarchived source day, as the archive would write it, under `dest`: its rows."""
    kinds = schema_kinds(schema)
    batches = [
        pa.RecordBatch.from_pylist([document_row(d, kinds) for d in docs], schema)
        for docs in iter_day(db, source, day, batch)
    ]
    if not batches:
        return 0
    table = pa.Table.from_batches(batches, schema=schema).sort_by("_id")
    folder = dest / partition_dir(source.collection, source.name, day)
    folder.mkdir(parents=True)
    pq.write_table(table, folder / DATA_FILE, **PARQUET_OPTIONS)
    return table.num_rows


def export_hot(
    db: Database,
    files: ArchiveFiles,
    sources: Mapping[str, Source],
    dest: Path,
    *,
    since: date | None = None,
    batch: int = 20_000,
) -> dict[str, Any]:
    """Write every source day that has no archive yet (from `since` on, when given) to Parquet
    under `dest`, in the archive's layout, plus the whole `rejected` collection as
    dest/rejected/data.parquet; `dest` is replaced. Returns what was written, per collection."""
    import shutil

    from headwater.archive import REJECT_KINDS, schema_for
    from headwater.contracts import Collections

    temp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}")
    temp.mkdir(parents=True)
    written: dict[str, Any] = {"collections": {}, "rejected": 0}
    try:
        today = _now().date()
        for collection, members in sources_by_collection(sources).items():
            schema = archive_schema(members)
            rows = 0
            for source in members:
                day = next_day(db, source, since)
                while day is not None and day <= today:
                    if files.manifest(collection, source.name, day) is None:
                        rows += _export_day(db, source, day, schema, temp, batch)
                    day = next_day(db, source, day + _ONE_DAY)
            written["collections"][collection] = rows
        reject_schema = schema_for(REJECT_KINDS, Collections.REJECTED)
        (temp / Collections.REJECTED).mkdir()
        options = {k: v for k, v in PARQUET_OPTIONS.items() if k != "row_group_size"}
        with pq.ParquetWriter(
            temp / Collections.REJECTED / DATA_FILE, reject_schema, **options
        ) as writer:
            chunk: list[dict[str, Any]] = []
            for doc in db[Collections.REJECTED].find({}, batch_size=batch):
                chunk.append(document_row(doc, REJECT_KINDS))
                if len(chunk) >= batch:
                    writer.write_batch(pa.RecordBatch.from_pylist(chunk, reject_schema))
                    written["rejected"] += len(chunk)
                    chunk = []
            if chunk:
                writer.write_batch(pa.RecordBatch.from_pylist(chunk, reject_schema))
                written["rejected"] += len(chunk)
        if dest.exists():
            shutil.rmtree(dest)
        temp.rename(dest)
    finally:
        if temp.exists():
            shutil.rmtree(temp)
    log.info(
        "hot export dest=%s rows=%s rejected=%d", dest, written["collections"], written["rejected"]
    )
    return written
