"""The bench's summary table."""

from __future__ import annotations

import pytest

from bench.report import HEADERS, fmt_latencies, format_table, headline, summary_rows

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
