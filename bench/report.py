"""The bench report: the summary rows of each part and the table printed at the end (pure)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

HEADERS = ("part", "figure", "measured", "ceiling (same run)", "ratio")
Row = tuple[str, str, str, str, str]


def fmt_rate(value: float | None) -> str:
    """A rate with thousands separators, '-' when missing."""
    return "-" if value is None else f"{value:,.0f}"


def fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def fmt_latencies(
    summary: dict[str, Any] | None, keys: Sequence[str] = ("p50", "p95", "p99")
) -> str:
    """'p50 / p95 / p99' milliseconds of a latency summary, '-' when nothing was measured."""
    if not summary or not summary.get("n"):
        return "-"
    return " / ".join(f"{summary[f'{k}_ms']:,.0f}" for k in keys)


def fmt_pairs(pairs: dict[str, Any] | None, fallback: float | None) -> str:
    """A paired ratio as 'median (min-max)', marked UNRELIABLE past its spread bound; a result
    without pairs (an older run) shows its single ratio."""
    if not pairs:
        return fmt_ratio(fallback)
    text = f"{pairs['median']:.3f} ({pairs['min']:.2f}-{pairs['max']:.2f})"
    return text + (" UNRELIABLE" if pairs.get("unreliable") else "")


def consumer_rows(part: dict[str, Any]) -> list[Row]:
    c = part["consumer"]
    return [
        (
            "consumer",
            "docs/s Kafka -> MongoDB (2 topics, ~1% invalid)",
            fmt_rate(c["sustained_docs_per_s"]),
            f"insert_many {fmt_rate(part['insert_many_docs_per_s'])}",
            fmt_pairs(part.get("consumer_vs_insert_many_pairs"), part["consumer_ratio"]),
        ),
        (
            "consumer",
            "  same docs, vs bulk_write upserts",
            fmt_rate(c["sustained_docs_per_s"]),
            f"bulk upsert {fmt_rate(part['bulk_upsert_docs_per_s'])}",
            fmt_pairs(part.get("consumer_vs_bulk_upsert_pairs"), part["consumer_vs_bulk_upsert"]),
        ),
    ] + [
        (
            "consumer",
            f"  consumer ÷ {name} (same trials)",
            fmt_rate(c["sustained_docs_per_s"]),
            f"{name} {fmt_rate(peer['sustained_docs_per_s'])}",
            fmt_pairs(peer["consumer_vs_arm_pairs"], None),
        )
        for name, peer in sorted((part.get("peers") or {}).items())
    ]


def producer_rows(part: dict[str, Any]) -> list[Row]:
    perf = part["perf_tool"]["records_per_s"]
    ceiling = f"perf tool {fmt_rate(perf)}"
    rows: list[Row] = [
        (
            "producer",
            "records/s pull + produce (acks=all, lz4)",
            fmt_rate(part["pipeline"]["records_per_s"]),
            ceiling,
            fmt_pairs(part.get("producer_ratio_pairs"), part["producer_ratio"]),
        ),
        (
            "producer",
            "  produce only (records in memory)",
            fmt_rate(part["produce_only"]["records_per_s"]),
            ceiling,
            fmt_pairs(part.get("produce_only_ratio_pairs"), part["produce_only_ratio"]),
        ),
        (
            "producer",
            "  pull only (stand-in HTTP)",
            fmt_rate(part["pull_only"]["records_per_s"]),
            "",
            "",
        ),
    ]
    if part.get("overlap_ratio") is not None:
        slower = min(part["pull_only"]["records_per_s"], part["produce_only"]["records_per_s"])
        rows.append(
            (
                "producer",
                "  pull + produce vs the slower half (pull and produce overlap)",
                fmt_rate(part["pipeline"]["records_per_s"]),
                f"slower half {fmt_rate(slower)}",
                fmt_pairs(part.get("overlap_ratio_pairs"), part["overlap_ratio"]),
            )
        )
    matched = part.get("perf_tool_matched")
    if matched:
        matched_ceiling = f"matched perf tool {fmt_rate(matched['records_per_s'])}"
        rows += [
            (
                "producer",
                "  pull + produce vs perf tool, real payloads + 1 MB batches",
                fmt_rate(part["pipeline"]["records_per_s"]),
                matched_ceiling,
                fmt_pairs(
                    part.get("producer_ratio_vs_matched_pairs"), part["producer_ratio_vs_matched"]
                ),
            ),
            (
                "producer",
                "  produce only vs the same",
                fmt_rate(part["produce_only"]["records_per_s"]),
                matched_ceiling,
                fmt_pairs(
                    part.get("produce_only_ratio_vs_matched_pairs"),
                    part["produce_only_ratio_vs_matched"],
                ),
            ),
        ]
    return rows


def end_to_end_rows(part: dict[str, Any]) -> list[Row]:
    return [
        (
            "end to end",
            "event time -> visible, p50/p95/p99 ms",
            fmt_latencies(part["event_to_visible"]),
            "",
            "",
        ),
        (
            "end to end",
            "  window end -> visible (Airflow + pull + consume)",
            fmt_latencies(part["window_end_to_visible"]),
            "",
            "",
        ),
        (
            "end to end",
            "  Kafka -> visible (consumer's share)",
            fmt_latencies(part["kafka_to_visible"]),
            "",
            "",
        ),
    ]


def flask_rows(part: dict[str, Any]) -> list[Row]:
    errors = sum(part["errors"].values())
    if "arms" in part:
        return flask_arm_rows(part)
    return [
        (
            "flask",
            f"accepted POST /events/s ({part['concurrency']} concurrent, {errors} errors)",
            fmt_rate(part["accepted_per_s"]),
            "",
            "",
        ),
        (
            "flask",
            "  201 latency p50/p95/p99 ms",
            fmt_latencies(part["latency_201"]),
            "",
            "",
        ),
    ] + [
        (
            "flask",
            f"  {label} p50/p95/p99 ms",
            fmt_latencies(part[key]),
            "",
            "",
        )
        for key, label in (
            ("server_201", "of which the server's own (Server-Timing)"),
            ("outside_201", "of which outside the server (client, socket, loop)"),
        )
        if (part.get(key) or {}).get("n")
    ]


def flask_arm_rows(part: dict[str, Any]) -> list[Row]:
    """The --flask-own-api figures: each arm's medians with their range."""
    rows: list[Row] = []
    for arm, figures in part["arms"].items():
        errors = sum(figures["errors"].values())
        fsyncs = figures.get("fsyncs_per_event")
        rows.append(
            (
                "flask",
                f"{arm}: accepted POST /events/s ({part['concurrency']} concurrent, "
                f"{errors} errors)",
                fmt_spread(figures["accepted_per_s"]),
                f"fsyncs/event {fmt_spread(fsyncs, '.3f')}",
                "",
            )
        )
        rows.append(
            (
                "flask",
                "  201 latency p50 / p99 ms",
                f"{fmt_spread(figures['p50_ms'], '.1f')} / {fmt_spread(figures['p99_ms'], '.1f')}",
                "",
                "",
            )
        )
    return rows


