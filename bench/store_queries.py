"""What the store-at-scale bench asks the server, and how mongosh's timings are read back (pure).

The shipped analyses are the mongosh scripts of db/queries, run as they are; the others are the
driver calls a dashboard or the rollup DAG would make.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from headwater.contracts import Collections


@dataclass(frozen=True)
class Analysis:
    """One db/queries script: what it reads and whether it takes the FROM/UNTIL hour."""

    script: str
    collection: str
    one_hour: bool  # False: the script has no time bound and reads the whole collection


ANALYSES: tuple[Analysis, ...] = (
    Analysis("events_per_user_hour.js", Collections.USER_EVENTS, True),
    Analysis("reject_reasons.js", Collections.REJECTED, True),
    Analysis("sensor_stats.js", Collections.READINGS_ROLLUP, True),
    Analysis("device_type_stats.js", Collections.READINGS, True),
    Analysis("latest_reading_per_device.js", Collections.READINGS, False),
)

ELAPSED_MARK = "BENCH_ELAPSED_MS "
RUN_MARK = "BENCH_RUN "
STOPPED_MARK = "BENCH_STOPPED"
# Loaded once before the timed runs: the shell's first load() pays for warming up (hundreds of ms).
WARMUP_SCRIPT = "db.runCommand({ ping: 1 });\n"

# One unbounded aggregation over every reading: per device and sensor, the mean and range.
UNBOUNDED_GROUP: list[dict[str, Any]] = [
    {
        "$group": {
            "_id": {"device_id": "$device_id", "sensor": "$sensor"},
            "avg": {"$avg": "$value"},
            "min": {"$min": "$value"},
            "max": {"$max": "$value"},
            "readings": {"$sum": 1},
        }
    }
]


def iso_z(moment: datetime) -> str:
    """An aware time as the ISO-8601 the scripts' FROM/UNTIL take, e.g. 2026-01-01T01:00:00Z."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def hour_env(start: datetime, end: datetime) -> dict[str, str]:
    """FROM/UNTIL for a script restricted to [start, end)."""
    return {"FROM": iso_z(start), "UNTIL": iso_z(end)}


def unlisted_scripts(names: Iterable[str]) -> list[str]:
    """Scripts in db/queries this bench does not know how to run (reported as n/a)."""
    known = {a.script for a in ANALYSES}
    return sorted(n for n in names if n not in known)


def count_by_device(start: datetime, end: datetime) -> list[dict[str, Any]]:
    """Readings per device with start <= ts < end."""
    return [
        {"$match": {"ts": {"$gte": start, "$lt": end}}},
        {"$group": {"_id": "$device_id", "readings": {"$sum": 1}}},
    ]


def device_since(device_id: str, since: datetime) -> dict[str, Any]:
    """The indexed find: one device's readings from `since` on (readings.device_ts)."""
    return {"device_id": device_id, "ts": {"$gte": since}}


@dataclass(frozen=True)
class ShellRuns:
    """What one mongosh process printed: each timed run's milliseconds and the last output."""

    elapsed_ms: list[float]
    last_output: str
    stopped_early: bool


def parse_shell_runs(stdout: str) -> ShellRuns:
    """Read bench/mongosh_repeat.js's marks back: a run's output sits between its two marks."""
    elapsed: list[float] = []
    current: list[str] = []
    last = ""
    stopped = False
    for line in stdout.splitlines():
        if line.startswith(RUN_MARK):
            current = []
        elif line.startswith(ELAPSED_MARK):
            elapsed.append(float(line[len(ELAPSED_MARK) :]))
            last = "\n".join(current)
        elif line.startswith(STOPPED_MARK):
            stopped = True
        else:
            current.append(line)
    return ShellRuns(elapsed, last, stopped)


def describe_output(text: str) -> str:
    """How much a script answered: '8 items', or per key of an object: 'total=12, reasons=3'."""
    try:
        value = json.loads(text)
    except ValueError:
        return f"not JSON ({len(text)} chars)"
    if isinstance(value, list):
        return f"{len(value)} items"
    if isinstance(value, dict):
        parts = []
        for key, item in value.items():
            if isinstance(item, list):
                parts.append(f"{key}={len(item)}")
            elif isinstance(item, int | float) and not isinstance(item, bool):
                parts.append(f"{key}={item}")
        return ", ".join(parts) or "object"
    return type(value).__name__


def short_error(exc: BaseException, limit: int = 300) -> str:
    """An error in one line: its type and message, without pymongo's topology description."""
    text = str(exc).split(", Topology Description:")[0]
    text = re.sub(r"\s+", " ", text).strip()
    return f"{type(exc).__name__}: {text[:limit]}"
