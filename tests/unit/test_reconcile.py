"""The reconciliation rule: pulled == produced == stored + rejected."""

from __future__ import annotations

from headwater.reconcile import Tally, behind, mismatch, wait_for_commits


def test_matching_numbers_pass() -> None:
    assert mismatch(Tally(pulled=480, produced=480, stored=475, rejected=5)) is None


def test_each_gap_is_named_with_its_numbers() -> None:
    assert mismatch(Tally(480, 479, 479, 0)) == "pulled 480 but produced 479"
    problem = mismatch(Tally(480, 480, 470, 5))
    assert problem is not None and "470 stored + 5 rejected = 475" in problem
    assert mismatch(Tally(480, 480, 480, 5)) is not None  # more landed than sent is wrong too


def test_behind_lists_partitions_short_of_their_target_with_the_gap() -> None:
    targets = {("t", 0): 10, ("t", 1): 5, ("t", 2): 0}
    committed = {("t", 0): 10, ("t", 1): 3}
    # An empty partition (target 0) is never behind, even with nothing committed.
    assert behind(targets, committed) == {("t", 1): 2}
    # Nothing committed (absent, or Kafka's -1001 sentinel) is a gap from 0, never from -1001.
    assert behind({("t", 0): 4}, {}) == {("t", 0): 4}
    assert behind({("t", 0): 4}, {("t", 0): -1001}) == {("t", 0): 4}


def test_wait_for_commits_stops_once_the_group_passed_the_targets_taken_at_the_start() -> None:
    answers = iter(
        [
            ({("t", 0): 100}, {("t", 0): 40}),
            # Later messages raise the watermark; only the first one is the target.
            ({("t", 0): 150}, {("t", 0): 90}),
            ({("t", 0): 200}, {("t", 0): 100}),
        ]
    )
    sleeps: list[float] = []
    gaps = wait_for_commits(lambda: next(answers), timeout_s=60, poll_s=0.5, sleep=sleeps.append)
    assert gaps == {}
    assert sleeps == [0.5, 0.5]


def test_wait_for_commits_gives_up_at_the_deadline_and_says_what_is_behind() -> None:
    gaps = wait_for_commits(
        lambda: ({("t", 0): 100}, {("t", 0): 40}), timeout_s=0, sleep=lambda _: None
    )
    assert gaps == {("t", 0): 60}
