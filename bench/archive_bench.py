"""Archive throughput and size: a day of readings to Parquet, against reading it and exporting JSON.

    python bench/run.py --only archive [--archive-docs 200000] [--archive-trials 5]

Seeds one UTC day of the simulator's readings (stored exactly as the consumer stores them: the
devices contract's body, `source`, `ingest`) into a scratch database on the running stack's
MongoDB, with the pipeline's indexes (db.bootstrap). Then `--archive-trials` interleaved rounds of
three arms over that day, the order rotating each round:

- archive: headwater.archive_store.archive_day, what the DAG runs (read the day, convert, write
  Parquet zstd atomically, read it back, check its keys against a second, key-only read);
- read (the ceiling): the same find, every document decoded by pymongo, nothing else;
- json (the peer): what `mongoexport` gives users, one relaxed Extended JSON line per document
  written to a file (bson.json_util, as mongoexport's format).

Figures: documents/s of each arm (median, min-max), archive ÷ read per round (the share of the
ceiling the archive keeps), archive ÷ json, this process's CPU seconds per arm, and the sizes:
Parquet bytes ÷ BSON bytes of the same documents (what MongoDB stores before compression and
indexes) and ÷ the JSON export, and what a 690,000-reading day (the devices source at its
default rate) comes to. The scratch database and files are removed at the end.
"""

from __future__ import annotations

import logging
import resource
import shutil
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from bson import json_util
from measures import paired_ratios, rate, spread_summary

from consumer.documents import IngestMeta, to_document
from db.bootstrap import bootstrap as bootstrap_db
from headwater.archive_store import ArchiveFiles, archive_day, day_filter
from headwater.clients import mongo_client
from headwater.settings import REPO_ROOT, Settings
from headwater.sources import load_sources
from producer.simulator import malformed_kind, readings

log = logging.getLogger("bench.archive")

DAY = date(2025, 6, 1)
DEVICES_PER_DAY = 690_000
ARMS = ("archive", "read", "json")


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def seed_day(db: Any, docs: int) -> int:
    """`docs` valid readings of DAY (the simulator's, as many devices as that needs), stored as
    the consumer stores them; returns how many were inserted."""
    devices = load_sources(REPO_ROOT / "sources.yaml")["devices"]
    start = datetime(DAY.year, DAY.month, DAY.day, tzinfo=UTC)
    n_devices = max(1, -(-docs // 86_400))
    batch: list[dict[str, Any]] = []
    inserted = 0
    for i, record in enumerate(readings(start, start + timedelta(days=1), n_devices)):
        if inserted + len(batch) >= docs:
            break
        if malformed_kind(record["device_id"], record["ts"]) is not None:
            continue
        model = devices.validate(1, record)
        body = devices.to_body(1, model)
        meta = IngestMeta("devices", i % 6, i, body["ts"] + timedelta(seconds=1), "bench", 1)
        batch.append(
            {"_id": f"{record['device_id']}|{record['ts']}", **to_document(body, "devices", meta)}
        )
        if len(batch) == 5_000:
            db.readings.insert_many(batch, ordered=False)
            inserted += len(batch)
            batch = []
    if batch:
        db.readings.insert_many(batch, ordered=False)
        inserted += len(batch)
    return inserted


def measure(settings: Settings, *, docs: int = 200_000, trials: int = 5) -> dict[str, Any]:
    declared = load_sources(REPO_ROOT / "sources.yaml")
    sources = [declared["devices"], declared["machine-metrics"]]
    devices = sources[0]
    name = f"bench_archive_{uuid.uuid4().hex[:8]}"
    workdir = Path(tempfile.mkdtemp(prefix="hw-archive-bench-"))
    client = mongo_client(settings, appname="bench-archive")
    try:
        bootstrap_db(client[name])
        db = client[name]
        seeded_at = time.perf_counter()
        count = seed_day(db, docs)
        log.info(
            "archive bench seeded docs=%d seconds=%.1f", count, time.perf_counter() - seeded_at
        )
        files = ArchiveFiles(str(workdir / "archive"))
        rates: dict[str, list[float]] = {arm: [] for arm in ARMS}
        cpu: dict[str, list[float]] = {arm: [] for arm in ARMS}
        sizes: dict[str, int] = {}
        for trial in range(trials):
            order = ARMS[trial % 3 :] + ARMS[: trial % 3]
            for arm in order:
                cpu0, t0 = _cpu_s(), time.perf_counter()
                if arm == "archive":
                    result = archive_day(db, files, sources, devices, DAY, run_id=f"bench-{trial}")
                    n = result.rows
                    sizes["parquet_bytes"], sizes["bson_bytes"] = (
                        result.file_bytes,
                        result.bson_bytes,
                    )
                elif arm == "read":
                    n = sum(
                        1 for _ in db.readings.find(day_filter(devices, DAY), batch_size=20_000)
                    )
                else:
                    out = workdir / "export.json"
                    n = 0
                    with out.open("w") as handle:
                        for doc in db.readings.find(day_filter(devices, DAY), batch_size=20_000):
                            handle.write(
                                json_util.dumps(doc, json_options=json_util.RELAXED_JSON_OPTIONS)
                                + "\n"
                            )
                            n += 1
                    sizes["json_bytes"] = out.stat().st_size
                seconds = time.perf_counter() - t0
                if n != count:
                    raise RuntimeError(f"{arm} saw {n} documents, {count} were seeded")
                rates[arm].append(rate(n, seconds))
                cpu[arm].append(_cpu_s() - cpu0)
                log.info(
                    "archive bench trial=%d arm=%s docs_per_s=%.0f seconds=%.2f cpu_s=%.2f",
                    trial + 1,
                    arm,
                    rates[arm][-1],
                    seconds,
                    cpu[arm][-1],
                )
        per_doc = sizes["parquet_bytes"] / count
        return {
            "docs": count,
            "trials": trials,
            "docs_per_s": {arm: spread_summary(rates[arm], 0) for arm in ARMS},
            "cpu_s": {arm: spread_summary(cpu[arm], 2) for arm in ARMS},
            "archive_vs_read": paired_ratios(rates["archive"], rates["read"]),
            "archive_vs_json": paired_ratios(rates["archive"], rates["json"]),
            **sizes,
            "parquet_per_bson": round(sizes["parquet_bytes"] / sizes["bson_bytes"], 4),
            "parquet_per_json": round(sizes["parquet_bytes"] / sizes["json_bytes"], 4),
            "parquet_bytes_per_doc": round(per_doc, 2),
            "bson_bytes_per_doc": round(sizes["bson_bytes"] / count, 1),
            "devices_day_parquet_mib": round(per_doc * DEVICES_PER_DAY / 2**20, 1),
            "devices_day_bson_mib": round(sizes["bson_bytes"] / count * DEVICES_PER_DAY / 2**20, 1),
        }
    finally:
        client.drop_database(name)
        client.close()
        shutil.rmtree(workdir, ignore_errors=True)
