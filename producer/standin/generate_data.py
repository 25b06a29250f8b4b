"""Generate the stand-in's committed data files (seeded, so a re-run writes the same bytes).

Run once: `python -m producer.standin.generate_data [--out DIR]`. The outputs are committed in
producer/standin/data/; the files are data, this script is how they came to be.
"""

from __future__ import annotations

import argparse
import json
import math
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

DATA_DIR = Path(__file__).resolve().parent / "data"
SEED = 20210622
START = datetime(2021, 6, 22, tzinfo=UTC)
DAYS = 3
METRIC_IDS = 20
METRIC_STEP_S = 300
PRODUCTS = 5
ORDER_STEP_S = 600

SEASON_START = datetime(2025, 8, 16, tzinfo=UTC)  # a Saturday
# The season as a client saw it on this day: earlier matches FINISHED, later ones SCHEDULED.
SEASON_AS_OF = datetime(2026, 2, 1, tzinfo=UTC)
# Weekends without a matchday (international breaks) after these matchdays.
BREAKS_AFTER = frozenset({3, 7, 11})
COMPETITION = {"id": 9001, "name": "Headwater League", "code": "HWL"}
TEAMS = (
    ("Ashbourne Rovers", "Ashbourne", "ASH"),
    ("Bramwell Athletic", "Bramwell", "BRA"),
    ("Carrick Vale", "Carrick", "CAR"),
    ("Dunmore City", "Dunmore", "DUN"),
    ("Eastholm United", "Eastholm", "EAS"),
    ("Fenwick Town", "Fenwick", "FEN"),
    ("Glenford Albion", "Glenford", "GLE"),
    ("Harrowgate Wanderers", "Harrowgate", "HAR"),
    ("Ironbridge FC", "Ironbridge", "IRO"),
    ("Kestrel Park", "Kestrel", "KES"),
    ("Lowmoor Rangers", "Lowmoor", "LOW"),
    ("Marlow Heath", "Marlow", "MAR"),
    ("Northcliff Borough", "Northcliff", "NOR"),
    ("Oakridge Villa", "Oakridge", "OAK"),
    ("Penhallow Forest", "Penhallow", "PEN"),
    ("Queensbury Harriers", "Queensbury", "QUE"),
    ("Redbank County", "Redbank", "RED"),
    ("Stonebridge Celtic", "Stonebridge", "STO"),
    ("Thornbury Swifts", "Thornbury", "THO"),
    ("Westmere Dynamo", "Westmere", "WES"),
)
# (days after the matchday's Saturday, UTC kick-off) for the ten matches of a matchday.
KICKOFFS = (
    (0, "11:30"),
    (0, "14:00"),
    (0, "14:00"),
    (0, "14:00"),
    (0, "14:00"),
    (0, "16:30"),
    (1, "13:00"),
    (1, "13:00"),
    (1, "15:30"),
    (2, "19:00"),
)


def _epoch(moment: datetime) -> int:
    return int(moment.timestamp())


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


# ---- machine metrics -----------------------------------------------------------------------------


