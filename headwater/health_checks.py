"""The pipeline health checks' decisions (pure): plain data and "now" in, a result document out.

Every check returns `{check, ok, detail, measured}`; `detail` names what is wrong and by how much
(or what was seen when all is well), `measured` holds the numbers behind it. Fetching the data
(Kafka metadata and offsets, MongoDB documents, HTTP answers) is the health plugin's job.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from headwater.kafka_admin import PartitionOffsets, PartitionState, partition_lag

HealthResult = dict[str, Any]

# Freshness bound of a source: this many of its intervals, never less than the floor (a DAG run
# lands its window up to one interval plus scheduling latency after the window's events).
FRESHNESS_INTERVALS = 3
FRESHNESS_FLOOR_S = 180.0
# Sources whose data flows continuously when their DAGs are unpaused; the hourly and daily sources
# (and user-events, which only has data when users post) would make a paused or quiet DAG look
# like an outage, so they are opt-in.
DEFAULT_FRESHNESS_SOURCES = ("devices",)

CHECK_BROKERS = "kafka_brokers"
CHECK_PARTITIONS = "kafka_partitions"
CHECK_HEARTBEAT = "consumer_heartbeat"
CHECK_LAG = "consumer_lag"
CHECK_FRESHNESS = "source_freshness"
CHECK_HEALTHZ = "service_healthz"
CHECK_MONGO = "mongo_ping"
CHECK_DECLARATIONS = "source_declarations"
ALL_CHECKS = (
    CHECK_BROKERS,
    CHECK_PARTITIONS,
    CHECK_HEARTBEAT,
    CHECK_LAG,
    CHECK_FRESHNESS,
    CHECK_HEALTHZ,
    CHECK_MONGO,
    CHECK_DECLARATIONS,
)


def health_result(check: str, ok: bool, detail: str, measured: dict[str, Any]) -> HealthResult:
    """One check's result document (without its run ids and time)."""
    return {"check": check, "ok": ok, "detail": detail, "measured": measured}


