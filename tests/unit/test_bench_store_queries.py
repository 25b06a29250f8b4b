"""What the store bench asks the server, and reading mongosh's timings back."""

from __future__ import annotations

from datetime import UTC, datetime

from bench.store_queries import (
    ANALYSES,
    ELAPSED_MARK,
    RUN_MARK,
    STOPPED_MARK,
    count_by_device,
    describe_output,
    device_since,
    hour_env,
    parse_shell_runs,
    unlisted_scripts,
)
from headwater.settings import REPO_ROOT

START = datetime(2026, 1, 4, 9, tzinfo=UTC)
END = datetime(2026, 1, 4, 10, tzinfo=UTC)


def test_every_shipped_analysis_is_known_to_the_bench():
    shipped = sorted(p.name for p in (REPO_ROOT / "db" / "queries").glob("*.js"))
    assert unlisted_scripts(shipped) == []
    assert {a.script for a in ANALYSES} <= set(shipped)


def test_an_unknown_script_is_listed_for_an_n_a_line():
    assert unlisted_scripts(["sensor_stats.js", "new_thing.js"]) == ["new_thing.js"]


def test_the_hour_is_passed_as_the_scripts_iso_bounds():
    assert hour_env(START, END) == {"FROM": "2026-01-04T09:00:00Z", "UNTIL": "2026-01-04T10:00:00Z"}


def test_count_by_device_ranges_ts_then_groups_by_device():
    match, group = count_by_device(START, END)
    assert match == {"$match": {"ts": {"$gte": START, "$lt": END}}}
    assert group["$group"]["_id"] == "$device_id"
    assert device_since("thermostat-000", START) == {
        "device_id": "thermostat-000",
        "ts": {"$gte": START},
    }


def test_shell_runs_read_back_each_runs_time_and_the_last_output():
    stdout = "\n".join(
        [
            f"{RUN_MARK}0",
            "[",
            '  {"a": 1}',
            "]",
            f"{ELAPSED_MARK}412",
            f"{RUN_MARK}1",
            '[{"a": 1}, {"a": 2}]',
            f"{ELAPSED_MARK}398",
            STOPPED_MARK,
        ]
    )
    runs = parse_shell_runs(stdout)
    assert runs.elapsed_ms == [412.0, 398.0]
    assert runs.last_output == '[{"a": 1}, {"a": 2}]'
    assert runs.stopped_early
    assert parse_shell_runs("").elapsed_ms == []


def test_an_answer_is_described_by_its_size():
    assert describe_output('[{"a": 1}, {"a": 2}]') == "2 items"
    assert describe_output('{"total": 12, "reasons": [1, 2, 3], "from": "x"}') == (
        "total=12, reasons=3"
    )
    assert describe_output("MongoServerError: boom") == "not JSON (22 chars)"
