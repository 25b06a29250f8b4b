"""The bench's user events: the events API's shape, 1% deliberately invalid, deterministic."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bench.workload import INVALID_EVERY, interleave, is_invalid_event, user_event, user_events
from headwater.contracts import ContractError
from headwater.sources import get_source

SINCE = datetime(2026, 1, 1, tzinfo=UTC)


def _valid(event: dict) -> bool:
    try:
        get_source("user-events").validate(1, event)
    except ContractError:
        return False
    return True


def test_one_event_in_a_hundred_breaks_the_contract_and_the_others_meet_it():
    events = user_events(1000, SINCE)
    invalid = [i for i, e in enumerate(events) if not _valid(e)]
    assert len(invalid) == 1000 // INVALID_EVERY
    assert invalid == [i for i in range(1000) if is_invalid_event(i)]


def test_every_kind_of_invalid_event_is_used():
    broken = [user_event(i, SINCE) for i in range(4 * INVALID_EVERY) if is_invalid_event(i)]
    assert any("user_id" not in e for e in broken)
    assert any(e.get("event_type") == "Not A Type" for e in broken)
    assert any(isinstance(e.get("occurred_at"), int) for e in broken)
    assert any("referrer" in e for e in broken)


def test_event_ids_are_unique_and_time_ordered():
    ids = [e["event_id"] for e in user_events(500, SINCE, per_second=1000)]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)


def test_the_same_index_always_gives_the_same_event():
    assert user_event(42, SINCE) == user_event(42, SINCE)


def test_events_are_not_test_users_the_filters_would_drop():
    assert not any(e.get("user_id", "").startswith("loadtest-") for e in user_events(300, SINCE))


def test_a_rate_below_one_per_second_is_refused():
    with pytest.raises(ValueError):
        user_events(1, SINCE, per_second=0)


def test_interleave_keeps_each_order_and_mixes_in_proportion():
    first = [f"r{i}" for i in range(8)]
    second = [f"e{i}" for i in range(2)]
    merged = interleave(first, second)
    assert sorted(merged) == sorted(first + second)
    assert [x for x in merged if x.startswith("r")] == first
    assert [x for x in merged if x.startswith("e")] == second
    # e0 sits a quarter of the way in, e1 three quarters: not both at an end.
    assert 0 < merged.index("e0") < merged.index("e1") < len(merged) - 1


def test_interleave_with_an_empty_side_is_the_other_side():
    assert interleave([1, 2, 3], []) == [1, 2, 3]
    assert interleave([], [1, 2]) == [1, 2]