def as_utc(value: datetime) -> datetime:
    """An instant as aware UTC; a naive one is taken as UTC (documents read by a client that is not
    tz-aware, e.g. a hand-made Airflow connection without tz_aware in its extra)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def check_brokers_alive(expected: Iterable[str], seen: Mapping[int, str]) -> HealthResult:
    """Every expected broker host:port is in the cluster metadata."""
    expected_hosts = sorted(set(expected))
    seen_hosts = sorted(set(seen.values()))
    missing = [h for h in expected_hosts if h not in seen_hosts]
    measured = {
        "expected": len(expected_hosts),
        "alive": len(seen_hosts),
        "broker_ids": sorted(seen),
        "hosts": seen_hosts,
        "missing": missing,
    }
    if missing:
        detail = (
            f"{len(missing)} of {len(expected_hosts)} brokers missing from the cluster metadata: "
            f"{', '.join(missing)} (alive: {', '.join(seen_hosts) or 'none'})"
        )
        return health_result(CHECK_BROKERS, False, detail, measured)
    return health_result(
        CHECK_BROKERS, True, f"{len(seen_hosts)} brokers alive: {', '.join(seen_hosts)}", measured
    )


def check_partitions_replicated(states: Iterable[PartitionState]) -> HealthResult:
    """No partition is offline (no leader) or under-replicated (ISR smaller than replicas)."""
    states = list(states)
    offline = [s for s in states if s.offline]
    under = [s for s in states if not s.offline and s.under_replicated]
    measured = {
        "partitions": len(states),
        "offline": [f"{s.topic}[{s.partition}]" for s in offline],
        "under_replicated": [f"{s.topic}[{s.partition}]" for s in under],
    }
    if offline or under:
        named = [
            f"{s.topic}[{s.partition}] isr={list(s.isr)}/replicas={list(s.replicas)}"
            + (" offline" if s.offline else "")
            for s in offline + under
        ]
        more = f" (+{len(named) - 10} more)" if len(named) > 10 else ""
        detail = (
            f"{len(offline)} offline and {len(under)} under-replicated of {len(states)} "
            f"partitions: {', '.join(named[:10])}{more}"
        )
        return health_result(CHECK_PARTITIONS, False, detail, measured)
    return health_result(
        CHECK_PARTITIONS, True, f"all {len(states)} partitions fully replicated", measured
    )


# A member that is stopping or stopped still writes a last, fresh heartbeat: it is not live.
_GONE_PHASES = ("stopping", "stopped")


def check_heartbeat_fresh(
    heartbeats: Iterable[Mapping[str, Any]],
    now: datetime,
    stale_after_s: float,
    expected_members: int = 1,
) -> HealthResult:
    """At least `expected_members` consumer members are live: each with a heartbeat
    (pipeline_status.heartbeat_at) at most stale_after_s old, and not stopping or stopped.

    Fewer live members than expected fails even when the live ones own every partition (then the
    data still flows, which consumer_lag says): a member gone for longer than stale_after_s was
    not brought back by its supervisor, and the group has lost its spare.
    """
    members: dict[str, Mapping[str, Any]] = {}
    for doc in heartbeats:
        at = doc.get("heartbeat_at")
        if not isinstance(at, datetime):
            continue
        name = str(doc.get("instance"))
        if name not in members or as_utc(at) > as_utc(members[name]["heartbeat_at"]):
            members[name] = doc
    if not members:
        return health_result(
            CHECK_HEARTBEAT,
            False,
            "no consumer heartbeat in pipeline_status",
            {
                "stale_after_s": stale_after_s,
                "age_s": None,
                "expected_members": expected_members,
                "live_members": 0,
                "members": [],
            },
        )
    by_age = sorted(members.values(), key=lambda d: as_utc(d["heartbeat_at"]), reverse=True)

    def age_of(doc: Mapping[str, Any]) -> float:
        return (as_utc(now) - as_utc(doc["heartbeat_at"])).total_seconds()

    live = [d for d in by_age if age_of(d) <= stale_after_s and d.get("phase") not in _GONE_PHASES]
    newest = by_age[0]
    age_s = age_of(newest)
    measured = {
        "stale_after_s": stale_after_s,
        "age_s": round(age_s, 1),
        "heartbeat_at": as_utc(newest["heartbeat_at"]).isoformat(),
        "instance": newest.get("instance"),
        "member_id": newest.get("member_id"),
        "phase": newest.get("phase"),
        "last_error": newest.get("last_error"),
        "expected_members": expected_members,
        "live_members": len(live),
        "members": [
            {
                "instance": d.get("instance"),
                "age_s": round(age_of(d), 1),
                "phase": d.get("phase"),
                "assigned": len(d.get("assigned") or []),
            }
            for d in by_age
        ],
    }

    def who(doc: Mapping[str, Any]) -> str:
        return f"consumer {doc.get('instance')} (phase {doc.get('phase')})"

    live_text = ", ".join(
        f"{who(d)} heartbeat {age_of(d):.0f}s old, {len(d.get('assigned') or [])} partitions"
        for d in live
    )
    if len(live) >= expected_members:
        return health_result(
            CHECK_HEARTBEAT,
            True,
            f"{len(live)} of {expected_members} expected members live: {live_text}",
            measured,
        )
    # The members most recently seen that are not live are the likeliest missing ones.
    gone = [d for d in by_age if d not in live][: expected_members - len(live)]
    problems = []
    for d in gone:
        age = age_of(d)
        if age > stale_after_s:
            problems.append(
                f"{who(d)} heartbeat is {age:.0f}s old, {age - stale_after_s:.0f}s over the "
                f"{stale_after_s:.0f}s limit"
            )
        else:
            problems.append(f"{who(d)} left the group {age:.0f}s ago")
    missing = expected_members - len(live) - len(gone)
    if missing > 0:
        problems.append(f"{missing} expected members never heartbeated")
    detail = f"{len(live)} of {expected_members} expected consumer members live: " + "; ".join(
        problems
    )
    if live:
        detail += f" (still live: {live_text})"
    return health_result(CHECK_HEARTBEAT, False, detail, measured)


def check_lag_under(offsets: Iterable[PartitionOffsets], max_lag_per_topic: int) -> HealthResult:
    """The group's lag (high watermark - committed, summed per topic) is within the limit."""
    lag: dict[str, int] = {}
    unknown: list[str] = []
    for p in offsets:
        lag.setdefault(p.topic, 0)
        behind = partition_lag(p.committed, p.low, p.high)
        if behind is None:
            unknown.append(f"{p.topic}[{p.partition}]")
        else:
            lag[p.topic] += behind
    over = {t: n for t, n in sorted(lag.items()) if n > max_lag_per_topic}
    measured = {"max_lag_per_topic": max_lag_per_topic, "lag": lag, "unknown": unknown}
    problems = [
        f"{t} lag {n} > {max_lag_per_topic} (by {n - max_lag_per_topic})" for t, n in over.items()
    ]
    if unknown:
        problems.append(f"lag unknown for {', '.join(unknown)}")
    if not lag:
        problems.append("no partitions to measure")
    if problems:
        return health_result(CHECK_LAG, False, "; ".join(problems), measured)
    summary = ", ".join(f"{t}={n}" for t, n in sorted(lag.items()))
    return health_result(
        CHECK_LAG, True, f"lag per topic within {max_lag_per_topic}: {summary}", measured
    )