def fmt_spread(summary: dict[str, Any] | None, fmt: str = ",.0f") -> str:
    """'median (min-max, n=5)' of a spread summary, '-' when nothing was measured."""
    if not summary or not summary.get("n"):
        return "-"
    median, low, high = (format(summary[k], fmt) for k in ("median", "min", "max"))
    return f"{median} ({low}-{high}, n={summary['n']})"


def slow_clients_rows(part: dict[str, Any]) -> list[Row]:
    cutoffs = part.get("slow_cutoffs") or {}
    cut = ", ".join(f"{kind} {n}" for kind, n in sorted(cutoffs.items())) or "none"
    return [
        (
            "slow clients",
            f"accepted POST /events/s with {part['slow_sockets']} slow sockets",
            fmt_spread(part["slow_accepted_per_s"]),
            f"none open {fmt_spread(part['no_slow_accepted_per_s'])}",
            fmt_ratio(part.get("ratio_of_medians")),
        ),
        (
            "slow clients",
            "  with ÷ without, median of the interleaved pairs' ratios",
            fmt_spread(part["ratio"], ".3f"),
            "",
            "",
        ),
        ("slow clients", f"  slow sockets cut off: {cut}", "", "", ""),
    ]


def _verdict(value: str | None) -> str:
    return "-" if value in (None, "n/a") else str(value)


