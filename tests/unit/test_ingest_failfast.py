"""A source's refusal fails an ingest task at once; transient failures keep Airflow's retries."""

from __future__ import annotations

import pytest
from airflow.sdk.exceptions import AirflowFailException
from airflow.sdk.execution_time import task_runner

from headwater.airflow_errors import fail_without_retry
from producer.pull import SourceError, SourceUnavailable

REFUSAL = "http://127.0.0.1:5001/parcel-scans {'since': 'x'}: HTTP 400: {\"error\": \"bad\"}"


def test_a_source_error_becomes_a_fail_exception_carrying_the_answer() -> None:
    with pytest.raises(AirflowFailException) as raised, fail_without_retry(SourceError):
        raise SourceError(REFUSAL)
    assert str(raised.value) == REFUSAL
    assert isinstance(raised.value.__cause__, SourceError)


@pytest.mark.parametrize(
    "error",
    [SourceUnavailable("gave up after 6 attempts (HTTP 503)"), TimeoutError("read timed out")],
)
def test_transient_errors_pass_through_unchanged(error: Exception) -> None:
    with pytest.raises(type(error)) as raised, fail_without_retry(SourceError):
        raise error
    assert raised.value is error


def test_no_error_is_no_exception() -> None:
    with fail_without_retry(SourceError):
        result = 1
    assert result == 1


def test_the_task_runner_fails_this_exception_without_retrying() -> None:
    # The spelling raised must be the class the Task SDK's runner treats as "no retries".
    assert task_runner.AirflowFailException is AirflowFailException
