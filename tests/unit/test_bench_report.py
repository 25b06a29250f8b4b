"""The bench's summary table."""

from __future__ import annotations

import pytest

from bench.report import (
    HEADERS,
    fmt_latencies,
    fmt_spread,
    format_table,
    headline,
    store_rows,
    summary_rows,
)

LAT = {"n": 10, "p50_ms": 1200.4, "p95_ms": 2500.0, "p99_ms": 3100.9, "mean_ms": 1, "max_ms": 4}
RESULT = {
    "consumer": {
        "insert_many_docs_per_s": 3000,
        "bulk_upsert_docs_per_s": 2500,
        "consumer": {"sustained_docs_per_s": 1500.0},
        "consumer_ratio": 0.5,
        "consumer_vs_bulk_upsert": 0.6,
    },
    "producer": {
        "pipeline": {"records_per_s": 5000.0},
        "produce_only": {"records_per_s": 12000.0},
        "pull_only": {"records_per_s": 20000.0},
        "perf_tool": {"records_per_s": 6000.0},
        "producer_ratio": 0.833,
        "produce_only_ratio": 2.0,
    },
    "end_to_end": {
        "event_to_visible": LAT,
        "window_end_to_visible": LAT,
        "kafka_to_visible": {"n": 0},
    },
    "flask": {
        "concurrency": 16,
        "errors": {"503": 2},
        "accepted_per_s": 200.0,
        "latency_201": LAT,
    },
}


def test_every_part_gets_rows_with_its_figure_and_ceiling():
    rows = summary_rows(RESULT)
    parts = [r[0] for r in rows]
    assert parts.count("consumer") == 2 and parts.count("flask") == 2
    first = rows[0]
    assert first[2:] == ("1,500", "insert_many 3,000", "0.500")
    producer = next(r for r in rows if r[0] == "producer")
    assert producer[2:] == ("5,000", "perf tool 6,000", "0.833")
    assert any("2 errors" in r[1] for r in rows)


def test_the_overlap_row_compares_pull_and_produce_with_the_slower_half():
    part = {**RESULT["producer"], "overlap_ratio": 0.417}
    rows = summary_rows({"producer": part})
    overlap = next(r for r in rows if "slower half" in r[1])
    assert overlap[2:] == ("5,000", "slower half 12,000", "0.417")
    # Results from before the overlap figure existed still print, without that row.
    assert not any("slower half" in r[1] for r in summary_rows({"producer": RESULT["producer"]}))


def test_a_failed_or_missing_part_is_left_out_of_the_table():
    rows = summary_rows({"consumer": {"error": "RuntimeError: boom"}, "flask": RESULT["flask"]})
    assert {r[0] for r in rows} == {"flask"}


def test_latencies_print_as_p50_p95_p99_milliseconds():
    assert fmt_latencies(LAT) == "1,200 / 2,500 / 3,101"
    assert fmt_latencies({"n": 0}) == "-"
    assert fmt_latencies(None) == "-"


def test_table_aligns_columns():
    text = format_table([("a", "bb", "1", "22", "0.5")], headers=("p", "f", "m", "c", "r"))
    lines = text.splitlines()
    assert len(lines) == 3
    assert lines[0].index("f") == lines[2].index("bb")
    # Figures are right-aligned under their header.
    assert lines[2].endswith("0.5")


def test_markdown_table_has_a_header_rule_with_right_aligned_figures():
    text = format_table(summary_rows(RESULT), markdown=True)
    lines = text.splitlines()
    assert lines[0].startswith("| part")
    assert lines[1].startswith("|---") and lines[1].endswith(":|")
    assert all(line.startswith("|") and line.endswith("|") for line in lines)


def test_a_row_of_the_wrong_width_is_refused():
    with pytest.raises(ValueError, match="cells"):
        format_table([("only", "two")], headers=HEADERS)


def test_headline_is_the_two_ratios_or_none():
    assert headline(RESULT) == {"consumer_ratio": 0.5, "producer_ratio": 0.833}
    assert headline({}) == {"consumer_ratio": None, "producer_ratio": None}


SPREAD = {"n": 5, "median": 412.0, "min": 398.0, "max": 455.5}
STORE = {
    "readings": 100_000,
    "targets": {"query_s": 1.0, "group_timeout_s": 120.0, "at_docs": 5_000_000},
    "load": {"docs_per_s": 3647, "error": None},
    "queries": {
        "sensor_stats": {"ms": SPREAD, "verdict": "met", "window": "one hour"},
        "latest_reading_per_device": {
            "ms": SPREAD,
            "verdict": "n/a",
            "window": "whole collection, no time bound",
        },
        "indexed_find": {"ms": None, "error": "server not answering for 180s", "verdict": "n/a"},
    },
    "unbounded_group": {
        "outcome": "failed",
        "seconds": 3.2,
        "ping_after": True,
        "error": "OperationFailure: exceeded the memory budget",
        "verdict": "met",
    },
    "rss": {
        "heap_mib": 768,
        "overhead_mib": 256,
        "peak_mib": 990.4,
        "after_mib": 950.0,
        "verdict": "met",
    },
    "ingest": {
        "ratio": {"n": 5, "median": 0.634, "min": 0.61, "max": 0.7},
        "with_indexes_docs_per_s": {"n": 5, "median": 3090, "min": 2550, "max": 3631},
        "without_indexes_docs_per_s": {"n": 5, "median": 4870, "min": 4118, "max": 5621},
        "target": 0.8,
        "verdict": "missed",
    },
}


