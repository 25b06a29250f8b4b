"""Late-data notices: window arithmetic, the notice format, the watcher's apply_function, the
consumer's notifying store, and which windows a rollup run recomputes from its asset events."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumer.late_notices import LateNotifier, NotifyingStore, stored_window_starts
from consumer.mongo_store import StoreUnavailable
from consumer.pipeline import WritePlan
from headwater.late_data import (
    coalesce,
    decode_notice,
    encode_notice,
    merge_ranges,
    notice_event,
)
from headwater.rollups import align_outward, windows_to_recompute

T0 = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def test_window_starts_coalesce_into_ranges_of_neighbours() -> None:
    assert coalesce([at(0), at(1), at(5), at(1)]) == [(at(0), at(2)), (at(5), at(6))]
    assert coalesce([]) == []


def test_ranges_merge_when_they_overlap_or_touch_and_empty_ones_vanish() -> None:
    assert merge_ranges([(at(3), at(5)), (at(0), at(2)), (at(2), at(3)), (at(9), at(9))]) == [
        (at(0), at(5))
    ]


def test_a_notice_round_trips_and_anything_else_decodes_to_none() -> None:
    value = encode_notice("readings", [(at(0), at(2))], at(10))
    assert decode_notice(value) == {
        "v": 1,
        "collection": "readings",
        "windows": [["2026-11-30T10:00:00Z", "2026-11-30T10:02:00Z"]],
        "noticed_at": "2026-11-30T10:10:00Z",
    }
    for junk in (None, b"", b"{}", b"[1]", b"\xff", b'{"v":1,"collection":"readings","windows":[]}',
                 b'{"v":1,"collection":"readings","windows":[["x","y"]]}',
                 b'{"v":1,"collection":"readings","windows":[["2026-01-01T00:01:00Z","2026-01-01T00:00:00Z"]]}',
                 b'{"v":2,"collection":"readings","windows":[["2026-01-01T00:00:00Z","2026-01-01T00:01:00Z"]]}'):  # fmt: skip  # noqa: E501
        assert decode_notice(junk) is None, junk


@given(st.binary(max_size=200) | st.text(max_size=200).map(lambda t: t.encode("utf-8", "replace")))
def test_no_bytes_crash_the_decoder(value: bytes) -> None:
    decoded = decode_notice(value)
    assert decoded is None or decoded["windows"]


class _Message:
    def __init__(self, value: bytes | None) -> None:
        self._value = value

    def value(self) -> bytes | None:
        return self._value

    def topic(self) -> str:
        return "headwater-late-readings"

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return 41


def test_the_watchers_apply_function_hands_on_the_notice_and_where_it_was_read() -> None:
    event = notice_event(_Message(encode_notice("readings", [(at(0), at(1))], at(3))))
    assert event is not None
    assert (event["windows"], event["partition"], event["offset"]) == (
        [["2026-11-30T10:00:00Z", "2026-11-30T10:01:00Z"]],
        0,
        41,
    )
    json.dumps(event)  # an asset event's extra must be JSON
    assert notice_event(_Message(b"{}")) is None


def test_windows_of_a_reconciled_ingest_run_are_widened_to_whole_minutes() -> None:
    assert align_outward(at(0.5), at(2.25)) == (at(0), at(3))
    assert align_outward(at(0), at(2)) == (at(0), at(2))
    extra = {"since": at(0.5).isoformat(), "until": at(2.25).isoformat(), "collection": "readings"}
    assert windows_to_recompute([extra]) == [(at(0), at(3))]


def test_a_burst_of_events_recomputes_each_window_once() -> None:
    notice = decode_notice(encode_notice("readings", [(at(5), at(6))], at(9)))
    extras: list[dict[str, Any]] = [
        {"from_trigger": True, "payload": notice},
        {"from_trigger": True, "payload": notice},
        {"since": at(0).isoformat(), "until": at(5).isoformat(), "collection": "readings"},
        {"since": at(20).isoformat(), "until": at(21).isoformat(), "collection": "user_events"},
        {"from_trigger": True, "payload": {**notice, "collection": "user_events"}},  # type: ignore[dict-item]
        {"unrelated": 1},
        {"since": "not a time", "until": at(1).isoformat()},
    ]
    assert windows_to_recompute(extras) == [(at(0), at(6))]


# ---- the consumer's notifying store --------------------------------------------------------


class _Index:
    def __init__(self, rolled_up: set[datetime]) -> None:
        self.rolled_up = rolled_up
        self.asked: list[datetime] = []

    def has_rollup(self, start: datetime) -> bool:
        self.asked.append(start)
        return start in self.rolled_up


class _Sink:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.sent: list[tuple[str, bytes]] = []

    def publish(self, key: str, value: bytes) -> None:
        if self.fail:
            raise RuntimeError("broker down")
        self.sent.append((key, value))


class _Inner:
    def __init__(self, refused: dict[tuple[str, str], str] | None = None) -> None:
        self.refused = refused or {}
        self.writes = 0

    def write(self, plan: WritePlan) -> dict[tuple[str, str], str]:
        self.writes += 1
        return self.refused

    def write_status(self, doc_id: str, document: dict[str, Any]) -> None:
        pass


def _plan(*stamps: datetime, collection: str = "readings") -> WritePlan:
    plan = WritePlan()
    plan.upserts[collection] = {f"d-1|{ts.isoformat()}": {"ts": ts, "value": 1.0} for ts in stamps}
    return plan


def test_only_windows_that_already_have_a_rollup_are_noticed_in_one_message() -> None:
    index, sink = _Index({at(0), at(1), at(7)}), _Sink()
    store = NotifyingStore(_Inner(), LateNotifier(index, sink, now=lambda: at(30)))
    store.write(_plan(at(0.2), at(0.9), at(1.5), at(3), at(7.1)))
    assert sorted(set(index.asked)) == [at(0), at(1), at(3), at(7)]  # each minute asked once
    assert len(sink.sent) == 1
    notice = decode_notice(sink.sent[0][1])
    assert notice is not None and notice["windows"] == [
        ["2026-11-30T10:00:00Z", "2026-11-30T10:02:00Z"],
        ["2026-11-30T10:07:00Z", "2026-11-30T10:08:00Z"],
    ]


def test_nothing_is_published_for_fresh_windows_other_collections_or_refused_documents() -> None:
    sink = _Sink()
    notifier = LateNotifier(_Index({at(0)}), sink)
    NotifyingStore(_Inner(), notifier).write(_plan(at(5)))
    NotifyingStore(_Inner(), notifier).write(_plan(at(0), collection="user_events"))
    refused_plan = _plan(at(0))
    refused = {("readings", next(iter(refused_plan.upserts["readings"]))): "schema"}
    NotifyingStore(_Inner(refused), notifier).write(refused_plan)
    assert sink.sent == []
    assert stored_window_starts(refused_plan, refused) == set()


def test_a_notice_that_cannot_be_delivered_fails_the_write_so_the_batch_is_not_committed() -> None:
    inner = _Inner()
    store = NotifyingStore(inner, LateNotifier(_Index({at(0)}), _Sink(fail=True)))
    with pytest.raises(StoreUnavailable, match="late notice: broker down"):
        store.write(_plan(at(0)))
    assert inner.writes == 1  # written first: the retry writes it again, by _id, harmlessly
