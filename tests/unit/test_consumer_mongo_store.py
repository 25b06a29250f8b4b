"""The MongoDB adapter's decisions, on an in-memory collection: retry, refuse for good, or raise."""

from __future__ import annotations

from typing import Any

import bson
import pytest
from pymongo.errors import (
    AutoReconnect,
    BulkWriteError,
    OperationFailure,
    ServerSelectionTimeoutError,
)

from consumer.mongo_store import MongoStore, StoreUnavailable, is_transient
from consumer.pipeline import WritePlan


class FakeCollection:
    def __init__(self, fail: Exception | None = None) -> None:
        self.fail = fail
        self.docs: dict[str, dict[str, Any]] = {}

    def bulk_write(self, ops: list[Any], ordered: bool) -> None:
        assert ordered is False
        if self.fail is not None:
            raise self.fail
        for op in ops:
            bson.encode(op._doc)  # what the driver does before sending
        for op in ops:
            self.docs[op._filter["_id"]] = op._doc


class FakeDatabase(dict):
    def __missing__(self, name: str) -> FakeCollection:
        self[name] = FakeCollection()
        return self[name]


def plan(**docs: dict[str, Any]) -> WritePlan:
    p = WritePlan()
    p.upserts["readings"] = dict(docs)
    return p


def test_a_document_the_driver_cannot_encode_is_refused_and_the_others_written() -> None:
    db = FakeDatabase()
    refused = MongoStore(db).write(plan(a={"v": 1}, b={"p": {"x\x00y": 1}}, c={"v": 3}))  # type: ignore[arg-type]
    assert list(refused) == [("readings", "b")]
    assert refused[("readings", "b")].startswith("not storable as BSON: ")
    assert sorted(db["readings"].docs) == ["a", "c"]


def test_server_refusals_are_mapped_to_their_documents() -> None:
    error = BulkWriteError(
        {"writeErrors": [{"index": 1, "code": 121, "errmsg": "Document failed validation"}]}
    )
    db = FakeDatabase(readings=FakeCollection(fail=error))
    refused = MongoStore(db).write(plan(a={}, b={}, c={}))  # type: ignore[arg-type]
    assert refused == {("readings", "b"): "Document failed validation (code 121)"}


@pytest.mark.parametrize(
    "error",
    [
        ServerSelectionTimeoutError("connection refused"),
        AutoReconnect("connection closed"),
        BulkWriteError({"writeErrors": [{"index": 0, "code": 11600, "errmsg": "shutdown"}]}),
        BulkWriteError({"writeErrors": [], "writeConcernErrors": [{"code": 64}]}),
        OperationFailure("primary stepped down", code=189),
    ],
)
def test_unavailability_is_a_retry_signal(error: Exception) -> None:
    db = FakeDatabase(readings=FakeCollection(fail=error))
    with pytest.raises(StoreUnavailable):
        MongoStore(db).write(plan(a={}))  # type: ignore[arg-type]


def test_other_server_errors_are_not_retried_forever() -> None:
    error = OperationFailure("not authorized", code=13)
    assert not is_transient(error)
    db = FakeDatabase(readings=FakeCollection(fail=error))
    with pytest.raises(OperationFailure):
        MongoStore(db).write(plan(a={}))  # type: ignore[arg-type]


def test_rejections_are_inserted_once_and_never_replaced() -> None:
    db = FakeDatabase()
    p = WritePlan()
    p.rejections["t|0|1"] = {"reason": "x"}
    MongoStore(db).write(p)  # type: ignore[arg-type]
    assert db["rejected"].docs["t|0|1"] == {"$setOnInsert": {"reason": "x"}}


def test_an_integer_beyond_64_bits_in_free_form_properties_is_refused_not_fatal() -> None:
    db = FakeDatabase()
    refused = MongoStore(db).write(plan(a={"properties": {"n": 2**70}}, b={"v": 1}))  # type: ignore[arg-type]
    assert list(refused) == [("readings", "a")]
    assert sorted(db["readings"].docs) == ["b"]
