"""Requests generated from the events API's OpenAPI document never get a 5xx or a non-JSON answer.

schemathesis reads GET /openapi.json from the app in-process (WSGI, no server) and sends valid and
invalid requests to every operation: bodies, parameters and headers, the API key included. The
seed is fixed and generation deterministic, so a failure found here is found again on every run.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from jsonschema import Draft202012Validator
from schemathesis.config import SchemathesisConfig

from producer.events.app import create_app

API_KEY = "fuzz-key"
SEED = 20261202
# Examples per operation in the fuzzing phase (the coverage phase adds its boundary cases).
MAX_EXAMPLES = 100


class EmptyRollupReader:
    """/stats reads no MongoDB here: every range is empty."""

    def windows(
        self, sensor: str, device_ids: list[str] | None, start: datetime, end: datetime
    ) -> Iterable[Mapping[str, Any]]:
        return []


@pytest.fixture
def api_schema(tmp_path: Path) -> Any:
    app = create_app(
        {
            "TESTING": True,
            "DATABASE": tmp_path / "events" / "events.db",
            "API_KEY": API_KEY,
            "BATCH_LIMIT": 5,
            "MAX_CONTENT_LENGTH": 64 * 1024,
            "ROLLUP_READER": EmptyRollupReader(),
            "CLOCK": lambda: datetime(2026, 11, 23, 9, 0, tzinfo=UTC),
        }
    )
    config = SchemathesisConfig.from_dict(
        {
            "seed": SEED,
            "generation": {
                "mode": "all",
                "max-examples": MAX_EXAMPLES,
                "deterministic": True,
                "database": "none",
            },
            "auth": {"openapi": {"ApiKey": {"api_key": API_KEY}}},
            "phases": {"stateful": {"enabled": False}},
        }
    )
    return schemathesis.openapi.from_wsgi("/openapi.json", app, config=config)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
def test_no_request_gets_a_5xx_and_every_answer_is_json(case: Any, api_schema: Any) -> None:
    response = case.call()
    sent = f"{case.method} {case.formatted_path} query={case.query} body={case.body!r}"[:2000]
    assert response.status_code < 500, f"{sent}\n-> {response.status_code} {response.text[:2000]}"
    content_type = response.headers.get("content-type", [""])[0]
    assert content_type.startswith("application/json"), (sent, content_type)
    if case.method.upper() == "HEAD":
        return  # the headers of the GET, without its body
    body = json.loads(response.content)
    if response.status_code >= 400:
        error_schema = api_schema.raw_schema["components"]["schemas"]["Error"]
        Draft202012Validator(error_schema).validate(body)
