"""db/duckdb_shell.py: variables, views over archive-layout files (local and remote), JSON rows,
and the SQL files in db/sql running against them. DuckDB is an in-process library: no services."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from db.duckdb_shell import (
    SQL_DIR,
    ShellError,
    json_value,
    open_views,
    repl,
    rows_of,
    statements_complete,
    variable_statements,
)
from headwater.archive import (
    DATA_FILE,
    REJECT_KINDS,
    Manifest,
    archive_schema,
    document_row,
    key_checksum,
    partition_dir,
    schema_for,
    schema_kinds,
)
from headwater.archive_store import ArchiveFiles, sources_by_collection
from headwater.settings import REPO_ROOT
from headwater.sources import load_sources
from tests.unit.test_archive import _manifest

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def sources():
    return load_sources(REPO_ROOT / "sources.yaml")


def reading(device: str, value: float, minutes: float, sensor: str = "temperature") -> dict:
    ts = T0 + timedelta(minutes=minutes)
    return {
        "_id": f"{device}|{ts.isoformat()}",
        "device_id": device,
        "device_type": device.split("-")[0],
        "sensor": sensor,
        "value": value,
        "unit": "C",
        "ts": ts,
        "source": "devices",
    }


def write_day(root: Path, collection: str, schema: pa.Schema, source: str, day: date, docs: list):
    """A day's file in the archive layout (what archive_day writes), without its manifest."""
    kinds = schema_kinds(schema)
    table = pa.Table.from_pylist([document_row(d, kinds) for d in docs], schema=schema)
    folder = root / partition_dir(collection, source, day)
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, folder / DATA_FILE)
    return folder / DATA_FILE


def manifest_for(collection: str, source: str, day: date, docs: list) -> Manifest:
    """A verified manifest naming the day's data file (the fields that matter to the views)."""
    return _manifest(
        collection=collection,
        source=source,
        date=day.isoformat(),
        rows=len(docs),
        key_checksum=key_checksum(d["_id"] for d in docs),
        file=DATA_FILE,
    )


def session(env: dict[str, str] | None = None) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    for statement in variable_statements(env or {}):
        con.execute(statement)
    return con


def test_variables_are_typed_and_null_when_unset() -> None:
    con = session({"FROM": "2026-11-23T09:00:00Z", "USER_ID": "o'brien", "LIMIT": "3", "TOPIC": ""})
    got = con.execute(
        "SELECT strftime(getvariable('from'), '%Y-%m-%dT%H:%M:%S%z'), "
        "getvariable('until') IS NULL, getvariable('user_id'), "
        "getvariable('limit') + 1, getvariable('topic') IS NULL"
    ).fetchall()[0]
    assert got[0] == "2026-11-23T09:00:00+00"
    assert got[1:] == (True, "o'brien", 4, True)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"FROM": "yesterday"}, "FROM=yesterday is not an ISO-8601 time"),
        ({"LIMIT": "-1"}, "LIMIT=-1 is not a whole number"),
    ],
)
def test_a_bad_variable_names_itself(env: dict[str, str], message: str) -> None:
    with pytest.raises(ShellError, match=message):
        variable_statements(env)


def test_json_values_print_like_mongosh() -> None:
    moment = datetime(2026, 11, 23, 9, 7, 1, 250000, tzinfo=UTC)
    assert json_value(moment) == "2026-11-23T09:07:01.250Z"
    assert json_value({"n": Decimal("12"), "x": [Decimal("1.5"), date(2026, 1, 2)]}) == {
        "n": 12,
        "x": [1.5, "2026-01-02"],
    }


def test_statements_end_at_a_semicolon_outside_quotes_and_comments() -> None:
    assert statements_complete("SELECT 1;")
    assert statements_complete("SELECT 1;  \n")
    assert not statements_complete("SELECT ';'")
    assert not statements_complete("SELECT 1 -- done;")
    assert statements_complete("SELECT 1 -- done;\n;")
    assert not statements_complete("SELECT 1")


def test_views_union_archived_and_hot_days_with_partitions(tmp_path: Path, sources) -> None:
    members = sources_by_collection(sources)["readings"]
    schema = archive_schema(members)
    archived = [reading("thermostat-000", 20.0, 0), reading("thermostat-000", 22.0, 1)]
    hot = [reading("thermostat-001", 30.0, 24 * 60 + 5)]
    root, export = tmp_path / "archive", tmp_path / "export"
    write_day(root, "readings", schema, "devices", T0.date(), archived)
    files = ArchiveFiles(str(root))
    files.write_manifest(manifest_for("readings", "devices", T0.date(), archived))
    # A day written but never verified (no manifest) is not part of the archive.
    write_day(root, "readings", schema, "devices", date(2026, 11, 20), [reading("x-1", 1.0, 0)])
    write_day(export, "readings", schema, "devices", date(2026, 11, 24), hot)

    con = session()
    views = open_views(con, files, sources, export)
    assert len(views["readings"].archived) == 1 and len(views["readings"].exported) == 1
    rows = con.execute("SELECT _id, value, source, date FROM readings ORDER BY _id").fetchall()
    assert rows == [
        (archived[0]["_id"], 20.0, "devices", T0.date()),
        (archived[1]["_id"], 22.0, "devices", T0.date()),
        (hot[0]["_id"], 30.0, "devices", date(2026, 11, 24)),
    ]
    assert con.execute("SELECT count(*) FROM user_events").fetchone() == (0,)
    assert con.execute("SELECT count(*) FROM rejected").fetchone() == (0,)
    assert con.execute("SELECT collection, rows FROM archive_manifests").fetchall() == [
        ("readings", 2)
    ]


