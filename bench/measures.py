"""Pure arithmetic of the benchmarks: percentiles, rates and ratios (no I/O, no clocks)."""

from __future__ import annotations

import math
from collections.abc import Sequence

PERCENTILES = (50.0, 95.0, 99.0)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation between closest ranks (numpy's default).

    ValueError for an empty sequence or q outside [0, 100]: a latency nobody measured is not 0.
    """
    if not values:
        raise ValueError("percentile of no values")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile must be within 0..100, got {q}")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100.0
    lower = math.floor(position)
    upper = math.ceil(position)
    if lower == upper:
        return float(ordered[lower])
    weight = position - lower
    return float(ordered[lower] * (1 - weight) + ordered[upper] * weight)


def latency_summary(seconds: Sequence[float], ndigits: int = 1) -> dict[str, float | int]:
    """n, p50/p95/p99, mean and max of latencies given in seconds, reported in milliseconds."""
    if not seconds:
        return {"n": 0}
    summary: dict[str, float | int] = {"n": len(seconds)}
    for q in PERCENTILES:
        summary[f"p{q:g}_ms"] = round(percentile(seconds, q) * 1000, ndigits)
    summary["mean_ms"] = round(sum(seconds) / len(seconds) * 1000, ndigits)
    summary["max_ms"] = round(max(seconds) * 1000, ndigits)
    return summary


def rate(count: float, seconds: float) -> float:
    """Items per second; ValueError when no time passed (a rate over nothing is meaningless)."""
    if seconds <= 0:
        raise ValueError(f"rate over a non-positive duration: {seconds}")
    return count / seconds


def ratio(measured: float | None, ceiling: float | None, ndigits: int = 3) -> float | None:
    """measured ÷ ceiling, rounded; None when either is missing or the ceiling is not positive."""
    if measured is None or ceiling is None or ceiling <= 0:
        return None
    return round(measured / ceiling, ndigits)


def sustained_rate(samples: Sequence[tuple[float, int]]) -> float:
    """Rate between the first sample that shows progress and the last sample.

    `samples` are (time, cumulative count) pairs in time order. Start-up (before the first item
    arrived) is left out, so the figure is the steady rate, not one diluted by a process start.
    """
    started = [(t, n) for t, n in samples if n > 0]
    if len(started) < 2:
        raise ValueError("need two samples with progress to compute a sustained rate")
    (t0, n0), (t1, n1) = started[0], started[-1]
    return rate(n1 - n0, t1 - t0)


def paired_ratios(figures: Sequence[float], ceilings: Sequence[float], ndigits: int = 3) -> dict:
    """ratio_summary of figure ÷ ceiling over interleaved trials, pair by pair, with the pairs."""
    if len(figures) != len(ceilings) or not figures:
        raise ValueError("need as many figures as ceilings, at least one of each")
    ratios = [f / c for f, c in zip(figures, ceilings, strict=True) if c]
    if not ratios:
        raise ValueError("every ceiling was zero")
    return {**ratio_summary(ratios, ndigits=ndigits), "pairs": [round(r, ndigits) for r in ratios]}


def spread_summary(values: Sequence[float], ndigits: int = 3) -> dict[str, float | int]:
    """n, median, min and max of repeated measurements: the figure and how far the runs spread.

    ValueError for no values (a figure nobody measured is not 0).
    """
    if not values:
        raise ValueError("spread of no values")
    return {
        "n": len(values),
        "median": round(percentile(values, 50.0), ndigits),
        "min": round(min(values), ndigits),
        "max": round(max(values), ndigits),
    }


# A ratio whose trials spread more than this either side of their median says nothing a rerun
# could not overturn (issue 13): it is reported, marked unreliable.
UNRELIABLE_SPREAD = 0.15


def relative_spread(values: Sequence[float]) -> float:
    """How far the values reach from their median, as a share of it: the larger of
    max/median - 1 and 1 - min/median (0.15 means the runs stayed within ±15 %).

    ValueError for no values or a median that is not positive (no share of it means anything).
    """
    if not values:
        raise ValueError("spread of no values")
    median = percentile(values, 50.0)
    if median <= 0:
        raise ValueError(f"relative spread around a non-positive median: {median}")
    return max(max(values) / median - 1.0, 1.0 - min(values) / median)


def ratio_summary(
    ratios: Sequence[float], limit: float = UNRELIABLE_SPREAD, ndigits: int = 3
) -> dict[str, float | int | bool]:
    """The spread summary of per-trial ratios, their relative spread, and whether it exceeds
    `limit` (the ratio is then `unreliable`)."""
    spread = relative_spread(ratios)
    return {
        **spread_summary(ratios, ndigits),
        "spread": round(spread, 3),
        "unreliable": spread > limit,
    }
