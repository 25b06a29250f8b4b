"""The bench result as one PNG: each measured figure beside its ceiling (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display here; must precede pyplot's import

import matplotlib.pyplot as plt
from matplotlib.axes import Axes

MEASURED = "#2b6cb0"
CEILING = "#a0aec0"
PERCENTILES = ("p50", "p95", "p99")


def _bars(ax: Axes, labels: list[str], values: list[float], colors: list[str], unit: str) -> None:
    bars = ax.bar(labels, values, color=colors)
    ax.bar_label(bars, labels=[f"{v:,.0f}" for v in values], fontsize=8)
    ax.set_ylabel(unit)
    ax.tick_params(axis="x", labelsize=8)


def _consumer(ax: Axes, part: dict[str, Any]) -> None:
    _bars(
        ax,
        ["consumer", "bulk upsert", "insert_many"],
        [
            part["consumer"]["sustained_docs_per_s"],
            part["bulk_upsert_docs_per_s"],
            part["insert_many_docs_per_s"],
        ],
        [MEASURED, CEILING, CEILING],
        "documents/s",
    )
    ax.set_title(f"Consumer: Kafka -> MongoDB (ratio {part['consumer_ratio']:.2f})", fontsize=10)


def _producer(ax: Axes, part: dict[str, Any]) -> None:
    labels = ["pull+produce", "produce only", "pull only", "perf tool"]
    values = [
        part["pipeline"]["records_per_s"],
        part["produce_only"]["records_per_s"],
        part["pull_only"]["records_per_s"],
        part["perf_tool"]["records_per_s"],
    ]
    colors = [MEASURED, MEASURED, MEASURED, CEILING]
    if part.get("perf_tool_matched"):
        labels.append("perf tool\nmatched")
        values.append(part["perf_tool_matched"]["records_per_s"])
        colors.append(CEILING)
    _bars(ax, labels, values, colors, "records/s")
    ax.set_title(f"Producer, acks=all lz4 (ratio {part['producer_ratio']:.2f})", fontsize=10)


def _latency_groups(ax: Axes, groups: dict[str, dict[str, Any]], unit_ms: float) -> None:
    width = 0.8 / len(PERCENTILES)
    names = list(groups)
    for i, pct in enumerate(PERCENTILES):
        values = [(groups[n].get(f"{pct}_ms") or 0) / unit_ms for n in names]
        positions = [x + (i - 1) * width for x in range(len(names))]
        bars = ax.bar(positions, values, width, label=pct)
        ax.bar_label(bars, labels=[f"{v:,.1f}" for v in values], fontsize=7)
    ax.set_xticks(range(len(names)), names, fontsize=8)
    ax.legend(fontsize=8)


def _end_to_end(ax: Axes, part: dict[str, Any]) -> None:
    groups = {
        "event -> visible": part["event_to_visible"],
        "window end -> visible": part["window_end_to_visible"],
        "Kafka -> visible": part["kafka_to_visible"],
    }
    _latency_groups(ax, groups, 1000.0)
    ax.set_ylabel("seconds")
    ax.set_title(
        f"End to end via Airflow ({len(part['windows'])} x {part['window_s']} s windows)",
        fontsize=10,
    )


def _flask(ax: Axes, part: dict[str, Any]) -> None:
    _latency_groups(ax, {"POST /events (201)": part["latency_201"]}, 1.0)
    ax.set_ylabel("milliseconds")
    ax.set_title(
        f"Events API: {part['accepted_per_s']:,.0f} accepted/s at {part['concurrency']} concurrent",
        fontsize=10,
    )


def _slow_clients(ax: Axes, part: dict[str, Any]) -> None:
    # The ceiling is the same API without slow sockets, measured in the interleaved trials.
    _bars(
        ax,
        ["no slow sockets", f"{part['slow_sockets']} slow sockets"],
        [part["no_slow_accepted_per_s"]["median"], part["slow_accepted_per_s"]["median"]],
        [CEILING, MEASURED],
        "accepted POST /events/s (median)",
    )
    ax.set_title(
        f"Events API with slow clients (ratio {part['ratio']['median']:.2f}, "
        f"n={part['trials_each']})",
        fontsize=10,
    )


def _store(ax: Axes, part: dict[str, Any]) -> None:
    queries = {
        name: q["ms"]["median"]
        for name, q in (part.get("queries") or {}).items()
        if (q.get("ms") or {}).get("n")
    }
    labels = [name.replace("_", "\n", 1) for name in queries]
    _bars(ax, labels, list(queries.values()), [MEASURED] * len(queries), "median ms")
    target_ms = (part.get("targets") or {}).get("query_s", 1.0) * 1000
    ax.axhline(target_ms, color=CEILING, linestyle="--", linewidth=1)
    ax.tick_params(axis="x", labelsize=6)
    ax.set_title(f"Store at {part['readings']:,} readings (dashed: target)", fontsize=10)


def _connect(ax: Axes, part: dict[str, Any]) -> None:
    hw, cn = part["headwater"], part["connect"]
    _bars(
        ax,
        [
            "consumer\nsustained",
            "Connect\nsustained",
            "consumer\nwith start",
            "Connect\nwith start",
        ],
        [
            hw["sustained_docs_per_s"]["median"],
            cn["sustained_docs_per_s"]["median"],
            hw["including_start_docs_per_s"]["median"],
            cn["including_start_docs_per_s"]["median"],
        ],
        [MEASURED, CEILING, MEASURED, CEILING],
        "documents/s (median)",
    )
    sustained = part["ratio"]["sustained_docs_per_s"]
    mark = ", UNRELIABLE" if sustained["unreliable"] else ""
    ax.set_title(
        f"Consumer vs Kafka Connect's MongoDB sink (ratio {sustained['median']:.2f}{mark}, "
        f"n={sustained['n']})",
        fontsize=10,
    )


def write_chart(result: dict[str, Any], path: Path) -> None:
    """Draw every part present in `result` into one PNG at `path`."""
    panels = [
        (key, draw)
        for key, draw in (
            ("consumer", _consumer),
            ("producer", _producer),
            ("end_to_end", _end_to_end),
            ("flask", _flask),
            ("slow_clients", _slow_clients),
            ("store", _store),
            ("connect", _connect),
        )
        if result.get(key) and "error" not in result[key]
    ]
    if not panels:
        return
    cols = 2 if len(panels) > 1 else 1
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6.5 * cols, 4.2 * rows), squeeze=False)
    flat = [ax for row in axes for ax in row]
    for ax, (key, draw) in zip(flat, panels, strict=False):
        draw(ax, result[key])
    for ax in flat[len(panels) :]:
        ax.set_visible(False)
    machine = result.get("machine") or {}
    fig.suptitle(
        f"Headwater bench {result.get('started_at', '')[:16]}  ·  {machine.get('cores')} cores, "
        f"{machine.get('ram_gib')} GiB, {machine.get('cpu_model') or 'unknown CPU'}",
        fontsize=10,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
