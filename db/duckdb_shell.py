"""`make duckdb`: DuckDB over the Parquet archive and a fresh export of the days not archived yet.

    make duckdb                                   # a SQL prompt (views below), ; ends a statement
    make duckdb ARGS="-f db/sql/sensor_stats.sql" # run a file, print its rows as JSON
    make duckdb ARGS="-c 'SELECT count(*) AS n FROM readings'"
    python -m db.duckdb_shell --help

One view per collection that holds source records (readings, user_events, ...): the archive's
verified day files (those with a manifest) UNION ALL BY NAME the hot export's files, with the
Hive partitions `source` and `date` as columns. The hot export (headwater.archive_store.export_hot)
copies every source day MongoDB holds that has no archive yet, plus the whole `rejected`
collection (never archived), to HEADWATER_ARCHIVE_HOT_EXPORT_DIR; it is refreshed at start unless
--reuse-export (keep the last one) or --no-export (archive only; `rejected` is then empty).
`archive_manifests` lists the archived days (rows, key checksum, verified_at, pruned_at).

The session runs in UTC. FROM, UNTIL (ISO-8601), WINDOW, USER_ID, DEVICE_PREFIX, TOPIC and LIMIT
from the environment become the SQL variables from, until, window, user_id, device_prefix, topic
and limit (getvariable('from')), typed, NULL when unset: the db/sql files read them like their
mongosh twins in db/queries read the same environment.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs

from headwater.archive import DATA_FILE, REJECT_KINDS, Manifest, archive_schema, schema_for
from headwater.archive_store import ArchiveFiles, export_hot, sources_by_collection
from headwater.contracts import Collections
from headwater.settings import REPO_ROOT, Settings, get_settings
from headwater.sources import Source, load_sources

log = logging.getLogger("duckdb_shell")

SQL_DIR = REPO_ROOT / "db" / "sql"
PARTITION_SCHEMA = pa.schema([("source", pa.string()), ("date", pa.date32())])
MANIFESTS_VIEW = "archive_manifests"


class ShellError(ValueError):
    """A bad argument or environment value; the message names it."""


# ---- variables from the environment (pure) ------------------------------------------------


def _time(name: str, text: str) -> str:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ShellError(f"{name}={text} is not an ISO-8601 time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return f"TIMESTAMPTZ '{moment.astimezone(UTC).isoformat()}'"


def _text(_: str, text: str) -> str:
    return _sql_text(text)


def _count(name: str, text: str) -> str:
    if not text.isdigit():
        raise ShellError(f"{name}={text} is not a whole number >= 0")
    return f"{int(text)}::BIGINT"


# env name -> (SQL variable, its type when unset, literal builder)
VARIABLES: dict[str, tuple[str, str, Callable[[str, str], str]]] = {
    "FROM": ("from", "TIMESTAMPTZ", _time),
    "UNTIL": ("until", "TIMESTAMPTZ", _time),
    "WINDOW": ("window", "VARCHAR", _text),
    "USER_ID": ("user_id", "VARCHAR", _text),
    "DEVICE_PREFIX": ("device_prefix", "VARCHAR", _text),
    "TOPIC": ("topic", "VARCHAR", _text),
    "LIMIT": ("limit", "BIGINT", _count),
}


def variable_statements(env: Mapping[str, str]) -> list[str]:
    """`SET VARIABLE` for every known variable: the env's value, typed, or a typed NULL when the
    env leaves it unset or empty (as the mongosh scripts treat an empty value)."""
    statements = []
    for env_name, (name, kind, literal) in VARIABLES.items():
        text = (env.get(env_name) or "").strip()
        value = literal(env_name, text) if text else f"NULL::{kind}"
        statements.append(f'SET VARIABLE "{name}" = {value}')
    return statements


# ---- views -------------------------------------------------------------------------------------


def _sql_text(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def view_schema(schema: pa.Schema) -> pa.Schema:
    """A collection view's columns: the archive file's, then the Hive partitions."""
    return pa.schema(list(schema) + list(PARTITION_SCHEMA)).remove_metadata()


@dataclass
class ViewSet:
    """What one collection's view reads (for the banner and the tests)."""

    archived: list[str] = field(default_factory=list)
    exported: list[str] = field(default_factory=list)


