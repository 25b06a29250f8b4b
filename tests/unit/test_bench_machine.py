"""Reading the machine description the bench records."""

from __future__ import annotations

import pytest

from bench.machine import (
    busy_fraction,
    kafka_version_from_jars,
    parse_cpu_model,
    parse_cpu_times,
    parse_java_version,
    parse_mem_total_gib,
)


def test_memory_is_memtotal_in_gib():
    assert parse_mem_total_gib("MemTotal:       25165824 kB\nMemFree: 1 kB\n") == 24.0
    assert parse_mem_total_gib("") is None


def test_cpu_model_is_the_first_model_name():
    cpuinfo = "processor\t: 0\nmodel name\t: AMD EPYC 7B13\nprocessor\t: 1\nmodel name\t: other\n"
    assert parse_cpu_model(cpuinfo) == "AMD EPYC 7B13"
    assert parse_cpu_model("processor: 0\n") is None


def test_java_version_comes_from_the_quoted_version():
    text = 'openjdk version "17.0.15" 2025-04-15\nOpenJDK Runtime Environment\n'
    assert parse_java_version(text) == "17.0.15"
    assert parse_java_version("java: command not found") is None


def test_kafka_version_comes_from_the_clients_jar():
    jars = ["kafka_2.13-4.3.1.jar", "kafka-clients-4.3.1.jar", "kafka-tools-4.3.1.jar"]
    assert kafka_version_from_jars(jars) == "4.3.1"
    assert kafka_version_from_jars(["zstd-jni-1.5.jar"]) is None


STAT_BEFORE = "cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 50 0 25 400 25 0 0 0 0 0\n"
STAT_AFTER = "cpu  250 0 100 900 50 0 0 0 0 0\ncpu0 125 0 50 450 25 0 0 0 0 0\n"


def test_cpu_times_are_busy_and_total_ticks_of_all_cores():
    assert parse_cpu_times(STAT_BEFORE) == (150, 1000)


def test_busy_fraction_is_busy_ticks_over_all_ticks_between_samples():
    before, after = parse_cpu_times(STAT_BEFORE), parse_cpu_times(STAT_AFTER)
    assert busy_fraction(before, after) == 200 / 300
    assert busy_fraction(before, before) == 0.0


def test_stat_without_the_cpu_line_is_an_error():
    with pytest.raises(ValueError):
        parse_cpu_times("intr 1 2 3\n")
