"""What the store-at-scale figures are judged against, and the verdicts (pure).

The targets are for the full size (TARGET_DOCS readings); a smaller run prints the same verdicts,
which then only say how far the server is from them at that size.
"""

from __future__ import annotations

import re

from pymongo.errors import ConnectionFailure, OperationFailure, PyMongoError

TARGET_DOCS = 5_000_000
# One-hour analyses (db/queries, in mongosh) and the indexed find, each.
QUERY_TARGET_S = 1.0
# The unbounded $group: an answer or a clean failure within this, and the server still up.
GROUP_TIMEOUT_S = 120.0
# What a JVM holds beyond its -Xmx heap: metaspace, code cache, thread stacks, GC structures and
# the network layer's direct buffers. A small server like this one needs ~100-250 MiB of it.
RSS_OVERHEAD_MIB = 256
# The consumer's write rate into readings with the pipeline's indexes, as a share of without.
INGEST_RATIO_TARGET = 0.8

MET, MISSED, NOT_MEASURED = "met", "missed", "n/a"
# How the unbounded $group ended: an answer, or the server's error reply (both clean); the client
# giving up at the timeout, or the connection dropping (server gone), are not.
ANSWERED, FAILED, TIMED_OUT, CONNECTION_LOST = "answered", "failed", "timed out", "connection lost"
CLEAN_OUTCOMES = (ANSWERED, FAILED)

_HEAP = re.compile(r"([0-9]+)([kmgt]?)", re.IGNORECASE)
_UNIT_MIB = {"": 1 / 1024 / 1024, "k": 1 / 1024, "m": 1, "g": 1024, "t": 1024 * 1024}


def parse_heap_mib(heap: str) -> float:
    """The MiB of a JVM heap size as -Xmx takes it: '768m', '2g', '1048576k' or bytes."""
    found = _HEAP.fullmatch(heap.strip())
    if not found:
        raise ValueError(f"not a JVM heap size: {heap!r} (e.g. 768m, 2g)")
    return int(found.group(1)) * _UNIT_MIB[found.group(2).lower()]


def failure_kind(exc: PyMongoError) -> str:
    """How an operation ended that did not answer: the server's refusal, or the client's timeout
    or a dropped connection (the server gone or wedged)."""
    if isinstance(exc, OperationFailure):
        return FAILED  # the server answered with an error (a time or memory limit included)
    if exc.timeout:
        return TIMED_OUT
    if isinstance(exc, ConnectionFailure):
        return CONNECTION_LOST
    return FAILED


def query_verdict(median_s: float | None, target_s: float = QUERY_TARGET_S) -> str:
    """met when the median took less than the target."""
    if median_s is None:
        return NOT_MEASURED
    return MET if median_s < target_s else MISSED


def group_verdict(
    outcome: str | None, seconds: float | None, ping_ok: bool, timeout_s: float = GROUP_TIMEOUT_S
) -> str:
    """met when the $group answered or failed cleanly within the timeout and ping still answers."""
    if outcome is None or seconds is None:
        return NOT_MEASURED
    return MET if outcome in CLEAN_OUTCOMES and seconds <= timeout_s and ping_ok else MISSED


def rss_limit_mib(heap_mib: float, overhead_mib: float = RSS_OVERHEAD_MIB) -> float:
    return heap_mib + overhead_mib


def rss_verdict(
    peak_mib: float | None, heap_mib: float | None, overhead_mib: float = RSS_OVERHEAD_MIB
) -> str:
    """met when the peak resident memory stayed within the heap plus the fixed JVM overhead."""
    if peak_mib is None or heap_mib is None:
        return NOT_MEASURED
    return MET if peak_mib <= rss_limit_mib(heap_mib, overhead_mib) else MISSED


def ingest_verdict(ratio: float | None, target: float = INGEST_RATIO_TARGET) -> str:
    """met when writing with the indexes runs at least `target` of the rate without them."""
    if ratio is None:
        return NOT_MEASURED
    return MET if ratio >= target else MISSED