def create_view(
    con: duckdb.DuckDBPyConnection,
    name: str,
    schema: pa.Schema,
    local_files: list[str],
    remote: tuple[pafs.FileSystem, list[str], str] | None = None,
) -> None:
    """A view `name` over Parquet files of `schema` in the archive layout (hive partitions): local
    files through DuckDB's own reader, remote ones (any pyarrow filesystem) as a pyarrow dataset;
    with no files at all it is empty but typed, so every query still binds."""
    full = view_schema(schema)
    empty = f"_{name}_empty"
    con.register(empty, full.empty_table())
    parts = [f"SELECT * FROM {_ident(empty)}"]
    if local_files:
        listed = ", ".join(_sql_text(f) for f in local_files)
        parts.append(
            f"SELECT * FROM read_parquet([{listed}], hive_partitioning = true, "
            "hive_types = {'source': 'VARCHAR', 'date': 'DATE'}, union_by_name = true)"
        )
    if remote is not None and remote[1]:
        filesystem, paths, base = remote
        dataset = pads.dataset(
            paths,
            schema=full,
            format="parquet",
            filesystem=filesystem,
            partitioning=pads.partitioning(PARTITION_SCHEMA, flavor="hive"),
            partition_base_dir=base,
        )
        registered = f"_{name}_archive"
        con.register(registered, dataset)
        parts.append(f"SELECT * FROM {_ident(registered)}")
    union = " UNION ALL BY NAME ".join(parts)
    con.execute(f"CREATE OR REPLACE VIEW {_ident(name)} AS {union}")


def exported_files(export_dir: Path, collection: str) -> list[str]:
    folder = export_dir / collection
    if not folder.is_dir():
        return []
    return sorted(str(p) for p in folder.glob(f"source=*/date=*/{DATA_FILE}"))


def archived_files(files: ArchiveFiles, collection: str) -> tuple[list[str], list[Manifest]]:
    """The data files of a collection's archived days (manifest written = verified) and the
    manifests themselves."""
    manifests = files.manifests(collection)
    paths = [p for p in (files.data_path(m) for m in manifests) if p is not None]
    return paths, manifests


def open_views(
    con: duckdb.DuckDBPyConnection,
    files: ArchiveFiles,
    sources: Mapping[str, Source],
    export_dir: Path | None,
) -> dict[str, ViewSet]:
    """Create every collection view, `rejected` and `archive_manifests`; what each one reads."""
    local = isinstance(files.fs, pafs.LocalFileSystem)
    views: dict[str, ViewSet] = {}
    manifest_rows: list[dict[str, Any]] = []
    for collection, members in sources_by_collection(sources).items():
        paths, manifests = archived_files(files, collection)
        manifest_rows += [asdict(m) for m in manifests]
        exported = exported_files(export_dir, collection) if export_dir else []
        remote = None if local else (files.fs, paths, files.path(collection))
        create_view(
            con,
            collection,
            archive_schema(members),
            (paths if local else []) + exported,
            remote,
        )
        views[collection] = ViewSet(archived=paths, exported=exported)
    rejected = []
    if export_dir is not None and (export_dir / Collections.REJECTED / DATA_FILE).exists():
        rejected = [str(export_dir / Collections.REJECTED / DATA_FILE)]
    reject_schema = schema_for(REJECT_KINDS, Collections.REJECTED)
    con.register("_rejected_empty", reject_schema.remove_metadata().empty_table())
    union = 'SELECT * FROM "_rejected_empty"'
    if rejected:
        union += f" UNION ALL BY NAME SELECT * FROM read_parquet({_sql_text(rejected[0])})"
    con.execute(f"CREATE OR REPLACE VIEW {Collections.REJECTED} AS {union}")
    views[Collections.REJECTED] = ViewSet(exported=rejected)
    con.register("_manifests", _manifest_table(manifest_rows))
    con.execute(f"CREATE OR REPLACE VIEW {MANIFESTS_VIEW} AS SELECT * FROM _manifests")
    return views


def _manifest_table(rows: list[dict[str, Any]]) -> pa.Table:
    columns = {
        "collection": pa.string(),
        "source": pa.string(),
        "date": pa.string(),
        "rows": pa.int64(),
        "key_checksum": pa.string(),
        "file": pa.string(),
        "file_bytes": pa.int64(),
        "bson_bytes": pa.int64(),
        "run_id": pa.string(),
        "written_at": pa.string(),
        "verified_at": pa.string(),
        "pruned_at": pa.string(),
    }
    schema = pa.schema(list(columns.items()))
    picked = [{k: row.get(k) for k in columns} for row in rows]
    return pa.Table.from_pylist(picked, schema=schema)


# ---- results -----------------------------------------------------------------------------------


def json_value(value: Any) -> Any:
    """A query result value as JSON: times as ISO-8601 UTC with milliseconds and Z (what mongosh
    prints for a Date), whole decimals as ints."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        moment = value.astimezone(UTC)
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_value(v) for v in value]
    return value


def rows_of(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """The last executed statement's rows as JSON objects ([] for one that returns none)."""
    if con.description is None:
        return []
    return [json_value(row) for row in con.to_arrow_table().to_pylist()]


