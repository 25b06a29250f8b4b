"""The `connect` part's arithmetic: one trial's figures and the interleaved trials summed up (pure).

A trial is one process (Headwater's consumer or the Kafka Connect worker) started on the same
topics with a fresh group and a fresh database; the samples are (seconds since the process
started, documents stored so far).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

if __package__:  # imported as bench.connect_results (the unit tests)
    from bench.measures import ratio_summary, spread_summary, sustained_rate
else:  # run by bench/run.py, with bench/ first on sys.path like its siblings
    from measures import ratio_summary, spread_summary, sustained_rate

SYSTEMS = ("headwater", "connect")
# Headwater's consumer against Connect sustained, while doing more work (issue 13).
TARGET_SUSTAINED = 1.5
# figure -> digits its spread is rounded to, in the order they are reported.
FIGURES = {
    "sustained_docs_per_s": 0,
    "including_start_docs_per_s": 0,
    "startup_s": 2,
    "wall_s": 2,
    "cpu_s": 2,
    "peak_rss_mib": 0,
}
RATIO_FIGURES = ("sustained_docs_per_s", "including_start_docs_per_s")


def is_complete(stored: int, expected: int, dead_lettered: int = 0) -> bool:
    """Whether every record is accounted for: stored, or (Connect) sent to the dead-letter topic."""
    return stored + dead_lettered >= expected


def trial_figures(
    samples: Sequence[tuple[float, int]], cpu_s: float, peak_rss_mib: float
) -> dict[str, float]:
    """One trial's rates and costs from its samples (time since process start, docs stored).

    Sustained: from the first to the last document stored (start-up left out); including
    start-up: the documents over process start -> last document, which is also the wall time the
    CPU seconds are set against.
    """
    stored = [(t, n) for t, n in samples if n > 0]
    if not stored:
        raise ValueError("no document was stored")
    first_t = stored[0][0]
    docs = stored[-1][1]
    # The last document: the first sample that shows the final count.
    done_t = next(t for t, n in stored if n == docs)
    sustained = sustained_rate([(t, n) for t, n in stored if t <= done_t])
    return {
        "docs": float(docs),
        "sustained_docs_per_s": sustained,
        "including_start_docs_per_s": docs / done_t,
        "startup_s": first_t,
        "wall_s": done_t,
        "cpu_s": cpu_s,
        "peak_rss_mib": peak_rss_mib,
    }


def _rounded(figures: dict[str, float]) -> dict[str, float]:
    return {k: round(v, FIGURES.get(k, 2)) for k, v in figures.items()}


def summarise(
    headwater: Sequence[dict[str, float]], connect: Sequence[dict[str, float]]
) -> dict[str, Any]:
    """Both systems' spread of every figure and Headwater ÷ Connect of each interleaved pair.

    Pairs, not medians alone: trial i of each ran back to back, so load that drifts on a shared
    machine moves both. A ratio whose pairs spread more than ±15 % around its median is
    `unreliable`; the target is judged on the median of the sustained pairs.
    """
    if not headwater or len(headwater) != len(connect):
        raise ValueError(
            f"need the same number of trials each, got {len(headwater)} and {len(connect)}"
        )
    per_system = dict(zip(SYSTEMS, (headwater, connect), strict=True))
    spreads = {
        system: {
            figure: spread_summary([t[figure] for t in trials], ndigits)
            for figure, ndigits in FIGURES.items()
        }
        for system, trials in per_system.items()
    }
    ratios = {
        figure: ratio_summary(
            [h[figure] / c[figure] for h, c in zip(headwater, connect, strict=True)]
        )
        for figure in RATIO_FIGURES
    }
    sustained = ratios["sustained_docs_per_s"]
    return {
        **spreads,
        "ratio": ratios,
        "headwater_vs_connect": sustained["median"],
        "target": TARGET_SUSTAINED,
        "verdict": "met" if sustained["median"] >= TARGET_SUSTAINED else "missed",
        "trials": [
            {system: _rounded(trials[i]) for system, trials in per_system.items()}
            for i in range(len(headwater))
        ],
    }