def test_views_read_a_remote_archive_through_its_filesystem(sources) -> None:
    """Any pyarrow/fsspec root (here fsspec's memory://) is read through the same filesystem."""
    members = sources_by_collection(sources)["readings"]
    schema = archive_schema(members)
    files = ArchiveFiles(f"memory://duckdb-{id(schema)}/archive")
    docs = [reading("barometer-001", 1001.0, 3, sensor="pressure")]
    kinds = schema_kinds(schema)
    table = pa.Table.from_pylist([document_row(d, kinds) for d in docs], schema=schema)
    sink = io.BytesIO()
    pq.write_table(table, sink)
    day_dir = files.day_dir("readings", "devices", T0.date())
    files.write_atomic(f"{day_dir}/{DATA_FILE}", sink.getvalue())
    files.write_manifest(manifest_for("readings", "devices", T0.date(), docs))
    con = session()
    open_views(con, files, sources, None)
    assert con.execute("SELECT sensor, value, source, date FROM readings").fetchall() == [
        ("pressure", 1001.0, "devices", T0.date())
    ]


def run_sql(con: duckdb.DuckDBPyConnection, name: str) -> list[dict]:
    con.execute((SQL_DIR / f"{name}.sql").read_text())
    return rows_of(con)


def test_sql_files_over_the_views(tmp_path: Path, sources) -> None:
    members = sources_by_collection(sources)["readings"]
    schema = archive_schema(members)
    docs = [
        reading("thermostat-000", 20.0, 0),
        reading("thermostat-000", 22.0, 0.5),
        reading("thermostat-001", 26.0, 1),
        reading("thermostat-000", 99.0, 90),  # after UNTIL
    ]
    write_day(tmp_path / "export", "readings", schema, "devices", T0.date(), docs)
    rejects = schema_for(REJECT_KINDS, "rejected")
    (tmp_path / "export" / "rejected").mkdir()
    pq.write_table(
        pa.Table.from_pylist(
            [
                {"_id": f"t|0|{n}", "stage": "filter", "reason": r, "topic": "t",
                 "rejected_at": T0}
                for n, r in enumerate(["a", "b", "b"])
            ],
            schema=rejects,
        ),
        tmp_path / "export" / "rejected" / DATA_FILE,
    )  # fmt: skip
    con = session({"FROM": "2026-11-23T09:00:00Z", "UNTIL": "2026-11-23T10:00:00Z"})
    open_views(con, ArchiveFiles(str(tmp_path / "archive")), sources, tmp_path / "export")

    assert run_sql(con, "device_type_stats") == [
        {"device_type": "thermostat", "sensor": "temperature", "unit": "C", "devices": 2,
         "count": 3, "avg": pytest.approx(68.0 / 3), "min": 20.0, "max": 26.0},
    ]  # fmt: skip
    assert run_sql(con, "sensor_stats") == [
        {"sensor": "temperature", "devices": 2, "windows": 2, "count": 3,
         "avg": pytest.approx(68.0 / 3), "min": 20.0, "max": 26.0},
    ]  # fmt: skip
    latest = run_sql(con, "latest_reading_per_device")
    assert [(r["device_id"], r["value"], r["ts"], r["readings"]) for r in latest] == [
        ("thermostat-000", 99.0, "2026-11-23T10:30:00.000Z", 3),
        ("thermostat-001", 26.0, "2026-11-23T09:01:00.000Z", 1),
    ]
    assert run_sql(con, "reject_reasons") == [
        {"stage": "filter", "reason": "b", "count": 2, "total": 3},
        {"stage": "filter", "reason": "a", "count": 1, "total": 3},
    ]
    assert run_sql(con, "events_per_user_hour") == []


def test_the_prompt_prints_results_and_errors_and_goes_on() -> None:
    con = session()
    out = io.StringIO()
    repl(con, ["SELECT 41 + 1", "  AS answer;", "SELECT nope;", "SELECT 'still here' AS s;"], out)
    text = out.getvalue()
    assert "answer" in text and "42" in text
    assert "error:" in text and "nope" in text
    assert "still here" in text


def test_every_mongosh_analysis_has_a_sql_twin() -> None:
    queries = {p.stem for p in (REPO_ROOT / "db" / "queries").glob("*.js")}
    assert len(queries) == 5
    assert queries == {p.stem for p in SQL_DIR.glob("*.sql")}
