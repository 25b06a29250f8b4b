"""The MongoDB adapter's decisions, on an in-memory collection: insert, replace, retry or refuse."""

from __future__ import annotations

from typing import Any

import bson
import pytest
from pymongo import ReplaceOne, UpdateOne
from pymongo.errors import (
    AutoReconnect,
    BulkWriteError,
    OperationFailure,
    ServerSelectionTimeoutError,
)

from consumer.mongo_store import (
    MongoStore,
    StoreUnavailable,
    WriteErrors,
    classify_write_errors,
    is_transient,
)
from consumer.pipeline import WritePlan


class FakeCollection:
    """Documents by _id, answering writes the way the server does (unordered, per-write errors)."""

    def __init__(self, *fail: Exception | None, refuse: set[str] | None = None) -> None:
        self.fail = list(fail)  # what the next writes raise, one each (None: write normally)
        self.refuse = refuse or set()  # _ids the server refuses for good (e.g. $jsonSchema)
        self.docs: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, list[str]]] = []

    def insert_many(self, documents: list[dict[str, Any]], ordered: bool) -> None:
        assert ordered is False
        self.calls.append(("insert", [d["_id"] for d in documents]))
        self._raise_scripted()
        for doc in documents:
            bson.encode(doc)  # what the driver does before sending
        errors = []
        for index, doc in enumerate(documents):
            if doc["_id"] in self.refuse:
                errors.append({"index": index, "code": 121, "errmsg": "Document failed validation"})
            elif doc["_id"] in self.docs:
                errors.append({"index": index, "code": 11000, "errmsg": "E11000 duplicate key"})
            else:
                self.docs[doc["_id"]] = dict(doc)
        self._raise_errors(errors)

    def bulk_write(self, ops: list[ReplaceOne | UpdateOne], ordered: bool) -> None:
        assert ordered is False
        kind = "replace" if all(isinstance(op, ReplaceOne) for op in ops) else "refresh"
        self.calls.append((kind, [op._filter["_id"] for op in ops]))
        self._raise_scripted()
        for op in ops:
            assert op._upsert is True
            bson.encode(op._doc)
        errors = []
        for index, op in enumerate(ops):
            doc_id = op._filter["_id"]
            if doc_id in self.refuse:
                errors.append({"index": index, "code": 121, "errmsg": "Document failed validation"})
            elif isinstance(op, ReplaceOne):
                self.docs[doc_id] = {"_id": doc_id, **op._doc}
            else:
                current = self.docs.get(doc_id)
                if current is None:
                    current = self.docs[doc_id] = {"_id": doc_id, **op._doc["$setOnInsert"]}
                current.update(op._doc["$set"])
        self._raise_errors(errors)

    def _raise_scripted(self) -> None:
        error = self.fail.pop(0) if self.fail else None
        if error is not None:
            raise error

    @staticmethod
    def _raise_errors(errors: list[dict[str, Any]]) -> None:
        if errors:
            raise BulkWriteError({"writeErrors": errors, "writeConcernErrors": []})


class FakeDatabase(dict):
    def __missing__(self, name: str) -> FakeCollection:
        self[name] = FakeCollection()
        return self[name]


def plan(**docs: dict[str, Any]) -> WritePlan:
    p = WritePlan()
    p.upserts["readings"] = dict(docs)
    return p


def test_new_documents_are_inserted_with_one_insert_many_and_no_upsert() -> None:
    db = FakeDatabase()
    assert MongoStore(db).write(plan(a={"v": 1}, b={"v": 2})) == {}  # type: ignore[arg-type]
    assert db["readings"].docs == {"a": {"_id": "a", "v": 1}, "b": {"_id": "b", "v": 2}}
    assert db["readings"].calls == [("insert", ["a", "b"])]


def test_only_documents_already_stored_fall_back_to_a_replace_and_end_as_the_latest() -> None:
    db = FakeDatabase()
    store = MongoStore(db)  # type: ignore[arg-type]
    store.write(plan(a={"v": 1}, b={"v": 1}))
    refused = store.write(plan(a={"v": 1}, c={"v": 3}, b={"v": 9}))
    assert refused == {}
    assert db["readings"].docs == {
        "a": {"_id": "a", "v": 1},
        "b": {"_id": "b", "v": 9},
        "c": {"_id": "c", "v": 3},
    }
    assert db["readings"].calls[1:] == [("insert", ["a", "c", "b"]), ("replace", ["a", "b"])]


def test_writing_a_plan_twice_leaves_the_same_documents() -> None:
    db = FakeDatabase()
    store = MongoStore(db)  # type: ignore[arg-type]
    p = plan(a={"v": 1}, b={"v": 2})
    store.write(p)
    before = {k: dict(v) for k, v in db["readings"].docs.items()}
    assert store.write(p) == {}
    assert db["readings"].docs == before


