"""GET /stats: parameters checked into a 400 naming each bad one; aggregates combined exactly."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from producer.events.app import create_app

T1 = "2026-11-23T09:00:00Z"
T2 = "2026-11-23T09:05:00Z"


class FakeRollupReader:
    """1-minute windows in memory, filtered as the Mongo reader filters them."""

    def __init__(self, windows: list[dict[str, Any]]) -> None:
        self.rows = windows
        self.calls: list[tuple[str, list[str] | None, datetime, datetime]] = []

    def windows(
        self, sensor: str, device_ids: list[str] | None, start: datetime, end: datetime
    ) -> Iterable[Mapping[str, Any]]:
        self.calls.append((sensor, device_ids, start, end))
        return [
            w
            for w in self.rows
            if w["sensor"] == sensor
            and (device_ids is None or w["device_id"] in device_ids)
            and start <= w["start"] < end
        ]


def window(device: str, minute: int, count: int, total: float, low: float, high: float) -> dict:
    start = datetime.fromisoformat(f"2026-11-23T09:{minute:02d}:00+00:00")
    return {
        "device_id": device,
        "sensor": "temp",
        "start": start,
        "count": count,
        "sum": total,
        "min": low,
        "max": high,
    }


@pytest.fixture
def reader() -> FakeRollupReader:
    return FakeRollupReader(
        [
            window("d1", 0, 1, 10.0, 10.0, 10.0),
            window("d1", 4, 3, 6.0, 1.0, 3.0),
            window("d2", 1, 2, 40.0, 15.0, 25.0),
            window("d1", 5, 5, 500.0, 90.0, 110.0),  # starts at `to`: outside
        ]
    )


@pytest.fixture
def app(tmp_path: Path, reader: FakeRollupReader) -> Flask:
    return create_app(
        {"TESTING": True, "DATABASE": tmp_path / "events.db", "ROLLUP_READER": reader}
    )


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def stats(client: FlaskClient, **params: Any) -> Any:
    query = {"agg": "avg", "sensor": "temp", "from": T1, "to": T2} | params
    return client.get("/stats", query_string={k: v for k, v in query.items() if v is not None})


def fields(response: Any) -> set[str]:
    assert response.status_code == 400, response.get_json()
    body = response.get_json()
    assert body["error"] == "invalid_parameter"
    return {d["field"] for d in body["details"]}


def test_avg_is_total_sum_over_total_count(client: FlaskClient) -> None:
    body = stats(client, agg="avg", device_id=["d1"]).get_json()
    assert body == {
        "agg": "avg",
        "sensor": "temp",
        "from": "2026-11-23T09:00:00.000Z",
        "to": "2026-11-23T09:05:00.000Z",
        "device_ids": ["d1"],
        "value": 16.0 / 4,
        "count": 4,
    }


def test_every_device_counts_without_device_id(client: FlaskClient) -> None:
    answers = {agg: stats(client, agg=agg).get_json() for agg in ("avg", "min", "max", "count")}
    assert answers["avg"]["value"] == 56.0 / 6
    assert answers["min"]["value"] == 1.0
    assert answers["max"]["value"] == 25.0
    assert answers["count"]["value"] == 6
    assert {a["count"] for a in answers.values()} == {6}
    assert answers["avg"]["device_ids"] is None


def test_several_devices_are_combined(client: FlaskClient, reader: FakeRollupReader) -> None:
    body = stats(client, agg="max", device_id=["d1", "d2", "d1"]).get_json()
    assert (body["value"], body["count"], body["device_ids"]) == (25.0, 6, ["d1", "d2"])
    assert reader.calls[-1][1] == ["d1", "d2"]


def test_no_data_is_a_null_value_and_zero_count(client: FlaskClient) -> None:
    response = stats(client, sensor="pressure")
    assert response.status_code == 200
    assert (response.get_json()["value"], response.get_json()["count"]) == (None, 0)


@pytest.mark.parametrize(
    ("params", "bad"),
    [
        ({"agg": None}, {"agg"}),
        ({"agg": "median"}, {"agg"}),
        ({"sensor": None}, {"sensor"}),
        ({"sensor": " "}, {"sensor"}),
        ({"from": None}, {"from"}),
        ({"to": "yesterday"}, {"to"}),
        ({"from": "2026-11-23"}, {"from"}),
        ({"from": "2026-11-23T09:00:30Z"}, {"from"}),
        ({"to": "2026-11-23T09:05:00.001Z"}, {"to"}),
        ({"to": T1}, {"to"}),
        ({"from": T2, "to": T1}, {"to"}),
        ({"device_id": [""]}, {"device_id"}),
        ({"device": "d1"}, {"device"}),
        ({"agg": "mean", "sensor": None, "from": None}, {"agg", "sensor", "from"}),
    ],
)
def test_bad_parameters_are_named_in_a_400(
    client: FlaskClient, reader: FakeRollupReader, params: dict[str, Any], bad: set[str]
) -> None:
    assert fields(stats(client, **params)) == bad
    assert reader.calls == []


def test_a_repeated_single_parameter_is_refused(client: FlaskClient) -> None:
    response = client.get(f"/stats?agg=avg&agg=min&sensor=temp&from={T1}&to={T2}")
    assert fields(response) == {"agg"}


def test_offsets_are_converted_to_utc(client: FlaskClient, reader: FakeRollupReader) -> None:
    body = stats(client, **{"from": "2026-11-23T10:00:00+01:00", "to": "2026-11-23T09:05"})
    assert body.get_json()["from"] == "2026-11-23T09:00:00.000Z"
    assert reader.calls[-1][2:] == (
        datetime.fromisoformat(T1),
        datetime.fromisoformat(T2),
    )


def test_the_mongo_reader_is_not_built_before_the_first_request(tmp_path: Path) -> None:
    app = create_app({"TESTING": True, "DATABASE": tmp_path / "events.db"})
    assert "rollup_reader" not in app.extensions
    assert app.config["MONGO_DB"]
