"""The reconciliation rule: pulled == produced == stored + rejected."""

from __future__ import annotations

from headwater.reconcile import STORED_IN, Tally, mismatch
from headwater.sources import load_sources


def test_matching_numbers_pass() -> None:
    assert mismatch(Tally(pulled=480, produced=480, stored=475, rejected=5)) is None


def test_each_gap_is_named_with_its_numbers() -> None:
    assert mismatch(Tally(480, 479, 479, 0)) == "pulled 480 but produced 479"
    problem = mismatch(Tally(480, 480, 470, 5))
    assert problem is not None and "470 stored + 5 rejected = 475" in problem
    assert mismatch(Tally(480, 480, 480, 5)) is not None  # more landed than sent is wrong too


def test_every_declared_source_has_a_home_in_mongo() -> None:
    assert set(load_sources()) == set(STORED_IN)
