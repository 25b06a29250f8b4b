"""How a task's errors end it in Airflow: a permanent one fails it at once, the rest retry.

Airflow is imported only when an error is mapped, so the services can import this freely.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def fail_without_retry(*permanent: type[BaseException]) -> Iterator[None]:
    """Re-raise `permanent` errors as AirflowFailException (same message); others pass through."""
    try:
        yield
    except permanent as exc:
        # Airflow 3 deprecates airflow.exceptions' spelling; the Task SDK's runner catches this
        # one and sets the task failed without spending its retries.
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException(str(exc)) from exc