def _query_row(label: str, query: dict[str, Any], target: str) -> Row:
    measured = fmt_spread(query.get("ms"))
    if query.get("error"):
        measured = f"{measured}; {query['error'][:60]}" if query.get("ms") else query["error"][:70]
    return ("store", label, measured, target, _verdict(query.get("verdict")))


def store_rows(part: dict[str, Any]) -> list[Row]:
    targets = part.get("targets") or {}
    query_ms = f"target < {targets.get('query_s', 1.0) * 1000:,.0f} ms"
    at = f"{targets.get('at_docs', 0) / 1e6:g} M"
    rows: list[Row] = []
    load = part.get("load") or {}
    if load:
        measured = fmt_rate(load.get("docs_per_s"))
        if load.get("error"):
            measured = f"{measured}; {load['error'][:60]}"
        rows.append(
            (
                "store",
                f"load {part['readings']:,} readings (+ events, rejects, rollups), insert docs/s",
                measured,
                f"targets below are for {at}",
                "",
            )
        )
    queries = part.get("queries") or {}
    for name, query in queries.items():
        label = f"  {name} ({query.get('window') or 'one hour'}), ms"
        if name == "indexed_find":
            label = "  find device_id + ts >= last hour, ms"
        elif name == "count_by_device_hour":
            label = "  readings per device in one hour ($match + $group), ms"
        target = query_ms if query.get("verdict") != "n/a" else "-"
        rows.append(_query_row(label, query, target))
    group = part.get("unbounded_group")
    if group:
        if group.get("outcome"):
            ping = "yes" if group.get("ping_after") else "NO"
            measured = f"{group['outcome']} in {group['seconds']:.1f} s, ping after: {ping}"
        else:
            measured = group.get("error") or "-"
        rows.append(
            (
                "store",
                "  unbounded $group ($avg/$min/$max by device, sensor)",
                measured,
                f"answer or clean failure < {targets.get('group_timeout_s', 120):.0f} s, up",
                _verdict(group.get("verdict")),
            )
        )
        if group.get("error") and group.get("outcome"):
            rows.append(("store", f"    {group['error'][:90]}", "", "", ""))
    rss = part.get("rss") or {}
    if rss.get("heap_mib") is not None:
        peak, after = rss.get("peak_mib"), rss.get("after_mib")
        restarts = rss.get("server_restarts") or 0
        rows.append(
            (
                "store",
                "server RSS peak / after, MiB"
                + (
                    f" ({restarts} server restart{'s' if restarts > 1 else ''})" if restarts else ""
                ),
                f"{fmt_rate(peak)} / {fmt_rate(after)}",
                f"heap {rss['heap_mib']:,.0f} + overhead {rss['overhead_mib']:,.0f}",
                _verdict(rss.get("verdict")),
            )
        )
    ingest = part.get("ingest") or {}
    if ingest.get("ratio"):
        ratio_text = fmt_spread(ingest["ratio"], ".3f")
        rows.append(
            (
                "store",
                "consumer write path docs/s, readings' indexes vs only _id",
                fmt_spread(ingest["with_indexes_docs_per_s"]),
                f"only _id {fmt_rate(ingest['without_indexes_docs_per_s']['median'])}",
                fmt_ratio(ingest["ratio"]["median"]),
            )
        )
        rows.append(
            (
                "store",
                "  with ÷ without, median of interleaved trials (no Kafka)",
                ratio_text,
                f"target >= {ingest['target']:g}",
                _verdict(ingest.get("verdict")),
            )
        )
    elif ingest.get("error"):
        rows.append(
            ("store", "consumer write path, indexes vs only _id", ingest["error"][:70], "", "")
        )
    return rows


