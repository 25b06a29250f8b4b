"""Message contracts: the building blocks every declared record is checked with (pure).

Every message carries a `schema_version` header; the pair (topic, version) names exactly one
declared contract (sources.yaml, see headwater/declarations.py). A topic or version that is not
declared is an error with a reason, never a best guess: guessing would store records whose meaning
nobody has checked. Here: the field types a declaration maps to, the reasons' wording, and the
collection names the pipeline's own parts agree on.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    Field,
    Strict,
    ValidationError,
)

SCHEMA_VERSION_HEADER = "schema_version"


class Collections:
    """MongoDB collection names the pipeline's parts agree on (consumer, rollups, health, db/)."""

    READINGS = "readings"
    WORK_ORDERS = "work_orders"
    USER_EVENTS = "user_events"
    MATCHES = "matches"
    REJECTED = "rejected"
    READINGS_ROLLUP = "readings_rollup"
    PIPELINE_STATUS = "pipeline_status"
    HEALTH_CHECKS = "health_checks"
    RECONCILE_RUNS = "reconcile_runs"


class ContractError(ValueError):
    """A record does not meet its contract; `reason` says why in words stable enough to count."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# ---- field types ------------------------------------------------------------------------------


def _require_text(value: Any) -> Any:
    # Pydantic would also take epoch numbers for a datetime; these fields are ISO-8601 text.
    if not isinstance(value, str):
        raise ValueError("must be an ISO-8601 string")
    return value


def _to_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("is out of the supported date range") from None


# An instant written as ISO-8601 text with an offset (Z or +HH:MM), normalised to UTC.
IsoInstant = Annotated[AwareDatetime, BeforeValidator(_require_text), AfterValidator(_to_utc)]
# A JSON number (integer or fraction; never a boolean, a numeric string, NaN or infinity).
Number = Annotated[float, Strict(), Field(allow_inf_nan=False)]
# Epoch seconds as a JSON number, from 1970 to the end of year 9999 (what a date can hold).
MAX_EPOCH_S = 253_402_300_799
EpochSeconds = Annotated[float, Strict(), Field(ge=0, le=MAX_EPOCH_S, allow_inf_nan=False)]


def _to_day(value: Any) -> Any:
    if not isinstance(value, str) or not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
        raise ValueError("must be a YYYY-MM-DD date string")
    try:
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    except ValueError:
        raise ValueError("is not a calendar date") from None


# A calendar day written YYYY-MM-DD, as midnight UTC.
IsoDate = Annotated[datetime, BeforeValidator(_to_day)]
FIELD_NAME_PATTERN = r"[A-Za-z_][A-Za-z0-9_]{0,63}"


# ---- lookups ----------------------------------------------------------------------------------


def parse_schema_version(header: bytes | str | None) -> int:
    """The schema version a message declares in its header; ContractError when absent or bad."""
    if header is None:
        raise ContractError(f"missing {SCHEMA_VERSION_HEADER} header")
    try:
        text = header.decode() if isinstance(header, bytes) else header
    except UnicodeDecodeError:
        raise ContractError(f"{SCHEMA_VERSION_HEADER} header is not UTF-8") from None
    if not re.fullmatch(r"[0-9]{1,6}", text.strip()):
        raise ContractError(f"{SCHEMA_VERSION_HEADER} header {text[:20]!r} is not a whole number")
    return int(text)


def json_type(value: Any) -> str:
    """The JSON name of a decoded value's type, for reasons."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def describe_errors(error: ValidationError, whole: str = "record") -> str:
    """Pydantic's errors as 'field: message; ...' without the input values, so reasons group;
    an error of the whole object is named `whole`."""
    parts = []
    for item in error.errors(include_url=False, include_input=False):
        loc = ".".join(str(p) for p in item["loc"]) or whole
        message = item["msg"].removeprefix("Value error, ")
        parts.append(f"{loc}: {message}")
    return "; ".join(parts)


def validate_record(model: type[BaseModel], payload: Any) -> BaseModel:
    """The payload as `model`; ContractError with the reason when it does not fit."""
    if not isinstance(payload, dict):
        raise ContractError(f"record must be a JSON object, got {json_type(payload)}")
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        raise ContractError(describe_errors(exc)) from None
