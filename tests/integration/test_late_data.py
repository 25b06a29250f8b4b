"""Late data on the running stack: a reading that arrives after its window was rolled up makes the
consumer publish a notice, Airflow's AssetWatcher (the Kafka provider's message-queue trigger)
turns it into an asset event, and rollup_readings recomputes that window, and only that one."""

from __future__ import annotations

import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from headwater.clients import mongo_client, producer_config
from headwater.reconcile import count
from headwater.settings import Settings
from headwater.sources import get_source
from producer.kafka_out import produce
from producer.simulator import malformed_kind, reading, readings
from tests.integration.airflow_helpers import trigger, unpaused, wait_run

# A past hour of its own per run, so a reused test stack's earlier data never mixes in.
HOUR = datetime(2023, 1, 1, tzinfo=UTC) + timedelta(hours=random.randrange(24 * 360))
SINCE, UNTIL = HOUR, HOUR + timedelta(minutes=5)
DEVICES = 3
LATE_MINUTE = HOUR + timedelta(minutes=2)
# How long the late reading may take to reach its window's rollup (notice, watcher, scheduler,
# task start on a busy 2-core machine). The issue asks for "within a minute"; the printed figure
# is what was measured.
BOUND_S = 180.0


def _rollups(settings: Settings) -> dict[str, dict[str, Any]]:
    with mongo_client(settings) as client:
        docs = client[settings.mongo.db].readings_rollup.find(
            {"start": {"$gte": SINCE, "$lt": UNTIL}}
        )
        return {d["_id"]: d for d in docs}


def _stored(settings: Settings) -> int:
    with mongo_client(settings) as client:
        query = {"source": "devices", "ts": {"$gte": SINCE, "$lt": UNTIL}}
        return count(client[settings.mongo.db], "readings", query)


def _produce(settings: Settings, records: list[dict[str, Any]]) -> None:
    result = produce(
        records,
        get_source("devices"),
        producer_config(settings),
        since=SINCE,
        until=UNTIL,
        run_id=f"test-late-{uuid.uuid4().hex[:8]}",
    )
    assert result.produced == len(records)


def _wait(condition: Any, timeout_s: float, what: str) -> float:
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout_s, f"not within {timeout_s:.0f} s: {what}"
        time.sleep(1)
    return time.monotonic() - started


def _late_reading() -> dict[str, Any]:
    """A valid reading of a device the window has not seen, 17 s into LATE_MINUTE or later."""
    epoch = int(LATE_MINUTE.timestamp()) + 17
    while True:
        late = reading(DEVICES, epoch)
        if malformed_kind(late["device_id"], late["ts"]) is None:
            return late
        epoch += 1


@pytest.mark.timeout(900)
def test_a_late_reading_recomputes_its_window_rollup_and_no_other(live_stack: Settings) -> None:
    settings = live_stack
    valid = [
        r
        for r in readings(SINCE, UNTIL, DEVICES)
        if malformed_kind(r["device_id"], r["ts"]) is None
    ]
    with unpaused(settings, "rollup_readings"):
        _produce(settings, valid)
        _wait(lambda: _stored(settings) == len(valid), 180, "the window's readings stored")
        # Rolled up by hand, as a user would (a manual run with since/until).
        run = trigger(
            settings, "rollup_readings", {"since": SINCE.isoformat(), "until": UNTIL.isoformat()}
        )
        assert wait_run(settings, "rollup_readings", run) == "success"
        before = _rollups(settings)
        assert sum(d["count"] for d in before.values() if d["window"] == "1m") == len(valid)

        late = _late_reading()
        _produce(settings, [late])
        late_minute = LATE_MINUTE.strftime("%Y-%m-%dT%H:%M:00Z")
        late_id = f"{late['device_id']}|{late['sensor']}|1m|{late_minute}"
        took = _wait(lambda: late_id in _rollups(settings), BOUND_S, "the late reading rolled up")
        print(f"\nlate reading -> its window's rollup recomputed in {took:.1f} s")
    after = _rollups(settings)

    minute_end = LATE_MINUTE + timedelta(minutes=1)
    changed = {i: d for i, d in after.items() if before.get(i) != d}
    # Only the late minute changed: its new device's 1 m window and the 10 s window it falls in.
    assert {(d["window"], d["device_id"]) for d in changed.values()} == {
        ("1m", late["device_id"]),
        ("10s", late["device_id"]),
    }
    assert all(LATE_MINUTE <= d["start"] < minute_end for d in changed.values())
    assert after[late_id]["count"] == 1
    # Every rollup that was there is there, unchanged (none outside the minute was rewritten
    # differently; none inside it lost or changed).
    assert {i: after[i] for i in before} == before