def test_a_document_the_driver_cannot_encode_is_refused_and_the_others_written() -> None:
    db = FakeDatabase()
    refused = MongoStore(db).write(plan(a={"v": 1}, b={"p": {"x\x00y": 1}}, c={"v": 3}))  # type: ignore[arg-type]
    assert list(refused) == [("readings", "b")]
    assert refused[("readings", "b")].startswith("not storable as BSON: ")
    assert sorted(db["readings"].docs) == ["a", "c"]


def test_server_refusals_are_mapped_to_their_documents() -> None:
    db = FakeDatabase(readings=FakeCollection(refuse={"b"}))
    refused = MongoStore(db).write(plan(a={}, b={}, c={}))  # type: ignore[arg-type]
    assert refused == {("readings", "b"): "Document failed validation (code 121)"}
    assert sorted(db["readings"].docs) == ["a", "c"]


def test_a_replacement_the_server_refuses_is_refused_and_the_rest_replaced() -> None:
    db = FakeDatabase()
    store = MongoStore(db)  # type: ignore[arg-type]
    store.write(plan(a={"v": 1}, b={"v": 1}))
    db["readings"].refuse = {"b"}
    refused = store.write(plan(a={"v": 2}, b={"v": 2}))
    assert refused == {("readings", "b"): "Document failed validation (code 121)"}
    assert db["readings"].docs["a"] == {"_id": "a", "v": 2}


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
    db = FakeDatabase(readings=FakeCollection(error))
    with pytest.raises(StoreUnavailable):
        MongoStore(db).write(plan(a={}))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "error",
    [
        AutoReconnect("connection closed"),
        # Another member upserted the same new _id at the same moment: the retry finds it.
        BulkWriteError({"writeErrors": [{"index": 0, "code": 11000, "errmsg": "E11000"}]}),
    ],
)
def test_unavailability_while_replacing_stored_documents_is_a_retry_signal(
    error: Exception,
) -> None:
    db = FakeDatabase()
    store = MongoStore(db)  # type: ignore[arg-type]
    store.write(plan(a={"v": 1}))
    db["readings"].fail = [None, error]
    with pytest.raises(StoreUnavailable):
        store.write(plan(a={"v": 2}, b={"v": 2}))
    assert db["readings"].calls[-1] == ("replace", ["a"])


def test_other_server_errors_are_not_retried_forever() -> None:
    error = OperationFailure("not authorized", code=13)
    assert not is_transient(error)
    db = FakeDatabase(readings=FakeCollection(error))
    with pytest.raises(OperationFailure):
        MongoStore(db).write(plan(a={}))  # type: ignore[arg-type]


def test_a_record_rejected_again_names_its_latest_position_and_keeps_its_first_time() -> None:
    db = FakeDatabase()
    store = MongoStore(db)  # type: ignore[arg-type]
    for offset in (1, 9):
        p = WritePlan()
        p.rejections["t|abc"] = {"reason": "r", "offset": offset, "rejected_at": f"t{offset}"}
        store.write(p)
    assert db["rejected"].docs == {
        "t|abc": {"_id": "t|abc", "reason": "r", "offset": 9, "rejected_at": "t1"}
    }
    assert [kind for kind, _ in db["rejected"].calls] == ["insert", "insert", "refresh"]


def test_an_integer_beyond_64_bits_in_free_form_properties_is_refused_not_fatal() -> None:
    db = FakeDatabase()
    refused = MongoStore(db).write(plan(a={"properties": {"n": 2**70}}, b={"v": 1}))  # type: ignore[arg-type]
    assert list(refused) == [("readings", "a")]
    assert sorted(db["readings"].docs) == ["b"]


def test_duplicate_keys_are_documents_already_stored_and_other_codes_are_refusals() -> None:
    details = {
        "writeErrors": [
            {"index": 0, "code": 11000, "errmsg": "E11000 duplicate key"},
            {"index": 2, "code": 121, "errmsg": "Document failed validation"},
            {"index": 3, "code": 11000, "errmsg": "E11000 duplicate key"},
        ],
        "writeConcernErrors": [],
    }
    errors = classify_write_errors(details, ["a", "b", "c", "d"])
    assert errors == WriteErrors(
        existing=["a", "d"], refused={"c": "Document failed validation (code 121)"}
    )


@pytest.mark.parametrize(
    "details",
    [
        {"writeErrors": [{"index": 1, "code": 11000}, {"index": 0, "code": 91, "errmsg": "down"}]},
        {"writeErrors": [], "writeConcernErrors": [{"code": 64, "errmsg": "timeout"}]},
    ],
)
def test_a_transient_error_in_a_bulk_means_retry_it_all(details: dict[str, Any]) -> None:
    errors = classify_write_errors(details, ["a", "b"])
    assert errors.retry