def statements_complete(text: str) -> bool:
    """Whether a prompt's buffer ends a statement: its last non-blank character is a `;` outside
    quotes and comments."""
    quote: str | None = None
    last = ""
    i = 0
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif text.startswith("--", i):
            end = text.find("\n", i)
            i = len(text) if end < 0 else end
            continue
        if not ch.isspace():
            last = ch if quote is None else ""
        i += 1
    return quote is None and last == ";"


# ---- the session -------------------------------------------------------------------------------


def connect(
    settings: Settings,
    *,
    export: str = "fresh",
    since: date | None = None,
    env: Mapping[str, str] | None = None,
    sources: Mapping[str, Source] | None = None,
) -> tuple[duckdb.DuckDBPyConnection, dict[str, ViewSet]]:
    """An in-memory DuckDB session in UTC with the views and variables set up. `export`: fresh
    (export MongoDB's unarchived days now), reuse (the last export as it is) or none."""
    if export not in {"fresh", "reuse", "none"}:
        raise ShellError(f"export={export}: expected fresh, reuse or none")
    sources = sources if sources is not None else load_sources()
    files = ArchiveFiles(settings.archive_root)
    export_dir: Path | None = settings.hot_export_dir
    if export == "fresh":
        from headwater.clients import mongo_client

        client = mongo_client(settings, appname="headwater-duckdb")
        try:
            written = export_hot(
                client[settings.mongo.db],
                files,
                sources,
                settings.hot_export_dir,
                since=since,
                batch=settings.archive.batch_docs,
            )
        finally:
            client.close()
        log.info("hot export rows=%s rejected=%d", written["collections"], written["rejected"])
    elif export == "none":
        export_dir = None
    statements = variable_statements(env if env is not None else os.environ)
    con = duckdb.connect(":memory:")
    con.execute("SET TimeZone = 'UTC'")
    for statement in statements:
        con.execute(statement)
    views = open_views(con, files, sources, export_dir)
    return con, views


def banner(views: Mapping[str, ViewSet]) -> str:
    lines = ["views (archived files + hot export files):"]
    for name, view in views.items():
        lines.append(f"  {name:<16} {len(view.archived):>5} archived {len(view.exported):>5} hot")
    lines.append(f"  {MANIFESTS_VIEW:<16} the archived days")
    lines.append("variables: getvariable('from'|'until'|'window'|'user_id'|'device_prefix'|")
    lines.append("           'topic'|'limit'); end a statement with ;  .quit or Ctrl-D leaves")
    return "\n".join(lines)


def repl(con: duckdb.DuckDBPyConnection, lines: Iterable[str], out: Any) -> None:
    """Read statements until `;`, print each result as a table; an error is printed and the
    prompt goes on."""
    buffer = ""
    for line in lines:
        if not buffer and line.strip() in {".quit", ".exit", "\\q"}:
            return
        if not buffer and line.strip() == ".tables":
            line = "SHOW TABLES;"
        buffer += line + "\n"
        if not statements_complete(buffer):
            continue
        text, buffer = buffer, ""
        try:
            relation = con.sql(text)
            if relation is not None:
                print(relation, file=out)
        except duckdb.Error as exc:
            print(f"error: {exc}", file=out)


def _prompt_lines() -> Iterable[str]:
    try:
        import readline  # noqa: F401  (line editing and history for input())
    except ImportError:
        pass
    prompt = "duckdb> "
    while True:
        try:
            yield input(prompt)
        except EOFError:
            print()
            return


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m db.duckdb_shell",
        description="DuckDB over the Parquet archive and a fresh export of the hot days.",
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--reuse-export", action="store_true", help="keep the last hot export")
    group.add_argument("--no-export", action="store_true", help="the archive only")
    parser.add_argument("--since", type=date.fromisoformat, help="export hot days from YYYY-MM-DD")
    run = parser.add_mutually_exclusive_group()
    run.add_argument("-c", "--command", help="run this SQL, print its rows as JSON")
    run.add_argument("-f", "--file", type=Path, help="run this SQL file, print its rows as JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    export = "none" if args.no_export else "reuse" if args.reuse_export else "fresh"
    try:
        con, views = connect(get_settings(), export=export, since=args.since)
    except ShellError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        if args.command or args.file:
            text = args.command if args.command else args.file.read_text()
            try:
                rows = rows_of(con.execute(text))
            except duckdb.Error as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 1
            print(json.dumps(rows, indent=2))
            return 0
        print(banner(views))
        repl(con, _prompt_lines(), sys.stdout)
        return 0
    finally:
        con.close()


if __name__ == "__main__":
    sys.exit(main())