def machine_metrics(rng: random.Random) -> list[dict[str, Any]]:
    """20 parameters every 5 minutes (irregular second offsets) for 3 days: {id, val, time}."""
    # Per id: a level, a daily swing, a noise size and a decimal precision, like a plant's tags
    # (temperatures, pressures, speeds, power), so ids do not all look alike.
    profiles = []
    for _ in range(METRIC_IDS):
        level = rng.choice([1.0, 10.0, 100.0, 1000.0]) * rng.uniform(1.0, 9.0)
        profiles.append((level, level * rng.uniform(0.02, 0.15), level * rng.uniform(0.002, 0.01)))
    drift = [0.0] * METRIC_IDS
    start = _epoch(START)
    records = []
    for slot in range(DAYS * 86400 // METRIC_STEP_S):
        slot_start = start + slot * METRIC_STEP_S
        for pid, (level, swing, noise) in enumerate(profiles):
            # A mean-reverting walk on top of a daily cycle: smooth, never a straight line.
            drift[pid] = 0.9 * drift[pid] + rng.gauss(0.0, noise)
            day_phase = 2 * math.pi * (slot_start - start) / 86400 + pid
            value = level + swing * math.sin(day_phase) + drift[pid]
            moment = slot_start + rng.randint(0, 59)
            records.append({"id": pid, "val": round(value, 2), "time": moment})
    return records


# ---- work orders ---------------------------------------------------------------------------------


def work_orders(rng: random.Random) -> list[dict[str, Any]]:
    """Cumulative production per product every 10 minutes for 3 days, grouped by product."""
    start = _epoch(START)
    records = []
    for product in range(PRODUCTS):
        rate_tenths = rng.randint(20, 150)  # mean units per 10 minutes, in tenths
        night_shift = rng.random() < 0.5
        total_tenths = 0
        for slot in range(DAYS * 86400 // ORDER_STEP_S):
            moment = start + slot * ORDER_STEP_S
            hour = (moment // 3600) % 24
            # Integer tenths keep the running total exact, so the file is monotonic per product.
            if night_shift or 6 <= hour < 22:
                total_tenths += max(0, round(rng.gauss(rate_tenths, rate_tenths * 0.3)))
            records.append({"time": moment, "product": product, "production": total_tenths / 10})
    return records


# ---- matches -------------------------------------------------------------------------------------


def _poisson(rng: random.Random, mean: float) -> int:
    # Knuth's method: fine for football-sized means.
    limit, count, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


def _round_robin(n: int) -> list[list[tuple[int, int]]]:
    """(home, away) team indices per matchday: a double round-robin by the circle method."""
    teams = list(range(n))
    first_half = []
    for rnd in range(n - 1):
        pairs = []
        for i in range(n // 2):
            a, b = teams[i], teams[n - 1 - i]
            # Alternate who hosts so no team plays long home or away runs.
            pairs.append((a, b) if (rnd + i) % 2 == 0 else (b, a))
        first_half.append(pairs)
        teams = [teams[0], teams[-1], *teams[1:-1]]
    return first_half + [[(away, home) for home, away in day] for day in first_half]


def _team(index: int) -> dict[str, Any]:
    name, short, tla = TEAMS[index]
    return {"id": 7001 + index, "name": name, "shortName": short, "tla": tla}


def _score(rng: random.Random, finished: bool, strength: list[float], home: int, away: int) -> Any:
    if not finished:
        nothing = {"home": None, "away": None}
        return {"winner": None, "duration": "REGULAR", "fullTime": nothing, "halfTime": nothing}
    goals_home = _poisson(rng, 1.45 * strength[home] / strength[away])
    goals_away = _poisson(rng, 1.15 * strength[away] / strength[home])
    half_home = sum(rng.random() < 0.45 for _ in range(goals_home))
    half_away = sum(rng.random() < 0.45 for _ in range(goals_away))
    winner = "DRAW"
    if goals_home != goals_away:
        winner = "HOME_TEAM" if goals_home > goals_away else "AWAY_TEAM"
    return {
        "winner": winner,
        "duration": "REGULAR",
        "fullTime": {"home": goals_home, "away": goals_away},
        "halfTime": {"home": half_home, "away": half_away},
    }


def matches(rng: random.Random) -> dict[str, Any]:
    """One 20-team double round-robin season in the football-data.org v4 /matches shape."""
    strength = [rng.uniform(0.7, 1.4) for _ in TEAMS]
    saturday = SEASON_START
    result = []
    for matchday, pairs in enumerate(_round_robin(len(TEAMS)), start=1):
        slots = list(KICKOFFS)
        rng.shuffle(slots)
        fixtures = []
        for (home, away), (day, clock) in zip(pairs, slots, strict=True):
            hours, minutes = map(int, clock.split(":"))
            fixtures.append(
                (saturday + timedelta(days=day, hours=hours, minutes=minutes), home, away)
            )
        fixtures.sort(key=lambda fixture: (fixture[0], fixture[1]))
        for kickoff, home, away in fixtures:
            finished = kickoff < SEASON_AS_OF
            result.append(
                {
                    "id": 540001 + len(result),
                    "utcDate": _iso(kickoff),
                    "status": "FINISHED" if finished else "SCHEDULED",
                    "matchday": matchday,
                    "stage": "REGULAR_SEASON",
                    "competition": dict(COMPETITION),
                    "homeTeam": _team(home),
                    "awayTeam": _team(away),
                    "score": _score(rng, finished, strength, home, away),
                }
            )
        saturday += timedelta(days=14 if matchday in BREAKS_AFTER else 7)
    return {"matches": result}


# ---- writing -------------------------------------------------------------------------------------


def _jsonl(records: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(record) + "\n" for record in records)


def render_all(seed: int = SEED) -> dict[str, str]:
    """File name -> text of every data file; each file has its own seeded generator."""
    makers: dict[str, Callable[[random.Random], str]] = {
        "machine-metrics.jsonl": lambda rng: _jsonl(machine_metrics(rng)),
        "work-orders.jsonl": lambda rng: _jsonl(work_orders(rng)),
        "matches.json": lambda rng: json.dumps(matches(rng), indent=1) + "\n",
    }
    return {name: make(random.Random(f"{seed}:{name}")) for name, make in makers.items()}


def write_all(out_dir: Path, seed: int = SEED) -> list[Path]:
    """Write every data file into out_dir and return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in render_all(seed).items():
        path = out_dir / name
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> None:
    """Command line: write the data files (default: the committed data folder)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DATA_DIR)
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args(argv)
    for path in write_all(args.out, args.seed):
        print(f"{path} {path.stat().st_size} bytes")


if __name__ == "__main__":
    main()
