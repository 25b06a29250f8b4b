"""What the consumer reports about itself: counters, lag, heartbeat document, health (pure)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from headwater.kafka_admin import PartitionOffsets, partition_lag


@dataclass
class Counters:
    """Running totals since start; each consumed message lands in exactly one of the first three."""

    consumed: int = 0
    stored: int = 0
    rejected: int = 0
    filtered: int = 0
    written: int = 0  # documents written (data + rejections), after in-batch de-duplication
    batches: int = 0
    commits: int = 0
    commit_failures: int = 0
    store_retries: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass
class LastError:
    """The most recent error and when it happened."""

    message: str | None = None
    at: datetime | None = None


@dataclass
class ConsumerState:
    """Everything the heartbeat, /healthz and /metrics show; owned by the service loop."""

    instance: str
    group: str
    host: str
    pid: int
    started_at: datetime
    member_id: str | None = None
    assigned: list[tuple[str, int]] = field(default_factory=list)
    partitions: list[PartitionOffsets] = field(default_factory=list)
    counters: Counters = field(default_factory=Counters)
    last_error: LastError = field(default_factory=LastError)
    store_ok: bool = True
    # Topics not read because their declaration is missing or invalid: topic -> the problem.
    paused_topics: dict[str, str] = field(default_factory=dict)
    # Declaration files that could not be read (the previous declarations stay in force).
    declaration_problems: list[str] = field(default_factory=list)
    phase: str = "starting"  # starting | running | store-unavailable | stopping | stopped


def status_id(group: str, instance: str) -> str:
    """_id of a member's heartbeat document in pipeline_status."""
    return f"consumer|{group}|{instance}"


def heartbeat_document(state: ConsumerState, now: datetime) -> dict[str, Any]:
    """The pipeline_status document (without _id) of one member at `now`."""
    partitions = []
    total_lag = 0
    lag_known = True
    for p in sorted(state.partitions, key=lambda p: (p.topic, p.partition)):
        lag = partition_lag(p.committed, p.low, p.high)
        if lag is None:
            lag_known = False
        else:
            total_lag += lag
        partitions.append(
            {
                "topic": p.topic,
                "partition": p.partition,
                "committed": p.committed if p.committed >= 0 else None,
                "high": p.high if p.high >= 0 else None,
                "lag": lag,
            }
        )
    return {
        "kind": "consumer",
        "group": state.group,
        "instance": state.instance,
        "member_id": state.member_id,
        "host": state.host,
        "pid": state.pid,
        "phase": state.phase,
        "started_at": state.started_at,
        "heartbeat_at": now,
        "assigned": [f"{t}[{p}]" for t, p in sorted(state.assigned)],
        "partitions": partitions,
        "lag_total": total_lag if lag_known else None,
        "counters": state.counters.as_dict(),
        "store_ok": state.store_ok,
        "paused_topics": [
            {"topic": t, "problem": p} for t, p in sorted(state.paused_topics.items())
        ],
        "declaration_problems": list(state.declaration_problems),
        "last_error": state.last_error.message,
        "last_error_at": state.last_error.at,
    }


def health_verdict(
    *, seconds_since_tick: float, stale_after_s: float, store_ok: bool, phase: str
) -> tuple[bool, list[str]]:
    """Whether /healthz answers 200, and why not."""
    problems = []
    if seconds_since_tick > stale_after_s:
        problems.append(f"consumer loop stale: last tick {seconds_since_tick:.0f}s ago")
    if not store_ok:
        problems.append("MongoDB unavailable")
    if phase in ("stopping", "stopped"):
        problems.append(f"consumer is {phase}")
    return not problems, problems
