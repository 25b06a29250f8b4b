"""The consumer's start-up bootstrap waits out MongoDB with backoff and gives way to a stop."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from pymongo.errors import AutoReconnect, OperationFailure

from consumer.bootstrap import ensure_database


class FakeCollection:
    def create_index(self, keys: Any, **options: Any) -> str:
        return str(options.get("name"))


class FakeDb:
    """A database that is unreachable for the first `failures` calls, then empty and willing."""

    name = "headwater_test"

    def __init__(self, failures: int, error: Exception | None = None) -> None:
        self.failures = failures
        self.error = error or AutoReconnect("connection refused")
        self.calls = 0
        self.on_failure: Any = None

    def list_collection_names(self) -> list[str]:
        self.calls += 1
        if self.calls <= self.failures:
            if self.on_failure is not None:
                self.on_failure()
            raise self.error
        return []

    def create_collection(self, name: str, **options: Any) -> None:
        return None

    def __getitem__(self, name: str) -> FakeCollection:
        return FakeCollection()


def _consumer(db: FakeDb) -> Any:
    config = SimpleNamespace(mongo_db=db.name, backoff_initial_s=0.01, backoff_max_s=0.02)
    service = SimpleNamespace(stopping=False, state=SimpleNamespace(store_ok=True))
    return SimpleNamespace(config=config, service=service, client={db.name: db}, server=None)


def test_mongo_away_is_retried_until_the_bootstrap_succeeds() -> None:
    db = FakeDb(failures=2)
    consumer = _consumer(db)
    assert ensure_database(consumer) is True
    assert db.calls == 3
    assert consumer.service.state.store_ok is True


def test_a_stop_while_mongo_is_away_ends_the_wait_without_another_attempt() -> None:
    db = FakeDb(failures=100)
    consumer = _consumer(db)

    def stop() -> None:
        consumer.service.stopping = True

    db.on_failure = stop
    assert ensure_database(consumer) is False
    assert db.calls == 1
    assert consumer.service.state.store_ok is False  # /healthz says MongoDB is unavailable


def test_a_stop_before_start_makes_no_attempt() -> None:
    db = FakeDb(failures=0)
    consumer = _consumer(db)
    consumer.service.stopping = True
    assert ensure_database(consumer) is False
    assert db.calls == 0


def test_an_error_that_is_not_transient_is_raised_at_once() -> None:
    db = FakeDb(failures=5, error=OperationFailure("not authorized", code=13))
    with pytest.raises(OperationFailure, match="not authorized"):
        ensure_database(_consumer(db))
    assert db.calls == 1