def test_spreads_print_as_median_with_range_and_count():
    assert fmt_spread(SPREAD) == "412 (398-456, n=5)"
    assert fmt_spread({"n": 2, "median": 0.6336, "min": 0.6, "max": 0.7}, ".3f") == (
        "0.634 (0.600-0.700, n=2)"
    )
    assert fmt_spread(None) == "-"


def test_store_rows_print_each_figure_beside_its_target_and_verdict():
    rows = store_rows(STORE)
    assert all(r[0] == "store" for r in rows)
    by_label = {r[1].strip(): r for r in rows}
    sensor = next(r for label, r in by_label.items() if label.startswith("sensor_stats"))
    assert sensor[2:] == ("412 (398-456, n=5)", "target < 1,000 ms", "met")
    latest = next(r for label, r in by_label.items() if label.startswith("latest_reading"))
    assert latest[3:] == ("-", "-")
    find = next(r for label, r in by_label.items() if label.startswith("find"))
    assert "server not answering" in find[2]
    group = next(r for label, r in by_label.items() if label.startswith("unbounded"))
    assert group[2] == "failed in 3.2 s, ping after: yes" and group[4] == "met"
    assert any("memory budget" in r[1] for r in rows)
    rss = next(r for label, r in by_label.items() if label.startswith("server RSS"))
    assert rss[2:] == ("990 / 950", "heap 768 + overhead 256", "met")
    ratio = next(r for label, r in by_label.items() if "with ÷ without" in label)
    assert ratio[3:] == ("target >= 0.8", "missed")


def test_the_store_part_joins_the_summary_table():
    assert any(r[0] == "store" for r in summary_rows({**RESULT, "store": STORE}))


def test_a_paired_ratio_shows_its_spread_and_is_marked_unreliable_past_15_percent():
    from bench.measures import paired_ratios
    from bench.report import fmt_pairs

    steady = paired_ratios([90, 100, 95, 92, 96], [100, 100, 100, 100, 100])
    assert steady["median"] == 0.95 and steady["pairs"] == [0.9, 1.0, 0.95, 0.92, 0.96]
    assert not steady["unreliable"]
    assert fmt_pairs(steady, None) == "0.950 (0.90-1.00)"
    noisy = paired_ratios([50, 100, 95, 92, 96], [100, 100, 100, 100, 100])
    assert noisy["unreliable"] and noisy["spread"] > 0.15
    assert fmt_pairs(noisy, None).endswith("UNRELIABLE")
    # An older result without pairs keeps its single ratio.
    assert fmt_pairs(None, 0.5) == "0.500"


def test_each_consumer_peer_arm_gets_a_row_with_its_paired_ratio():
    pairs = {"median": 1.21, "min": 1.1, "max": 1.4, "unreliable": True}
    part = {
        **RESULT["consumer"],
        "peers": {"sequential": {"sustained_docs_per_s": 1240.0, "consumer_vs_arm_pairs": pairs}},
    }
    rows = [r for r in summary_rows({"consumer": part}) if "sequential" in r[1]]
    assert rows == [
        (
            "consumer",
            "  consumer ÷ sequential (same trials)",
            "1,500",
            "sequential 1,240",
            "1.210 (1.10-1.40) UNRELIABLE",
        )
    ]


def test_producer_ratios_print_with_their_rounds_spread():
    pairs = {"median": 0.9, "min": 0.8, "max": 1.2, "unreliable": True}
    part = {**RESULT["producer"], "producer_ratio_pairs": pairs}
    row = next(r for r in summary_rows({"producer": part}) if r[1].startswith("records/s pull"))
    assert row[4] == "0.900 (0.80-1.20) UNRELIABLE"


def test_the_flask_latency_is_split_into_server_and_outside_when_measured():
    part = {**RESULT["flask"], "server_201": LAT, "outside_201": {"n": 0}}
    labels = [r[1] for r in summary_rows({"flask": part})]
    assert "  of which the server's own (Server-Timing) p50/p95/p99 ms" in labels
    assert not any("outside the server" in label for label in labels)  # nothing measured


def _spread(median: float) -> dict:
    return {"n": 5, "median": median, "min": median * 0.9, "max": median * 1.1}


def test_archive_rows_compare_with_reading_and_json_and_give_sizes():
    from bench.report import archive_rows

    part = {
        "docs": 200_000,
        "docs_per_s": {"archive": _spread(9000), "read": _spread(20000), "json": _spread(7000)},
        "cpu_s": {"archive": _spread(20.0), "read": _spread(8.0), "json": _spread(25.0)},
        "archive_vs_read": {"n": 5, "median": 0.45, "min": 0.3, "max": 0.6, "unreliable": True},
        "archive_vs_json": {"n": 5, "median": 1.3, "min": 1.25, "max": 1.35, "unreliable": False},
        "parquet_bytes_per_doc": 9.5,
        "bson_bytes_per_doc": 251.0,
        "parquet_per_bson": 0.0378,
        "parquet_per_json": 0.03,
        "devices_day_parquet_mib": 6.3,
        "devices_day_bson_mib": 165.2,
    }
    rows = archive_rows(part)
    assert all(len(r) == len(HEADERS) for r in rows)
    assert rows[0][2:] == (
        "9,000 (8,100-9,900, n=5)",
        "read 20,000 (18,000-22,000, n=5)",
        "0.450 UNRELIABLE",
    )
    assert rows[1][4] == "1.300"
    assert rows[3][2:] == ("9.5", "BSON 251.0", "0.038")
    assert "archive" in [r[0] for r in summary_rows({"archive": part})]
