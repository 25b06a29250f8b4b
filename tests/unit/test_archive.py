"""headwater.archive (schema, rows, keys, days, retention, manifest) and the archive's files."""

from __future__ import annotations

import hashlib
import io
from datetime import UTC, date, datetime

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyarrow.fs import FileSelector

from headwater.archive import (
    ArchiveError,
    Manifest,
    archive_schema,
    column_kinds,
    day_closed,
    days_of,
    document_row,
    key_checksum,
    parse_retention,
    partition_dir,
    prune_cutoff,
    retention_days,
    row_document,
    rows_to_batch,
    schema_kinds,
)
from headwater.archive_store import ArchiveFiles, sources_by_collection
from headwater.settings import REPO_ROOT
from headwater.sources import load_sources, parse_sources, record_key

T0 = datetime(2026, 11, 23, 9, 30, 15, 123000, tzinfo=UTC)


def declared_sources():
    return load_sources(REPO_ROOT / "sources.yaml")


def _readings():
    return sources_by_collection(declared_sources())["readings"]


def test_readings_schema_merges_both_sources_and_maps_declared_types() -> None:
    schema = archive_schema(_readings())
    assert schema.names == [
        "_id",
        "device_id",
        "device_type",
        "sensor",
        "value",
        "unit",
        "ts",
        "ingest",
        "_extra",
    ]
    assert schema.field("value").type == pa.float64()
    assert schema.field("ts").type == pa.timestamp("ms", tz="UTC")
    assert schema.field("_id").nullable is False
    assert schema_kinds(schema)["ts"] == "timestamp"


def test_user_events_objects_are_json_text_and_store_as_renames() -> None:
    grouped = sources_by_collection(declared_sources())
    events = archive_schema(grouped["user_events"])
    assert events.field("properties").type == pa.string()
    orders = archive_schema(grouped["work_orders"])
    assert "ts" in orders.names and "time" not in orders.names


def _source(fields_v1: dict, fields_v2: dict) -> dict:
    return {
        "base_url": "http://x",
        "route": "/r",
        "key_fields": ["k"],
        "event_time_field": "t",
        "topic": "t1",
        "collection": "things",
        "schema_version": 2,
        "contracts": {1: {"fields": fields_v1}, 2: {"fields": fields_v2}},
    }


def test_kinds_widen_across_versions() -> None:
    sources = parse_sources(
        {
            "sources": {
                "s": _source(
                    {"k": "string", "t": "timestamp", "n": "integer", "w": "string"},
                    {"k": "string", "t": "timestamp", "n": "number", "w": "integer"},
                )
            }
        }
    )
    kinds = column_kinds(list(sources.values()))
    assert kinds["n"] == "number"
    assert kinds["w"] == "object"


def _doc(**over):
    doc = {
        "_id": "dev-1|2026-11-23T09:30:15.123Z",
        "device_id": "dev-1",
        "device_type": None,
        "sensor": "temperature",
        "value": 21,
        "unit": "C",
        "ts": T0,
        "source": "devices",
        "ingest": {
            "topic": "devices",
            "partition": 1,
            "offset": 42,
            "ingested_at": T0,
            "run_id": "r1",
            "schema_version": 1,
        },
    }
    doc.update(over)
    return doc


def test_document_row_round_trips_after_type_mapping() -> None:
    schema = archive_schema(_readings())
    kinds = schema_kinds(schema)
    doc = _doc()
    row = document_row(doc, kinds)
    assert row["value"] == 21.0 and isinstance(row["value"], float)
    assert row["_extra"] is None
    batch = rows_to_batch([row], schema)
    back = row_document(batch.to_pylist()[0], "devices", kinds)
    assert back == {**doc, "value": 21.0}


def test_fields_outside_the_shape_and_misfits_go_to_extra() -> None:
    kinds = schema_kinds(archive_schema(_readings()))
    doc = _doc(value="warm", colour="red")
    doc["ingest"]["replayed_at"] = T0
    row = document_row(doc, kinds)
    assert row["value"] is None
    back = row_document(row, "devices", kinds)
    assert back["value"] == "warm"
    assert back["colour"] == "red"
    assert back["ingest"]["replayed_at"] == T0
    assert back["ingest"]["offset"] == 42


def test_key_checksum_is_sort_then_sha256_of_lines() -> None:
    keys = ["b|2", "a|1", "c|3"]
    expected = hashlib.sha256(b"a|1\nb|2\nc|3\n").hexdigest()
    assert key_checksum(keys) == expected
    assert key_checksum(reversed(keys)) == expected
    assert key_checksum(["a|1", "b|2"]) != expected


