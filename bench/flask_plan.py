"""The flask bench's plan and arithmetic (pure): interleaved trial order, fsyncs per event."""

from __future__ import annotations

from collections.abc import Sequence


def rotated_order(arms: Sequence[str], trials: int) -> list[str]:
    """`trials` rounds of every arm, each round starting one arm later (A B C, B C A, C A B, ...).

    Rotating spreads a steady drift of the machine (a neighbour's load, a growing database)
    over every arm instead of always favouring the arm that goes first.
    """
    if trials < 1:
        raise ValueError(f"need at least one trial, got {trials}")
    if not arms or len(set(arms)) != len(arms):
        raise ValueError(f"need distinct arms, got {list(arms)}")
    return [arms[(round_ + i) % len(arms)] for round_ in range(trials) for i in range(len(arms))]


def per_event(commits: int | None, accepted: int) -> float | None:
    """Commits (one fsync each) per accepted event; None when unknown or nothing was accepted."""
    if commits is None or accepted <= 0:
        return None
    if commits < 0:
        raise ValueError(f"the commit counter went backwards by {-commits}")
    return commits / accepted
