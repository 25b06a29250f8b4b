"""A consumer group's position in one partition and how far behind it is (pure).

Shared by the consumer (its /metrics and status document) and the health checks, so it lives in
the core rather than in either wing.
"""

from __future__ import annotations

from dataclasses import dataclass

# librdkafka's "no offset" (nothing committed yet, or an offset it could not learn).
OFFSET_INVALID = -1001


@dataclass(frozen=True)
class PartitionOffsets:
    """One assigned partition's committed offset and watermarks (negative = unknown)."""

    topic: str
    partition: int
    committed: int
    low: int
    high: int


def partition_lag(committed: int, low: int, high: int) -> int | None:
    """Messages not yet committed: high watermark - committed offset; None when unknown.

    With nothing committed the group starts at the earliest retained message, so everything from
    the low watermark on is behind. A committed offset past `high` (watermark older than the
    commit) is no lag, never negative.
    """
    if high < 0:
        return None
    if committed >= 0:
        return max(0, high - committed)
    if low >= 0:
        return max(0, high - low)
    return None