def test_days_of_whole_days_only() -> None:
    assert days_of(datetime(2026, 11, 20, tzinfo=UTC), datetime(2026, 11, 23, tzinfo=UTC)) == [
        date(2026, 11, 20),
        date(2026, 11, 21),
        date(2026, 11, 22),
    ]
    with pytest.raises(ArchiveError, match="whole UTC days"):
        days_of(datetime(2026, 11, 20, 1, tzinfo=UTC), datetime(2026, 11, 21, tzinfo=UTC))


def test_day_closed_waits_for_the_grace() -> None:
    day = date(2026, 11, 22)
    assert not day_closed(day, datetime(2026, 11, 23, 0, 10, tzinfo=UTC), 1800)
    assert day_closed(day, datetime(2026, 11, 23, 0, 30, tzinfo=UTC), 1800)


def test_partition_dir_is_hive_style() -> None:
    assert partition_dir("readings", "devices", date(2026, 11, 2)) == (
        "readings/source=devices/date=2026-11-02"
    )


def test_retention_settings() -> None:
    per = parse_retention("readings=7, user_events=30d,matches=off")
    assert per == {"readings": 7, "user_events": 30, "matches": None}
    assert retention_days("readings", per, "auto", embedded=False) == 7
    assert retention_days("matches", per, "3", embedded=True) is None
    assert retention_days("work_orders", per, "auto", embedded=True) == 7
    assert retention_days("work_orders", per, "auto", embedded=False) is None
    assert retention_days("work_orders", per, "14", embedded=False) == 14
    assert retention_days("work_orders", per, "off", embedded=True) is None
    for bad in ("readings", "readings=0", "readings=soon"):
        with pytest.raises(ValueError, match="readings"):
            parse_retention(bad)


def test_prune_cutoff_keeps_whole_days() -> None:
    assert prune_cutoff(datetime(2026, 12, 2, 22, tzinfo=UTC), 7) == date(2026, 11, 25)


def _manifest(**over) -> Manifest:
    fields = dict(
        collection="readings",
        source="devices",
        date="2026-11-23",
        rows=0,
        key_checksum=key_checksum([]),
        file=None,
        file_sha256=None,
        file_bytes=0,
        bson_bytes=0,
        schema_fingerprint="x",
        run_id="r",
        written_at="2026-11-24T00:30:00Z",
        verified_at="2026-11-24T00:30:01Z",
    )
    fields.update(over)
    return Manifest(**fields)


def test_manifest_round_trip_and_unknown_format() -> None:
    manifest = _manifest(pruned_at="2026-12-01T00:00:00Z", pruned_rows=3)
    assert Manifest.from_json(manifest.to_json()) == manifest
    with pytest.raises(ArchiveError, match="format"):
        Manifest.from_json(manifest.to_json().replace('"format": 1', '"format": 9'))
    with pytest.raises(ArchiveError, match="unreadable"):
        Manifest.from_json("{not json")


@pytest.mark.parametrize("kind", ["local", "fsspec-memory"])
def test_files_write_atomically_list_manifests_and_catch_a_changed_file(tmp_path, kind) -> None:
    root = str(tmp_path / "archive") if kind == "local" else f"memory://{tmp_path.name}/archive"
    files = ArchiveFiles(root)
    schema = archive_schema(_readings())
    kinds = schema_kinds(schema)
    docs = [_doc(_id=f"dev-{i}|x", device_id=f"dev-{i}") for i in range(5)]
    table = pa.Table.from_batches([rows_to_batch([document_row(d, kinds) for d in docs], schema)])
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    data = sink.getvalue()
    day = date(2026, 11, 23)
    folder = files.day_dir("readings", "devices", day)
    files.write_atomic(f"{folder}/data.parquet", data)
    keys = [d["_id"] for d in docs]
    manifest = _manifest(
        rows=5,
        key_checksum=key_checksum(keys),
        file="data.parquet",
        file_sha256=hashlib.sha256(data).hexdigest(),
        file_bytes=len(data),
    )
    files.write_manifest(manifest)
    assert files.manifest("readings", "devices", day) == manifest
    assert files.manifests("readings") == [manifest]
    assert sorted(files.verified_keys(manifest)) == sorted(keys)
    leftovers = [i.base_name for i in files.fs.get_file_info(FileSelector(folder))]
    assert sorted(leftovers) == ["_manifest.json", "data.parquet"]
    # One byte changed: the file no longer matches its manifest.
    corrupted = bytearray(data)
    corrupted[len(corrupted) // 2] ^= 0xFF
    files.write_atomic(f"{folder}/data.parquet", bytes(corrupted))
    with pytest.raises(ArchiveError, match="changed since it was verified"):
        files.verified_keys(manifest)
    files.delete(f"{folder}/data.parquet")
    with pytest.raises(ArchiveError, match="missing"):
        files.verified_keys(manifest)


def test_record_keys_are_the_archive_ids() -> None:
    devices = declared_sources()["devices"]
    key = record_key(devices, {"device_id": "dev-1", "ts": "2026-11-23T09:30:15.123Z"})
    assert key.startswith("dev-1|")
