"""The store bench's data: the pipeline's own documents, spread like the devices source."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest

from bench.store_workload import (
    HOUR,
    SINCE,
    DataSpan,
    analysis_hour,
    batch_documents,
    batch_minutes,
    consumer_plans,
    minimum_readings,
    recent_since,
    store_batches,
)
from bench.workload import interleave, user_event
from consumer.pipeline import PipelineContext, sources_by_topic
from db.schema import current_schema
from headwater.contracts import Collections
from headwater.sources import load_sources
from tests.unit.test_consumer_schema import violations

SCHEMA = current_schema()

DEVICES = 8
SOURCES = sources_by_topic(load_sources().values())
CTX = PipelineContext(
    topic_map={"devices": "devices", "user-events": "user-events"},
    sources=SOURCES,
)


def batches(span: DataSpan) -> list:
    return list(store_batches(span, SOURCES, user_event, interleave))


def documents(span: DataSpan) -> dict[str, list[dict]]:
    merged: dict[str, list[dict]] = {}
    for batch in batches(span):
        for collection, docs in batch_documents(batch, CTX).items():
            merged.setdefault(collection, []).extend(docs)
    return merged


def test_a_day_of_eight_devices_is_the_devices_sources_690_thousand_readings():
    span = DataSpan(SINCE, 8 * 86_400, DEVICES)
    assert span.seconds == 86_400
    assert span.until - span.since == timedelta(days=1)


def test_every_reading_is_one_per_device_per_second_and_exactly_n_are_made():
    span = DataSpan(SINCE, 3 * 3600 * DEVICES + 5, DEVICES)
    made = batches(span)
    assert sum(b.readings for b in made) == span.readings
    readings = documents(span)[Collections.READINGS]
    per_device = Counter(d["device_id"] for d in readings)
    assert len(per_device) == DEVICES
    # ~1% of the simulator's readings are malformed and land in `rejected` instead.
    assert min(per_device.values()) > 0.97 * span.seconds
    assert len({(d["device_id"], d["ts"]) for d in readings}) == len(readings)
    assert min(d["ts"] for d in readings) == SINCE
    assert max(d["ts"] for d in readings) < span.until


def test_stored_documents_have_the_pipelines_shape_and_pass_the_validators():
    stored = documents(DataSpan(SINCE, minimum_readings(DEVICES), DEVICES))
    assert set(stored) == {
        Collections.READINGS,
        Collections.USER_EVENTS,
        Collections.REJECTED,
        Collections.READINGS_ROLLUP,
    }
    reading = stored[Collections.READINGS][0]
    assert set(reading) == {
        "_id",
        "device_id",
        "device_type",
        "sensor",
        "value",
        "unit",
        "ts",
        "source",
        "ingest",
    }
    assert reading["_id"] == f"{reading['device_id']}|{reading['ts']:%Y-%m-%dT%H:%M:%SZ}"
    assert reading["source"] == "devices" and reading["ingest"]["run_id"] == "bench-store"
    for collection, docs in stored.items():
        schema = SCHEMA.validators[collection]["$jsonSchema"]
        for doc in docs[:500]:
            assert violations(schema, doc) == [], (collection, doc["_id"])


def test_ingest_times_fall_after_their_data_and_inside_the_span_plus_the_lag():
    span = DataSpan(SINCE, minimum_readings(DEVICES), DEVICES)
    stored = documents(span)
    for doc in stored[Collections.READINGS]:
        assert doc["ts"] < doc["ingest"]["ingested_at"] <= span.until + timedelta(minutes=10)
    for doc in stored[Collections.REJECTED]:
        assert span.since < doc["rejected_at"] <= span.until + timedelta(minutes=10)


def test_user_events_are_a_hundredth_of_the_readings_spread_evenly_over_the_span():
    span = DataSpan(SINCE, 20_000, DEVICES)
    assert span.events == 200
    times = [span.event_time(i) for i in range(span.events)]
    assert times == sorted(times) and times[0] == SINCE and times[-1] < span.until
    gaps = {b - a for a, b in pairwise(times)}
    assert max(gaps) - min(gaps) <= timedelta(microseconds=1)


def test_consecutive_windows_share_out_every_event_exactly_once():
    span = DataSpan(SINCE, 20_000, DEVICES)
    edges = [SINCE + timedelta(seconds=s) for s in range(-60, span.seconds + 120, 37)]
    seen = [i for a, b in pairwise(edges) for i in span.events_between(a, b)]
    assert seen == list(range(span.events))
    for a, b in pairwise(edges):
        assert all(a <= span.event_time(i) < b for i in span.events_between(a, b))


def test_batches_are_whole_minutes_of_about_a_thousand_readings():
    assert batch_minutes(8) == 2
    assert batch_minutes(100) == 1
    span = DataSpan(SINCE, 10_000, DEVICES)
    for batch in batches(span):
        assert (batch.until - batch.since) == timedelta(minutes=2)
        assert batch.since.second == 0 and batch.now > batch.until


def test_rollups_of_a_batch_are_its_complete_windows():
    span = DataSpan(SINCE, 2 * 60 * DEVICES, DEVICES)
    stored = documents(span)
    rollups = stored[Collections.READINGS_ROLLUP]
    minute = [r for r in rollups if r["window"] == "1m"]
    assert len(minute) == 2 * DEVICES
    assert sum(r["count"] for r in minute) == len(stored[Collections.READINGS])
    assert sum(r["count"] for r in rollups if r["window"] == "10s") == sum(
        r["count"] for r in minute
    )


def test_the_analysis_hour_is_a_whole_hour_in_the_middle_of_the_data():
    span = DataSpan(SINCE, 5_000_000, DEVICES)
    start, end = analysis_hour(span)
    assert end - start == HOUR and start.minute == start.second == 0
    assert span.since <= start and end <= span.until
    middle = span.since + (span.until - span.since) / 2
    assert start <= middle < end + HOUR


def test_the_analysis_hour_of_a_barely_long_enough_span_is_inside_it():
    span = DataSpan(datetime(2026, 1, 1, 0, 30, tzinfo=UTC), 2 * 3600 * DEVICES, DEVICES)
    start, end = analysis_hour(span)
    assert (start, end) == (
        datetime(2026, 1, 1, 1, tzinfo=UTC),
        datetime(2026, 1, 1, 2, tzinfo=UTC),
    )
    assert analysis_hour(DataSpan(SINCE, minimum_readings(DEVICES), DEVICES)) == (
        SINCE,
        SINCE + HOUR,
    )


def test_a_span_without_a_whole_hour_is_refused_with_the_minimum():
    with pytest.raises(ValueError, match=str(minimum_readings(DEVICES))):
        analysis_hour(DataSpan(SINCE, minimum_readings(DEVICES) - DEVICES, DEVICES))


def test_the_indexed_find_asks_for_the_last_hour():
    span = DataSpan(SINCE, 5_000_000, DEVICES)
    assert recent_since(span) == span.until - HOUR
    assert recent_since(DataSpan(SINCE, 80, DEVICES)) == SINCE


def test_a_naive_or_empty_span_is_refused():
    with pytest.raises(ValueError):
        DataSpan(datetime(2026, 1, 1), 10, DEVICES)
    with pytest.raises(ValueError):
        DataSpan(SINCE, 0, DEVICES)


def test_consumer_plans_hold_the_consumers_batch_size_and_every_message():
    span = DataSpan(SINCE, 5_000, DEVICES)
    made = batches(span)
    plans = consumer_plans(made, CTX, 2000)
    assert [p.messages for p in plans] == [2000, 2000, 1050]
    assert sum(p.messages for p in plans) == sum(len(b.messages) for b in made)
    with pytest.raises(ValueError):
        consumer_plans(made, CTX, 0)
