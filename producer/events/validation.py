"""What a posted event must look like, checked into plain values (pure; `now` is passed in).

Every check collects problems instead of stopping at the first, so one 400 names every bad field:
`user_id` for a single event, `events[3].user_id` for an item of a batch.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from headwater.declarations import json_size, value_problem
from producer.events.rules import TextRule, event_rules
from producer.events.times import format_utc, parse_iso

# user_id, event_type, the properties' keys and size and occurred_at's lead come from the
# user-events declaration (producer/events/rules.py), so the API and the consumer hold one set of
# rules.
RULES = event_rules()
MAX_PROPERTY_KEYS = RULES.properties_max_keys
MAX_PROPERTIES_BYTES = RULES.properties_max_bytes
EVENT_FIELDS = ("user_id", "event_type", "occurred_at", "properties")
BATCH_FIELDS = ("events",)
_FIELD_NAME_MAX = 64


@dataclass(frozen=True)
class Problem:
    """What is wrong with one field (or parameter, or header)."""

    field: str
    problem: str

    def as_dict(self) -> dict[str, str]:
        """The JSON shape of a problem."""
        return {"field": self.field, "problem": self.problem}


class InvalidInput(ValueError):
    """The input is unusable; carries every problem found."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(f"{p.field}: {p.problem}" for p in problems))
        self.problems = problems


@dataclass(frozen=True)
class NewEvent:
    """A valid event as posted, before the store gives it an id and a receive time."""

    user_id: str
    event_type: str
    occurred_at: datetime | None  # aware, UTC
    properties: dict[str, Any]


def json_type(value: Any) -> str:
    """The JSON name of a parsed value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise ValueError(f"duplicate key {key!r}")
        found[key] = value
    return found


def parse_json_body(raw: bytes) -> Any:
    """The request body as JSON: strict (no NaN/Infinity, no duplicate keys), UTF-8."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput([Problem("body", f"is not UTF-8: {exc.reason}")]) from None
    if not text.strip():
        raise InvalidInput([Problem("body", "is empty, expected a JSON object")])
    try:
        return json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as exc:
        problem = f"is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
    except ValueError as exc:
        problem = f"is not valid JSON: {exc}"
    except RecursionError:
        problem = "is not usable JSON: nested too deeply"
    raise InvalidInput([Problem("body", problem)])


def _field(prefix: str, name: str) -> str:
    if len(name) > _FIELD_NAME_MAX:
        name = name[:_FIELD_NAME_MAX] + "..."
    return f"{prefix}.{name}" if prefix else name


def _unknown_fields(raw: Mapping[str, Any], allowed: tuple[str, ...], prefix: str) -> list[Problem]:
    hint = f"unknown field (allowed: {', '.join(allowed)})"
    return [Problem(_field(prefix, key), hint) for key in raw if key not in allowed]


def _storable_problem(value: Any) -> str | None:
    # The consumer's words for text MongoDB cannot store (a lone surrogate), so both sides agree.
    found = value_problem(value, plain_keys=False)
    return found[1] if found is not None else None


def _check_text(value: Any, rule: TextRule, hint: str) -> str | None:
    if not isinstance(value, str):
        return f"must be a string, got {json_type(value)}"
    if (problem := _storable_problem(value)) is not None:
        return problem
    if not rule.min_length <= len(value) <= rule.max_length:
        return f"must be {rule.min_length} to {rule.max_length} characters, got {len(value)}"
    if not rule.matches(value):
        return f"{hint} (must match {rule.pattern_text})"
    return None


def _check_user_id(value: Any) -> str | None:
    return _check_text(value, RULES.user_id, "may only contain letters, digits and _ . : @ -")


def _check_event_type(value: Any) -> str | None:
    return _check_text(value, RULES.event_type, "lower case, starting with a letter")


