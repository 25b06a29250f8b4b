"""The pipeline at a glance (pure): MongoDB documents and "now" in, the Headwater page's figures.

Per source: its latest reconciled windows (pulled / produced / stored / rejected, from
`reconcile_runs`), the consumer group's lag on each partition of its topic (from the members'
heartbeats in `pipeline_status`) and its freshness (from the latest `source_freshness` check). For
the pipeline: each health check's latest result and its recent failures (`health_checks`), the
consumer members, and links to the DAGs. The result is plain JSON data: the page's JSON API
serves it as it is and the HTML page is rendered from it, so both always show the same figures.
Reading the documents is the plugin's job (plugins/headwater_ui).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from headwater.health_checks import ALL_CHECKS, CHECK_FRESHNESS, as_utc
from headwater.sources import Source

Doc = Mapping[str, Any]

# How many of a source's reconciles and of a check's failures the page lists.
RECENT_RECONCILES = 5
RECENT_FAILURES = 5
# The pipeline's DAGs besides one ingest DAG per source, in the order the page lists them.
PIPELINE_DAGS = ("rollup_readings", "pipeline_health", "replay_rejected")
# A member that is stopping or stopped still writes a last, fresh heartbeat: it is not live.
_GONE_PHASES = ("stopping", "stopped")


def ingest_dag_id(source_name: str) -> str:
    """The ingest DAG of a source (dags/ingest.py names them so)."""
    return "ingest_" + source_name.replace("-", "_")


def dag_url(airflow_root: str, dag_id: str) -> str:
    """Where the Airflow UI shows a DAG, under the UI's root path ("/" or "/airflow/")."""
    return f"{airflow_root.rstrip('/')}/dags/{dag_id}"


def iso(value: Any) -> str | None:
    """An instant as ISO-8601 UTC text to the second (None stays None)."""
    if not isinstance(value, datetime):
        return None
    return as_utc(value).isoformat(timespec="seconds")


@dataclass(frozen=True)
class SummaryInputs:
    """Everything the summary is built from, as read from MongoDB."""

    sources: Sequence[Source]
    # source name -> its reconcile_runs documents, newest first
    reconciles: Mapping[str, Sequence[Doc]]
    # the consumer group's heartbeat documents (pipeline_status, kind "consumer")
    heartbeats: Sequence[Doc]
    # check -> its newest health_checks document (absent: never ran)
    health_latest: Mapping[str, Doc]
    # check -> its health_checks documents that saw a failure, newest failure first
    health_failures: Mapping[str, Sequence[Doc]]
    group: str
    stale_after_s: float


def reconcile_row(doc: Doc) -> dict[str, Any]:
    """One reconcile_runs document as the page shows it."""
    return {
        "since": iso(doc.get("since")),
        "until": iso(doc.get("until")),
        "run_id": doc.get("run_id"),
        "outcome": doc.get("outcome"),
        "pulled": doc.get("pulled"),
        "produced": doc.get("produced"),
        "stored": doc.get("stored"),
        "rejected": doc.get("rejected"),
        "error": doc.get("error"),
        "reconciled_at": iso(doc.get("reconciled_at")),
    }


def _age_s(now: datetime, at: Any) -> float | None:
    if not isinstance(at, datetime):
        return None
    return round((as_utc(now) - as_utc(at)).total_seconds(), 1)


def members(heartbeats: Iterable[Doc], now: datetime, stale_after_s: float) -> list[dict[str, Any]]:
    """The consumer members, newest heartbeat first, each live or not."""
    rows = []
    for doc in heartbeats:
        age = _age_s(now, doc.get("heartbeat_at"))
        live = age is not None and age <= stale_after_s and doc.get("phase") not in _GONE_PHASES
        rows.append(
            {
                "instance": doc.get("instance"),
                "phase": doc.get("phase"),
                "heartbeat_at": iso(doc.get("heartbeat_at")),
                "age_s": age,
                "live": live,
                "assigned": len(doc.get("assigned") or []),
                "lag_total": doc.get("lag_total"),
                "last_error": doc.get("last_error"),
            }
        )
    rows.sort(key=lambda r: (r["age_s"] is None, r["age_s"] or 0.0, str(r["instance"])))
    return rows


