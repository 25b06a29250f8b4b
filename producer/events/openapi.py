"""The events API's OpenAPI 3.1 document, built from the rules the routes check, and its route.

Patterns, lengths and limits come from the same places the routes read them (rules.py for the
fields the user-events declaration carries, validation.py, query.py, stats.py and the app's
config for the rest), so the document cannot drift from what the API accepts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Response, current_app, jsonify

from headwater.declarations import KEY_RULE, MAX_DEPTH
from producer.events import stats
from producer.events.ingest import API_KEY_HEADER, IDEMPOTENCY_HEADER, IDEMPOTENCY_KEY_MAX
from producer.events.rules import TextRule
from producer.events.validation import MAX_PROPERTIES_BYTES, MAX_PROPERTY_KEYS, RULES

bp = Blueprint("openapi", __name__)

PATH = "/openapi.json"
OPENAPI_VERSION = "3.1.0"
# A properties key: not empty, not starting with '$', no '.' (headwater.declarations.KEY_RULE).
KEY_PATTERN = r"^[^$.][^.]*$"
_UNBOUNDED = 2**31


@dataclass(frozen=True)
class ApiLimits:
    """The limits an app is configured with (create_app's config)."""

    batch_limit: int
    max_body_bytes: int
    page_size: int
    max_page_size: int

    @classmethod
    def of(cls, config: Any) -> ApiLimits:
        """The limits of a Flask app's config."""
        return cls(
            batch_limit=config["BATCH_LIMIT"],
            max_body_bytes=config["MAX_CONTENT_LENGTH"],
            page_size=config["PAGE_SIZE"],
            max_page_size=config["MAX_PAGE_SIZE"],
        )


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _text(rule: TextRule, description: str) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string", "description": description}
    if rule.min_length > 0:
        schema["minLength"] = rule.min_length
    if rule.max_length < _UNBOUNDED:
        schema["maxLength"] = rule.max_length
    schema["pattern"] = rule.pattern_text
    return schema


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(_ref("Error"), description)


def _schemas(limits: ApiLimits) -> dict[str, Any]:
    instant = {"type": "string", "format": "date-time"}
    return {
        "Error": {
            "type": "object",
            "description": "Every error answer, the server's own (414, 431, ...) included.",
            "required": ["error", "details"],
            "additionalProperties": False,
            "properties": {
                "error": {"type": "string", "description": "A code, e.g. invalid_event"},
                "details": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["field", "problem"],
                        "additionalProperties": False,
                        "properties": {
                            "field": {
                                "type": "string",
                                "description": "e.g. user_id, events[3].properties.n, X-API-Key",
                            },
                            "problem": {"type": "string"},
                        },
                    },
                },
            },
        },
        "PropertyValue": {
            "description": (
                f"Any JSON value; object keys at any depth {KEY_RULE}, at most {MAX_DEPTH} levels"
                " deep, numbers finite, text valid Unicode."
            ),
            "anyOf": [
                {"type": ["string", "number", "boolean", "null"]},
                {"type": "array", "items": _ref("PropertyValue")},
                {
                    "type": "object",
                    "propertyNames": {"pattern": KEY_PATTERN},
                    "additionalProperties": _ref("PropertyValue"),
                },
            ],
        },
        "Properties": {
            "type": ["object", "null"],
            "description": (
                f"At most {MAX_PROPERTY_KEYS} keys and {MAX_PROPERTIES_BYTES} bytes as compact"
                f" JSON; keys at any depth {KEY_RULE}."
            ),
            "maxProperties": MAX_PROPERTY_KEYS,
            "propertyNames": {"pattern": KEY_PATTERN},
            "additionalProperties": _ref("PropertyValue"),
        },
        "NewEvent": {
            "type": "object",
            "required": ["user_id", "event_type"],
            "additionalProperties": False,
            "properties": {
                "user_id": _text(RULES.user_id, "Who did it"),
                "event_type": _text(RULES.event_type, "What they did, lower case"),
                "occurred_at": {
                    "type": ["string", "null"],
                    "format": "date-time",
                    "description": (
                        "ISO-8601 with a time zone, at most"
                        f" {RULES.max_future.total_seconds():g} s ahead of the server's clock"
                    ),
                },
                "properties": _ref("Properties"),
            },
        },
        "Event": {
            "type": "object",
            "required": [
                "event_id",
                "user_id",
                "event_type",
                "occurred_at",
                "properties",
                "received_at",
            ],
            "properties": {
                "event_id": _text(RULES.event_id, "Time-ordered id given by the server"),
                "user_id": {"type": "string"},
                "event_type": {"type": "string"},
                "occurred_at": {"type": ["string", "null"], "format": "date-time"},
                "properties": {"type": "object"},
                "received_at": {**instant, "description": "When the server stored it (UTC)"},
            },
        },
        "Batch": {
            "type": "object",
            "required": ["events"],
            "additionalProperties": False,
            "properties": {
                "events": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": limits.batch_limit,
                    "items": _ref("NewEvent"),
                }
            },
        },
    }


