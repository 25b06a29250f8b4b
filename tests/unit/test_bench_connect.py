"""The connect part's pure parts: the worker's and the sink's config, trial figures, summaries."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.chart import write_chart
from bench.connect_config import (
    CLIENT_PREFIXES,
    HOIST_KEY,
    KEY_ID_STRATEGY,
    REPLACE_ONE,
    STANDALONE_MAIN,
    ConnectRun,
    connector_properties,
    render_properties,
    worker_command,
    worker_properties,
)
from bench.connect_results import is_complete, summarise, trial_figures
from bench.measures import ratio_summary, relative_spread
from bench.process_usage import parse_vm_hwm_bytes
from bench.report import connect_rows, format_table, summary_rows
from headwater.settings import Settings, StackSettings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(stack=StackSettings(run_dir=tmp_path / "stack"))


@pytest.fixture
def run(tmp_path: Path) -> ConnectRun:
    return ConnectRun(
        name="bench-connect-1-cn0",
        collections={"bench-devices": "readings", "bench-events": "user_events"},
        database="bench_connect_1_cn0",
        dead_letter_topic="bench-connect-1-cn0-dlq",
        offsets_file=tmp_path / "offsets",
        rest_port=41555,
    )


# ---- the worker --------------------------------------------------------------------------------


def test_worker_logs_in_with_scram_as_the_admin_on_every_client_it_creates(settings, run):
    props = worker_properties(settings, run)
    user, password = settings.kafka.credentials("admin")
    # The task consumer, the dead-letter producer and its admin do not inherit the top level.
    for prefix in CLIENT_PREFIXES:
        assert props[f"{prefix}security.protocol"] == "SASL_PLAINTEXT"
        assert props[f"{prefix}sasl.mechanism"] == "SCRAM-SHA-512"
        jaas = props[f"{prefix}sasl.jaas.config"]
        assert f'username="{user}"' in jaas and f'password="{password}"' in jaas
        assert jaas.endswith(";")
    assert props["bootstrap.servers"] == settings.kafka.bootstrap_servers


def test_worker_is_standalone_with_a_file_offset_store_and_a_loopback_rest_port(settings, run):
    props = worker_properties(settings, run)
    assert props["offset.storage.file.filename"] == str(run.offsets_file)
    assert props["listeners"] == "http://127.0.0.1:41555"
    assert not any(k.startswith(("config.storage", "status.storage", "group.id")) for k in props)


def test_worker_polls_batches_as_large_as_the_consumers(settings, run):
    assert worker_properties(settings, run)["consumer.max.poll.records"] == "2000"


# ---- the sink ----------------------------------------------------------------------------------


def test_sink_takes_id_from_the_string_key_and_upserts_with_replace_one(settings, run):
    props = connector_properties(settings, run)
    assert props["key.converter"] == "org.apache.kafka.connect.storage.StringConverter"
    assert props["value.converter"] == "org.apache.kafka.connect.json.JsonConverter"
    assert props["value.converter.schemas.enable"] == "false"
    assert props["transforms"] == "hoistKey"
    assert props["transforms.hoistKey.type"] == HOIST_KEY
    assert props["transforms.hoistKey.field"] == "_id"
    assert props["document.id.strategy"] == KEY_ID_STRATEGY
    assert props["writemodel.strategy"] == REPLACE_ONE


def test_sink_tolerates_errors_into_a_dead_letter_topic_the_brokers_can_hold(settings, run):
    props = connector_properties(settings, run)
    assert props["errors.tolerance"] == "all"
    assert props["errors.deadletterqueue.topic.name"] == run.dead_letter_topic
    assert props["errors.deadletterqueue.topic.replication.factor"] == "2"


def test_sink_writes_each_topic_to_its_collection_of_the_trials_database(settings, run):
    props = connector_properties(settings, run)
    assert props["topics"] == "bench-devices,bench-events"
    assert props["topic.override.bench-devices.collection"] == "readings"
    assert props["topic.override.bench-events.collection"] == "user_events"
    assert props["database"] == run.database
    assert props["connection.uri"] == settings.mongo.uri
    assert props["tasks.max"] == "1"


def test_sink_group_is_connects_name_for_the_connector(run):
    assert run.group == "connect-bench-connect-1-cn0"


def test_properties_text_is_one_line_each_with_backslashes_escaped():
    text = render_properties({"a": "x=y", "b": r"C:\dir", "t": HOIST_KEY})
    assert text == "a=x=y\nb=C:\\\\dir\nt=org.apache.kafka.connect.transforms.HoistField$Key\n"


def test_worker_command_runs_standalone_from_the_cached_jars_with_kafkas_heap(tmp_path):
    argv = worker_command(tmp_path / "libs", tmp_path / "log4j2", tmp_path / "w", tmp_path / "c")
    assert argv[0] == "java"
    assert "-Xms256m" in argv and "-Xmx2g" in argv
    assert argv[argv.index("-cp") + 1] == f"{tmp_path / 'libs'}/*"
    assert argv[-3:] == [STANDALONE_MAIN, str(tmp_path / "w"), str(tmp_path / "c")]


# ---- one trial ---------------------------------------------------------------------------------


def test_trial_leaves_start_up_out_of_the_sustained_rate():
    samples = [(0.0, 0), (4.0, 0), (5.0, 1000), (6.0, 3000), (7.0, 5000), (7.2, 5000)]
    figures = trial_figures(samples, cpu_s=3.5, peak_rss_mib=110.0)
    assert figures["sustained_docs_per_s"] == pytest.approx(2000.0)  # 4000 docs in 2 s
    assert figures["startup_s"] == 5.0
    # Start-up counted: process start -> the first sample with the final count.
    assert figures["wall_s"] == 7.0
    assert figures["including_start_docs_per_s"] == pytest.approx(5000 / 7.0)
    assert figures["docs"] == 5000
    assert (figures["cpu_s"], figures["peak_rss_mib"]) == (3.5, 110.0)


def test_trial_that_stored_nothing_is_an_error_not_a_zero_rate():
    with pytest.raises(ValueError, match="no document"):
        trial_figures([(0.0, 0), (1.0, 0)], 0.1, 10.0)


def test_records_sent_to_the_dead_letter_topic_count_as_accounted_for():
    assert not is_complete(59_990, 60_000)
    assert is_complete(59_990, 60_000, dead_lettered=10)
    assert is_complete(60_000, 60_000)


def test_vm_hwm_is_read_from_proc_status_in_bytes():
    status = "Name:\tjava\nVmPeak:\t 9000 kB\nVmHWM:\t  1024 kB\nVmRSS:\t 512 kB\n"
    assert parse_vm_hwm_bytes(status) == 1024 * 1024
    assert parse_vm_hwm_bytes("Name:\tkthreadd\n") is None


# ---- spread and unreliable ratios ----------------------------------------------------------------


def test_relative_spread_is_the_farther_end_from_the_median():
    assert relative_spread([0.9, 1.0, 1.2]) == pytest.approx(0.2)
    assert relative_spread([0.7, 1.0, 1.05]) == pytest.approx(0.3)
    assert relative_spread([2.0]) == 0.0


def test_relative_spread_of_nothing_is_refused():
    with pytest.raises(ValueError):
        relative_spread([])


def test_ratio_within_15_percent_is_reliable_and_beyond_it_is_not():
    steady = ratio_summary([1.0, 1.05, 0.95, 1.1, 0.9])
    assert steady["median"] == 1.0 and steady["spread"] == pytest.approx(0.1)
    assert steady["unreliable"] is False
    shaky = ratio_summary([0.97, 1.07, 1.34, 1.0, 1.1])
    assert shaky["spread"] == pytest.approx(0.252, abs=1e-3)
    assert shaky["unreliable"] is True


def _trial(sustained: float, with_start: float, rss: float) -> dict[str, float]:
    return {
        "docs": 60_000.0,
        "sustained_docs_per_s": sustained,
        "including_start_docs_per_s": with_start,
        "startup_s": 2.0,
        "wall_s": 20.0,
        "cpu_s": 15.0,
        "peak_rss_mib": rss,
        "dead_lettered": 0.0,
    }


HEADWATER = [_trial(4500, 4000, 110), _trial(4600, 4100, 112), _trial(4400, 3900, 111)]
CONNECT = [_trial(4200, 2600, 1000), _trial(4000, 2500, 1100), _trial(4400, 2700, 950)]


def test_summary_pairs_each_headwater_trial_with_the_connect_trial_after_it():
    summary = summarise(HEADWATER, CONNECT)
    sustained = summary["ratio"]["sustained_docs_per_s"]
    # 4500/4200, 4600/4000, 4400/4400
    assert sustained["n"] == 3
    assert sustained["median"] == pytest.approx(4500 / 4200, abs=1e-3)
    assert sustained["max"] == pytest.approx(1.15)
    assert summary["headwater_vs_connect"] == sustained["median"]
    assert summary["headwater"]["peak_rss_mib"]["median"] == 111
    assert summary["connect"]["peak_rss_mib"]["max"] == 1100
    assert len(summary["trials"]) == 3
    assert summary["trials"][1]["connect"]["sustained_docs_per_s"] == 4000


def test_summary_judges_the_target_on_the_sustained_median():
    assert summarise(HEADWATER, CONNECT)["verdict"] == "missed"
    fast = [_trial(9000, 8000, 110)] * 3
    assert summarise(fast, CONNECT)["verdict"] == "met"


def test_summary_needs_as_many_trials_of_each():
    with pytest.raises(ValueError, match="same number"):
        summarise(HEADWATER, CONNECT[:2])
    with pytest.raises(ValueError):
        summarise([], [])


def test_table_marks_an_unreliable_ratio():
    part = {**summarise(HEADWATER, CONNECT), "load_average_at_start": [0.5, 0.4, 0.3]}
    part["ratio"]["sustained_docs_per_s"] = {
        **part["ratio"]["sustained_docs_per_s"],
        "spread": 0.3,
        "unreliable": True,
    }
    rows = connect_rows(part)
    assert rows[0][4].endswith("UNRELIABLE")
    assert rows[1][4] == "UNRELIABLE"
    assert "±30 %" in rows[1][2]
    assert rows[-1][2] == "0.50 / 0.40 / 0.30"
    table = format_table(summary_rows({"connect": part}))
    assert "Kafka Connect" in table and "peak RSS" in table


def test_table_gives_the_verdict_of_a_reliable_ratio():
    rows = connect_rows(summarise(HEADWATER, CONNECT))
    assert rows[1][4] == "missed"
    assert rows[0][4] == "1.071"
    assert rows[-1][2] == "-"


def test_chart_draws_the_connect_part(tmp_path):
    path = tmp_path / "chart.png"
    write_chart({"connect": summarise(HEADWATER, CONNECT)}, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