# sasl figure -> its row label; the first names what is compared, the others are indented under it.
SASL_LABELS = {
    "producer_records_per_s": "producer records/s, SASL/SCRAM-SHA-512 vs PLAINTEXT listener",
    "consumer_records_per_s": "  consumer records/s (batches committed)",
    "consumer_first_batch_ms": "  consumer subscribe -> first batch, ms",
    "connect_metadata_ms": "  fresh producer -> first metadata, ms",
    "connect_first_ack_ms": "  fresh producer -> first ack, ms",
}


def sasl_rows(part: dict[str, Any]) -> list[Row]:
    """SASL's figure beside PLAINTEXT's, both median (min-max) over the pairs, and the median of
    sasl ÷ plaintext per pair; for connecting, every client's percentiles too."""
    rows: list[Row] = []
    for figure, label in SASL_LABELS.items():
        compared = (part.get("figures") or {}).get(figure)
        if not compared:
            continue
        fmt = ",.0f" if figure.endswith("_per_s") else ",.1f"
        rows.append(
            (
                "sasl",
                label,
                fmt_spread(compared["sasl"], fmt),
                f"plaintext {fmt_spread(compared['plaintext'], fmt)}",
                fmt_ratio(compared["ratio"]["median"]),
            )
        )
        clients = compared.get("every_client")
        if clients:
            rows.append(
                (
                    "sasl",
                    "    every client, p50/p95/p99 ms",
                    fmt_latencies(clients["sasl"]),
                    f"plaintext {fmt_latencies(clients['plaintext'])}",
                    "",
                )
            )
    return rows


def fmt_checked_ratio(summary: dict[str, Any] | None) -> str:
    """The median of a ratio summary, marked when its trials spread beyond the limit."""
    if not summary or not summary.get("n"):
        return "-"
    text = fmt_ratio(summary["median"])
    return f"{text} UNRELIABLE" if summary.get("unreliable") else text


def _pair_spread(summary: dict[str, Any]) -> str:
    """'median (min-max, n=5), ±12 %' of the per-pair ratios."""
    return f"{fmt_spread(summary, '.3f')}, ±{summary['spread'] * 100:.0f} %"


def connect_rows(part: dict[str, Any]) -> list[Row]:
    """Headwater's consumer beside Kafka Connect's MongoDB sink on the same records: both rates,
    the ratio of each interleaved pair, and what each process cost."""
    hw, cn, ratios = part["headwater"], part["connect"], part["ratio"]
    sustained = ratios["sustained_docs_per_s"]
    with_start = ratios["including_start_docs_per_s"]
    costs = ("wall_s", "cpu_s", "peak_rss_mib")

    def cost(system: dict[str, Any]) -> str:
        return " / ".join(f"{system[k]['median']:,.1f}" for k in costs)

    load = part.get("load_average_at_start") or []
    return [
        (
            "connect",
            "docs/s sustained, consumer vs Kafka Connect's MongoDB sink",
            fmt_spread(hw["sustained_docs_per_s"]),
            f"Connect {fmt_spread(cn['sustained_docs_per_s'])}",
            fmt_checked_ratio(sustained),
        ),
        (
            "connect",
            f"  consumer ÷ Connect per pair, sustained (target >= {part['target']:g})",
            _pair_spread(sustained),
            "",
            "UNRELIABLE" if sustained["unreliable"] else part["verdict"],
        ),
        (
            "connect",
            "  docs/s including start-up (process start -> last doc)",
            fmt_spread(hw["including_start_docs_per_s"]),
            f"Connect {fmt_spread(cn['including_start_docs_per_s'])}",
            fmt_checked_ratio(with_start),
        ),
        (
            "connect",
            "  consumer ÷ Connect per pair, including start-up",
            _pair_spread(with_start),
            "",
            "",
        ),
        (
            "connect",
            "  start-up s (process start -> first doc)",
            fmt_spread(hw["startup_s"], ".1f"),
            f"Connect {fmt_spread(cn['startup_s'], '.1f')}",
            "",
        ),
        (
            "connect",
            "  wall s / CPU s / peak RSS MiB, medians",
            cost(hw),
            f"Connect {cost(cn)}",
            "",
        ),
        (
            "connect",
            "  load average (1/5/15 min) when the part started",
            " / ".join(f"{x:.2f}" for x in load) or "-",
            "",
            "",
        ),
    ]