def _write(body: str, ok: dict[str, Any], limits: ApiLimits) -> dict[str, Any]:
    idempotency = {
        "name": IDEMPOTENCY_HEADER,
        "in": "header",
        "required": False,
        "description": (
            "The same key with the same body answers 200 with what was stored the first time;"
            " with another body, 409."
        ),
        "schema": {
            "type": "string",
            "minLength": 1,
            "maxLength": IDEMPOTENCY_KEY_MAX,
            "pattern": "^[ -~]+$",
        },
    }
    return {
        "security": [{"ApiKey": []}],
        "parameters": [idempotency],
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _ref(body)}},
        },
        "responses": {
            "201": ok,
            "200": {**ok, "description": "A replay of an Idempotency-Key: what it stored"},
            "400": _error("Malformed JSON, an invalid field or header (named in details)"),
            "401": _error(f"{API_KEY_HEADER} missing or wrong"),
            "409": _error(f"{IDEMPOTENCY_HEADER} already used with another body"),
            "413": _error(f"Body over {limits.max_body_bytes} bytes"),
            "415": _error("Content-Type is not JSON"),
            "503": _error("The database is unavailable: retry with the same Idempotency-Key"),
            "default": _error("Any other error"),
        },
    }


def _query(
    name: str, schema: dict[str, Any], description: str, required: bool = False
) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": required,
        "description": description,
        "schema": schema,
    }


