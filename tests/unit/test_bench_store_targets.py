"""The store bench's targets and how each figure is judged."""

from __future__ import annotations

import pytest
from pymongo.errors import AutoReconnect, ExecutionTimeout, NetworkTimeout, OperationFailure

from bench.store_targets import (
    CONNECTION_LOST,
    FAILED,
    MET,
    MISSED,
    NOT_MEASURED,
    RSS_OVERHEAD_MIB,
    TIMED_OUT,
    failure_kind,
    group_verdict,
    ingest_verdict,
    parse_heap_mib,
    query_verdict,
    rss_limit_mib,
    rss_verdict,
)


@pytest.mark.parametrize(
    ("heap", "mib"),
    [("768m", 768), ("768M", 768), ("2g", 2048), ("1048576k", 1024), (str(512 * 1024**2), 512)],
)
def test_heap_sizes_read_as_the_jvm_reads_xmx(heap, mib):
    assert parse_heap_mib(heap) == mib


@pytest.mark.parametrize("heap", ["", "768 MiB", "-1g", "1.5g"])
def test_a_heap_size_the_jvm_would_not_take_is_refused(heap):
    with pytest.raises(ValueError, match="heap"):
        parse_heap_mib(heap)


def test_a_query_meets_its_target_only_below_one_second():
    assert query_verdict(0.999) == MET
    assert query_verdict(1.0) == MISSED
    assert query_verdict(None) == NOT_MEASURED


def test_the_unbounded_group_may_fail_but_only_cleanly_in_time_with_the_server_up():
    assert group_verdict("answered", 30.0, ping_ok=True) == MET
    assert group_verdict(FAILED, 2.0, ping_ok=True) == MET
    assert group_verdict(FAILED, 2.0, ping_ok=False) == MISSED
    assert group_verdict(TIMED_OUT, 120.0, ping_ok=True) == MISSED
    assert group_verdict(CONNECTION_LOST, 5.0, ping_ok=True) == MISSED
    assert group_verdict("answered", 121.0, ping_ok=True) == MISSED
    assert group_verdict(None, None, ping_ok=True) == NOT_MEASURED


def test_rss_may_exceed_the_heap_by_the_fixed_overhead_and_no_more():
    assert rss_limit_mib(768) == 768 + RSS_OVERHEAD_MIB
    assert rss_verdict(768 + RSS_OVERHEAD_MIB, 768) == MET
    assert rss_verdict(768 + RSS_OVERHEAD_MIB + 1, 768) == MISSED
    assert rss_verdict(None, 768) == NOT_MEASURED
    assert rss_verdict(500, None) == NOT_MEASURED


def test_ingest_with_indexes_must_keep_four_fifths_of_the_rate_without():
    assert ingest_verdict(0.8) == MET
    assert ingest_verdict(0.79) == MISSED
    assert ingest_verdict(None) == NOT_MEASURED


def test_a_servers_error_reply_is_a_clean_failure_a_timeout_or_lost_connection_is_not():
    assert failure_kind(OperationFailure("exceeded memory limit", code=146)) == FAILED
    assert failure_kind(ExecutionTimeout("operation exceeded time limit", code=50)) == FAILED
    assert failure_kind(NetworkTimeout("timed out")) == TIMED_OUT
    assert failure_kind(AutoReconnect("connection closed")) == CONNECTION_LOST