def archive_rows(part: dict[str, Any]) -> list[Row]:
    """Archive throughput against reading the same day (ceiling) and a JSON export (peer), and
    the size of the day in Parquet against BSON and JSON."""
    rates, cpu = part["docs_per_s"], part["cpu_s"]
    return [
        (
            "archive",
            f"docs/s, a day ({part['docs']:,} readings) to Parquet vs reading it",
            fmt_spread(rates["archive"]),
            f"read {fmt_spread(rates['read'])}",
            fmt_checked_ratio(part["archive_vs_read"]),
        ),
        (
            "archive",
            "  vs a mongoexport-style JSON export of it",
            "",
            f"json {fmt_spread(rates['json'])}",
            fmt_checked_ratio(part["archive_vs_json"]),
        ),
        (
            "archive",
            "  CPU s of this process: archive / read / json",
            " / ".join(f"{cpu[a]['median']:,.2f}" for a in ("archive", "read", "json")),
            "",
            "",
        ),
        (
            "archive",
            "bytes/doc, Parquet vs BSON (MongoDB, before compression and indexes)",
            f"{part['parquet_bytes_per_doc']:,.1f}",
            f"BSON {part['bson_bytes_per_doc']:,.1f}",
            fmt_ratio(part["parquet_per_bson"]),
        ),
        (
            "archive",
            "  a 690,000-reading day, MiB: Parquet vs BSON; Parquet ÷ JSON export",
            f"{part['devices_day_parquet_mib']:,.1f}",
            f"BSON {part['devices_day_bson_mib']:,.1f}",
            fmt_ratio(part["parquet_per_json"]),
        ),
    ]


def summary_rows(result: dict[str, Any]) -> list[Row]:
    """The table rows of every part present in a bench result."""
    rows: list[Row] = []
    for key, build in (
        ("consumer", consumer_rows),
        ("producer", producer_rows),
        ("end_to_end", end_to_end_rows),
        ("flask", flask_rows),
        ("slow_clients", slow_clients_rows),
        ("store", store_rows),
        ("sasl", sasl_rows),
        ("connect", connect_rows),
        ("archive", archive_rows),
    ):
        part = result.get(key)
        if part and "error" not in part:
            rows.extend(build(part))
    return rows


def format_table(
    rows: Sequence[Sequence[str]], headers: Sequence[str] = HEADERS, markdown: bool = False
) -> str:
    """Rows as an aligned text table (or a Markdown table); the first two columns left-aligned."""
    for row in rows:
        if len(row) != len(headers):
            raise ValueError(f"row has {len(row)} cells, headers have {len(headers)}: {row}")
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        padded = [
            str(c).ljust(w) if i < 2 else str(c).rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return ("| " + " | ".join(padded) + " |") if markdown else "  ".join(padded).rstrip()

    if markdown:
        rule = (
            "|"
            + "|".join(
                ("-" * (w + 2)) if i < 2 else ("-" * (w + 1) + ":") for i, w in enumerate(widths)
            )
            + "|"
        )
    else:
        rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])


def headline(result: dict[str, Any]) -> dict[str, float | None]:
    """The two ratios the result leads with (None for a part that did not run)."""
    consumer = result.get("consumer") or {}
    producer = result.get("producer") or {}
    return {
        "consumer_ratio": consumer.get("consumer_ratio"),
        "producer_ratio": producer.get("producer_ratio"),
    }