def partition_lag(
    heartbeats: Iterable[Doc], now: datetime, stale_after_s: float
) -> dict[str, list[dict[str, Any]]]:
    """topic -> one row per partition, from the newest heartbeat that reports the partition.

    A partition moves between members on a rebalance; the member that owns it now reports it in
    its newer heartbeats, so the newest report wins. A report from a member that is no longer
    live is kept, marked: the lag it shows is the last known, not the current one.
    """
    newest: dict[tuple[str, int], tuple[datetime, Doc, Doc]] = {}
    for doc in heartbeats:
        at = doc.get("heartbeat_at")
        if not isinstance(at, datetime):
            continue
        for part in doc.get("partitions") or []:
            key = (str(part.get("topic")), int(part.get("partition", -1)))
            if key not in newest or as_utc(at) > newest[key][0]:
                newest[key] = (as_utc(at), part, doc)
    by_topic: dict[str, list[dict[str, Any]]] = {}
    for (topic, partition), (at, part, doc) in sorted(newest.items()):
        age = _age_s(now, at)
        live = age is not None and age <= stale_after_s and doc.get("phase") not in _GONE_PHASES
        by_topic.setdefault(topic, []).append(
            {
                "partition": partition,
                "committed": part.get("committed"),
                "high": part.get("high"),
                "lag": part.get("lag"),
                "member": doc.get("instance"),
                "member_live": live,
                "reported_age_s": age,
            }
        )
    return by_topic


def lag_total(rows: Sequence[Mapping[str, Any]]) -> int | None:
    """Sum of the partitions' lag; None when a partition's lag is unknown or none is reported."""
    lags = [r.get("lag") for r in rows]
    if not lags or any(not isinstance(n, int) for n in lags):
        return None
    return sum(int(n) for n in lags)  # type: ignore[arg-type]


def freshness_of(source: str, latest_freshness: Doc | None) -> dict[str, Any] | None:
    """The source's newest-document age and bound as the latest freshness check measured them."""
    if latest_freshness is None:
        return None
    measured = latest_freshness.get("measured") or {}
    bounds = measured.get("bound_s") or {}
    if source not in bounds:
        return None  # not a source that check watches
    return {
        "age_s": (measured.get("age_s") or {}).get(source),
        "bound_s": bounds[source],
        "checked_at": iso(latest_freshness.get("checked_at")),
    }


def health_row(check: str, latest: Doc | None, failed: Sequence[Doc]) -> dict[str, Any]:
    """A check's latest result and its recent failures (each run's last failure)."""
    failures = []
    for doc in failed[:RECENT_FAILURES]:
        last = doc.get("last_failure") or {}
        failures.append(
            {
                "at": iso(last.get("at")),
                "detail": last.get("detail"),
                "dag_run_id": doc.get("dag_run_id"),
                "failed_pokes": doc.get("failures"),
                # the run's check passed after this failure (a later poke was green)
                "recovered": bool(doc.get("ok")),
            }
        )
    return {
        "check": check,
        "latest": None
        if latest is None
        else {
            "ok": bool(latest.get("ok")),
            "detail": latest.get("detail"),
            "checked_at": iso(latest.get("checked_at")),
            "dag_run_id": latest.get("dag_run_id"),
        },
        "failures": failures,
    }


def build_summary(inputs: SummaryInputs, now: datetime, airflow_root: str = "/") -> dict[str, Any]:
    """The page's figures (plain JSON data) from the documents in `inputs`."""
    lag_by_topic = partition_lag(inputs.heartbeats, now, inputs.stale_after_s)
    latest_freshness = inputs.health_latest.get(CHECK_FRESHNESS)
    sources = []
    for source in inputs.sources:
        recent = [reconcile_row(d) for d in list(inputs.reconciles.get(source.name, ()))]
        recent = recent[:RECENT_RECONCILES]
        partitions = lag_by_topic.get(source.topic, [])
        dag_id = ingest_dag_id(source.name)
        sources.append(
            {
                "name": source.name,
                "description": source.description,
                "topic": source.topic,
                "collection": source.collection,
                "dag_id": dag_id,
                "dag_url": dag_url(airflow_root, dag_id),
                "last_reconcile": recent[0] if recent else None,
                "recent_reconciles": recent,
                "lag": {"total": lag_total(partitions), "partitions": partitions},
                "freshness": freshness_of(source.name, latest_freshness),
            }
        )
    health = [
        health_row(c, inputs.health_latest.get(c), inputs.health_failures.get(c, ()))
        for c in ALL_CHECKS
    ]
    failing = [h["check"] for h in health if h["latest"] is not None and not h["latest"]["ok"]]
    member_rows = members(inputs.heartbeats, now, inputs.stale_after_s)
    return {
        "generated_at": iso(now),
        "overview": {
            "sources": len(sources),
            "failed_reconciles": [
                s["name"]
                for s in sources
                if s["last_reconcile"] and s["last_reconcile"]["outcome"] != "ok"
            ],
            "checks_failing": failing,
            "checks_never_run": [h["check"] for h in health if h["latest"] is None],
            "members_live": sum(1 for m in member_rows if m["live"]),
        },
        "sources": sources,
        "consumer": {
            "group": inputs.group,
            "stale_after_s": inputs.stale_after_s,
            "members": member_rows,
        },
        "health": health,
        "dags": [
            {"dag_id": d, "url": dag_url(airflow_root, d)}
            for d in (*(s["dag_id"] for s in sources), *PIPELINE_DAGS)
        ],
    }