def openapi_document(limits: ApiLimits) -> dict[str, Any]:
    """The OpenAPI 3.1 document of every route, for an app with these limits."""
    name = {"type": "string", "minLength": 1, "maxLength": stats.NAME_MAX}
    instant = {"type": "string", "format": "date-time"}
    bad_parameter = _error("A bad or unknown parameter (named in details)")
    one_event = _json(
        {"type": "object", "required": ["event"], "properties": {"event": _ref("Event")}},
        "The event as stored",
    )
    many = {"type": "array", "items": _ref("Event")}
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "Headwater user-events API",
            "version": "1",
            "description": "Users post events; the user-events ingest pulls them by receive time.",
        },
        "components": {
            "securitySchemes": {
                "ApiKey": {"type": "apiKey", "in": "header", "name": API_KEY_HEADER}
            },
            "schemas": _schemas(limits),
        },
        "paths": {
            "/events": {
                "post": {
                    "operationId": "postEvent",
                    "summary": "Store one event, on disk before the answer",
                    **_write("NewEvent", one_event, limits),
                },
                "get": {
                    "operationId": "listEvents",
                    "summary": "Events with since <= received_at < until, in id order",
                    "parameters": [
                        _query("since", instant, "Inclusive (no offset means UTC)"),
                        _query("until", instant, "Exclusive (no offset means UTC)"),
                        _query(
                            "limit",
                            {
                                "type": "integer",
                                "minimum": 1,
                                "maximum": limits.max_page_size,
                                "default": limits.page_size,
                            },
                            "Events per page",
                        ),
                        _query("cursor", {"type": "string"}, "next_cursor of the page before"),
                    ],
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["events", "count", "next_cursor"],
                                "properties": {
                                    "events": many,
                                    "count": {"type": "integer"},
                                    "next_cursor": {"type": ["string", "null"]},
                                },
                            },
                            "One page",
                        ),
                        "400": bad_parameter,
                        "default": _error("Any other error"),
                    },
                },
            },
            "/events/batch": {
                "post": {
                    "operationId": "postBatch",
                    "summary": f"Store 1 to {limits.batch_limit} events, all or none",
                    **_write(
                        "Batch",
                        _json(
                            {
                                "type": "object",
                                "required": ["events", "count"],
                                "properties": {"events": many, "count": {"type": "integer"}},
                            },
                            "The events as stored, in order",
                        ),
                        limits,
                    ),
                }
            },
            "/events/{event_id}": {
                "get": {
                    "operationId": "getEvent",
                    "summary": "One stored event",
                    "parameters": [
                        {
                            "name": "event_id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                            "description": f"An event_id ({RULES.event_id.pattern_text})",
                        }
                    ],
                    "responses": {
                        "200": one_event,
                        "404": _error("No such event"),
                        "default": _error("Any other error"),
                    },
                }
            },
            "/stats": {
                "get": {
                    "operationId": "getStats",
                    "summary": "One aggregate of a sensor's 1-minute rollups over [from, to)",
                    "parameters": [
                        _query("agg", {"enum": list(stats.AGGREGATES)}, "The aggregate", True),
                        _query("sensor", name, "The sensor", True),
                        _query("from", instant, "A whole UTC minute, inclusive", True),
                        _query("to", instant, "A whole UTC minute, exclusive", True),
                        {
                            **_query(
                                "device_id",
                                {"type": "array", "items": name, "maxItems": stats.MAX_DEVICE_IDS},
                                "Only these devices (repeat the parameter); all when absent",
                            ),
                            "style": "form",
                            "explode": True,
                        },
                    ],
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["agg", "sensor", "from", "to", "value", "count"],
                                "properties": {
                                    "agg": {"type": "string"},
                                    "sensor": {"type": "string"},
                                    "from": instant,
                                    "to": instant,
                                    "device_ids": {
                                        "type": ["array", "null"],
                                        "items": {"type": "string"},
                                    },
                                    "value": {"type": ["number", "null"]},
                                    "count": {"type": "integer"},
                                },
                            },
                            "The aggregate (value null when no reading is in range)",
                        ),
                        "400": bad_parameter,
                        "503": _error("MongoDB is unavailable"),
                        "default": _error("Any other error"),
                    },
                }
            },
            "/healthz": {
                "get": {
                    "operationId": "healthz",
                    "summary": "Whether the database answers, and how many events it holds",
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["status", "events", "commits", "writes_pending"],
                                "properties": {
                                    "status": {"type": "string", "enum": ["ok"]},
                                    "events": {"type": "integer"},
                                    "commits": {
                                        "type": "integer",
                                        "description": "Write transactions committed (one "
                                        "fsync each), by every worker",
                                    },
                                    "writes_pending": {
                                        "type": "integer",
                                        "description": "This worker's writes queued or committing",
                                    },
                                },
                            },
                            "Healthy",
                        ),
                        "503": _error("The database is unusable"),
                        "default": _error("Any other error"),
                    },
                }
            },
            PATH: {
                "get": {
                    "operationId": "openapi",
                    "summary": "This document",
                    "responses": {
                        "200": _json({"type": "object"}, "The OpenAPI document"),
                        "default": _error("Any other error"),
                    },
                }
            },
        },
    }


@bp.get(PATH)
def get_openapi() -> Response:
    """The OpenAPI document of this app, with its configured limits."""
    return jsonify(openapi_document(ApiLimits.of(current_app.config)))