def freshness_bound_s(interval_s: float, floor_s: float = FRESHNESS_FLOOR_S) -> float:
    """How old a source's newest document may be: FRESHNESS_INTERVALS intervals, at least floor."""
    return max(FRESHNESS_INTERVALS * interval_s, floor_s)


def check_sources_fresh(
    newest: Mapping[str, datetime | None],
    bounds_s: Mapping[str, float],
    now: datetime,
    looked_back_s: Mapping[str, float] | None = None,
) -> HealthResult:
    """Each source's newest stored event time is within its bound.

    A source with no document at all fails ("never stored"): a paused or never-run DAG is a source
    that does not flow, which is what the check is there to notice. Only the sources in `bounds_s`
    are checked. `looked_back_s`: how far back the newest document was looked for, when the
    search was bounded (nothing found then means nothing that recent).
    """
    ages: dict[str, float | None] = {}
    problems: list[str] = []
    for source, bound in sorted(bounds_s.items()):
        at = newest.get(source)
        if at is None:
            ages[source] = None
            within = (looked_back_s or {}).get(source)
            problems.append(
                f"{source}: no document stored"
                + (f" in the last {within:.0f}s" if within is not None else "")
            )
            continue
        age = (as_utc(now) - as_utc(at)).total_seconds()
        ages[source] = round(age, 1)
        if age > bound:
            problems.append(
                f"{source}: newest is {age:.0f}s old, {age - bound:.0f}s over {bound:.0f}s"
            )
    measured = {"age_s": ages, "bound_s": dict(bounds_s)}
    if problems:
        return health_result(CHECK_FRESHNESS, False, "; ".join(problems), measured)
    summary = ", ".join(f"{s} {a:.0f}s" for s, a in ages.items() if a is not None)
    return health_result(CHECK_FRESHNESS, True, f"fresh: {summary}", measured)


def check_healthz(answers: Mapping[str, tuple[str, int | None, str]]) -> HealthResult:
    """Every service's /healthz answered 200; `answers` maps name -> (url, status or None, text)."""
    bad: list[str] = []
    statuses: dict[str, int | None] = {}
    for name, (url, status, text) in sorted(answers.items()):
        statuses[name] = status
        if status != 200:
            answered = f"answered {status}" if status is not None else "did not answer"
            bad.append(f"{name} {url} {answered}: {text[:200]}")
    measured = {"status": statuses}
    if bad:
        return health_result(CHECK_HEALTHZ, False, "; ".join(bad), measured)
    return health_result(CHECK_HEALTHZ, True, f"healthy: {', '.join(statuses)}", measured)


def check_mongo_answers(elapsed_s: float | None, error: str | None, bound_s: float) -> HealthResult:
    """MongoDB answered `ping` within bound_s; `elapsed_s` is None when it did not answer."""
    measured = {
        "bound_s": bound_s,
        "elapsed_s": None if elapsed_s is None else round(elapsed_s, 3),
        "error": error,
    }
    if elapsed_s is None or error is not None:
        detail = f"MongoDB did not answer ping within {bound_s:g}s: {(error or '')[:300]}"
        return health_result(CHECK_MONGO, False, detail, measured)
    if elapsed_s > bound_s:
        detail = f"MongoDB answered ping in {elapsed_s:.1f}s, over the {bound_s:g}s bound"
        return health_result(CHECK_MONGO, False, detail, measured)
    return health_result(
        CHECK_MONGO, True, f"MongoDB answered ping in {elapsed_s * 1000:.0f} ms", measured
    )


def check_declarations(
    problems: Mapping[str, str],
    file_problems: Mapping[str, str],
    paused: Mapping[str, str],
    valid: Iterable[str],
) -> HealthResult:
    """Every entry of the declaration files is valid and no topic is paused for want of one.

    `problems`: source -> what is wrong with its entry; `file_problems`: file -> why it could not
    be read; `paused`: topic -> why the consumer does not read it (from its heartbeats).
    """
    valid = sorted(valid)
    measured = {
        "valid": valid,
        "invalid": dict(sorted(problems.items())),
        "unreadable_files": dict(sorted(file_problems.items())),
        "paused_topics": dict(sorted(paused.items())),
    }
    lines = [f"source {name}: {why}" for name, why in sorted(problems.items())]
    lines += [f"file {path}: {why}" for path, why in sorted(file_problems.items())]
    lines += [
        f"topic {topic} paused: {why}"
        for topic, why in sorted(paused.items())
        if not any(why.startswith(f"source {name}:") for name in problems)
    ]
    if lines:
        return health_result(CHECK_DECLARATIONS, False, "; ".join(lines), measured)
    return health_result(
        CHECK_DECLARATIONS,
        True,
        f"{len(valid)} sources declared and read: {', '.join(valid)}",
        measured,
    )
