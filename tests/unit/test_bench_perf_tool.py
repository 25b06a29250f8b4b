"""Kafka's ProducerPerformance: the command the bench runs and the summary it reads back."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.perf_tool import (
    MAIN_CLASS,
    PerfToolError,
    parse_summary,
    perf_tool_command,
    perf_tool_props,
    properties_text,
)

OUTPUT = """\
Option --producer-props has been deprecated and will be removed in a future version.
7624 records sent, 1494.3 records/sec (0.29 MB/sec), 918.7 ms avg latency, 3280.0 ms max latency.
50000 records sent, 4109.814236 records/sec (0.78 MB/sec), 3274.85 ms avg latency, \
4840.00 ms max latency, 3767 ms 50th, 4662 ms 95th, 4792 ms 99th, 4799 ms 99.9th.
"""

WITH_WARMUP = """\
In steady state.
60000 records sent, 6119.951040 records/sec (1.00 MB/sec), 2843.05 ms avg latency, \
3776.00 ms max latency, 3189 ms 50th, 3682 ms 95th, 3745 ms 99th, 3775 ms 99.9th.
50000 steady state records sent, 7716.049383 records/sec (1.27 MB/sec), 3187.58 ms avg \
latency, 3776.00 ms max latency, 3228 ms 50th, 3689 ms 95th, 3751 ms 99th, 3775 ms 99.9th.
"""


def test_summary_is_the_final_line_with_percentiles():
    summary = parse_summary(OUTPUT)
    assert summary.records == 50000
    assert summary.records_per_s == pytest.approx(4109.814236)
    assert summary.mb_per_s == 0.78
    assert summary.avg_latency_ms == 3274.85
    assert summary.max_latency_ms == 4840.0
    assert (summary.p50_ms, summary.p95_ms, summary.p99_ms, summary.p999_ms) == (
        3767.0,
        4662.0,
        4792.0,
        4799.0,
    )


def test_summary_covers_the_whole_run_not_the_steady_state_line():
    assert parse_summary(WITH_WARMUP).records == 60000


def test_output_without_a_summary_is_an_error_that_shows_the_tail():
    with pytest.raises(PerfToolError, match="no summary line"):
        parse_summary("Exception in thread main: broker not available\n")


def test_props_carry_what_decides_a_writes_cost_in_java_spelling():
    config = {
        "bootstrap.servers": "a:1,b:2",
        "acks": "all",
        "enable.idempotence": True,
        "compression.type": "lz4",
        "linger.ms": 20,
        "message.timeout.ms": 120_000,
    }
    assert perf_tool_props(config) == {
        "acks": "all",
        "enable.idempotence": "true",
        "compression.type": "lz4",
        "linger.ms": "20",
    }


def test_command_is_unthrottled_on_the_given_brokers_and_topic():
    argv = perf_tool_command(
        java="java",
        libs_dir=Path("/cache/kafka/libs"),
        bootstrap_servers="127.0.0.1:9092,127.0.0.1:9094",
        topic="bench-x",
        num_records=1000,
        props={"acks": "all", "compression.type": "lz4"},
        record_size=172,
    )
    assert argv[:5] == ["java", "-Xmx256m", "-cp", "/cache/kafka/libs/*", MAIN_CLASS]
    joined = " ".join(argv)
    assert "--bootstrap-server 127.0.0.1:9092,127.0.0.1:9094" in joined
    assert "--topic bench-x --num-records 1000 --record-size 172 --throughput -1" in joined
    assert argv[-3:] == ["--command-property", "acks=all", "compression.type=lz4"]


def test_command_takes_a_payload_file_instead_of_a_size():
    argv = perf_tool_command(
        java="java",
        libs_dir=Path("/libs"),
        bootstrap_servers="b:1",
        topic="t",
        num_records=5,
        props={},
        payload_file=Path("/tmp/values.txt"),
    )
    assert "--payload-file" in argv and "--record-size" not in argv


@pytest.mark.parametrize(
    ("record_size", "payload_file"), [(None, None), (100, Path("/tmp/values.txt"))]
)
def test_command_needs_exactly_one_payload_kind(record_size, payload_file):
    with pytest.raises(ValueError, match="exactly one"):
        perf_tool_command(
            java="java",
            libs_dir=Path("/libs"),
            bootstrap_servers="b:1",
            topic="t",
            num_records=5,
            props={},
            record_size=record_size,
            payload_file=payload_file,
        )


def test_a_jaas_config_goes_in_a_properties_file_verbatim_not_on_the_command_line():
    jaas = (
        "org.apache.kafka.common.security.scram.ScramLoginModule required "
        'username="u" password="p=1";'
    )
    text = properties_text({"sasl.mechanism": "SCRAM-SHA-512", "sasl.jaas.config": jaas})
    assert text == f"sasl.mechanism=SCRAM-SHA-512\nsasl.jaas.config={jaas}\n"
    argv = perf_tool_command(
        java="java",
        libs_dir=Path("/libs"),
        bootstrap_servers="b:1",
        topic="t",
        num_records=5,
        props={},
        record_size=10,
        config_file=Path("/tmp/producer.properties"),
    )
    assert argv[-2:] == ["--command-config", "/tmp/producer.properties"]
    assert "--command-property" not in argv