def _check_occurred_at(value: Any, now: datetime) -> tuple[datetime | None, str | None]:
    if value is None:
        return None, None
    if not isinstance(value, str):
        return None, f"must be an ISO-8601 string, got {json_type(value)}"
    if (problem := _storable_problem(value)) is not None:
        return None, problem
    try:
        moment = parse_iso(value)
    except ValueError:
        return None, f"{value[:64]!r} is not an ISO-8601 date-time"
    if moment.tzinfo is None or moment.utcoffset() is None:
        return None, "must include a timezone (Z or +HH:MM)"
    try:
        if moment - now > RULES.max_future:
            lead = f"{RULES.max_future.total_seconds():g} s"
            return None, f"is more than {lead} in the future (server time {format_utc(now)})"
        return moment.astimezone(UTC), None
    except OverflowError:
        return None, "is out of the supported range"


def _check_properties(value: Any, field: str) -> tuple[dict[str, Any], Problem | None]:
    if value is None:
        return {}, None
    if not isinstance(value, dict):
        return {}, Problem(field, f"must be a JSON object, got {json_type(value)}")
    # First, as the consumer does: keys MongoDB would read as operators or paths ('$where',
    # 'a.b'), lone surrogates and numbers too large for a float (1e999999 parses as inf), named
    # by their path at any depth (properties.a.b), in the consumer's words.
    found = value_problem(value, path=field)
    if found is not None:
        return {}, Problem(*found)
    if len(value) > MAX_PROPERTY_KEYS:
        return {}, Problem(field, f"has {len(value)} keys, at most {MAX_PROPERTY_KEYS} allowed")
    if (size := json_size(value)) > MAX_PROPERTIES_BYTES:
        problem = f"is {size} bytes as JSON, at most {MAX_PROPERTIES_BYTES} allowed"
        return {}, Problem(field, problem)
    return value, None


def dump_properties(properties: Mapping[str, Any]) -> str:
    """Properties as compact JSON text: what is measured against the size limit and stored."""
    return json.dumps(properties, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def check_event(raw: Any, now: datetime, prefix: str = "") -> tuple[NewEvent | None, list[Problem]]:
    """The event in `raw`, or None and every problem found (fields named under `prefix`)."""
    if not isinstance(raw, dict):
        return None, [Problem(prefix or "body", f"must be a JSON object, got {json_type(raw)}")]
    problems = _unknown_fields(raw, EVENT_FIELDS, prefix)
    for name, check in (("user_id", _check_user_id), ("event_type", _check_event_type)):
        if name not in raw:
            problems.append(Problem(_field(prefix, name), "is required"))
        elif (problem := check(raw[name])) is not None:
            problems.append(Problem(_field(prefix, name), problem))
    occurred_at, problem = _check_occurred_at(raw.get("occurred_at"), now)
    if problem is not None:
        problems.append(Problem(_field(prefix, "occurred_at"), problem))
    properties, bad = _check_properties(raw.get("properties"), _field(prefix, "properties"))
    if bad is not None:
        problems.append(bad)
    if problems:
        return None, problems
    return NewEvent(raw["user_id"], raw["event_type"], occurred_at, properties), []


def parse_event(raw: Any, now: datetime) -> NewEvent:
    """One event (the body of POST /events); InvalidInput naming every bad field."""
    event, problems = check_event(raw, now)
    if event is None:
        raise InvalidInput(problems)
    return event


def parse_batch(raw: Any, now: datetime, limit: int) -> list[NewEvent]:
    """The events of a batch body `{"events": [...]}`: all valid, or InvalidInput for all."""
    if not isinstance(raw, dict):
        raise InvalidInput([Problem("body", f"must be a JSON object, got {json_type(raw)}")])
    problems = _unknown_fields(raw, BATCH_FIELDS, "")
    items: list[Any] = []
    value = raw.get("events")
    if "events" not in raw:
        problems.append(Problem("events", "is required"))
    elif not isinstance(value, list):
        problems.append(Problem("events", f"must be an array, got {json_type(value)}"))
    elif not 1 <= len(value) <= limit:
        problems.append(Problem("events", f"must hold 1 to {limit} events, got {len(value)}"))
    else:
        items = value
    if problems:
        raise InvalidInput(problems)
    events: list[NewEvent] = []
    for index, item in enumerate(items):
        event, item_problems = check_event(item, now, f"events[{index}]")
        problems += item_problems
        if event is not None:
            events.append(event)
    if problems:
        raise InvalidInput(problems)
    return events
