"""Message contracts: what a record on each topic must look like, per schema version (pure).

Every message carries a `schema_version` header; the pair (topic, version) names exactly one model
here. A topic or version that is not registered is an error with a reason, never a best guess:
guessing would store records whose meaning nobody has checked. Adding a version is adding a model
and one registry line; the consumer keeps accepting the older versions still in the topic.

The topic names are the ones declared in sources.yaml; a deployment that reads other topic names
maps them to these (the consumer's topic map) rather than registering them again.
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
    ConfigDict,
    Field,
    Strict,
    StrictInt,
    StringConstraints,
    ValidationError,
    model_validator,
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
Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]
# A non-negative integer that fits the 64-bit integers MongoDB stores.
Id = Annotated[StrictInt, Field(ge=0, le=2**63 - 1)]

EVENT_ID_PATTERN = r"^[0-7][0-9A-HJKMNP-TV-Z]{25}$"
USER_ID_PATTERN = r"^[A-Za-z0-9_.:@-]{1,128}$"
EVENT_TYPE_PATTERN = r"^[a-z][a-z0-9_.-]{0,63}$"
FIELD_NAME_PATTERN = r"[A-Za-z_][A-Za-z0-9_]{0,63}"


class _Contract(BaseModel):
    # Our own record shapes: a field the version does not declare is a new version, not a guess.
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---- version 1 of every topic -----------------------------------------------------------------


class DeviceReadingV1(_Contract):
    """devices v1: one raw reading of the IoT simulator (or a real device speaking its shape)."""

    device_id: Name
    device_type: Name | None = None
    sensor: Name
    value: Number
    unit: Annotated[str, StringConstraints(min_length=1, max_length=32)]
    ts: IsoInstant


class MachineMetricV1(_Contract):
    """machine-metrics v1: one factory machine parameter value at an epoch second."""

    id: Id
    val: Number
    time: EpochSeconds


class WorkOrderV1(_Contract):
    """work-orders v1: cumulative production of one product at an epoch second."""

    time: EpochSeconds
    product: Id
    production: Number


class UserEventV1(_Contract):
    """user-events v1: an event as the events API stored it (id and receive time assigned)."""

    event_id: Annotated[str, StringConstraints(pattern=EVENT_ID_PATTERN)]
    user_id: Annotated[str, StringConstraints(pattern=USER_ID_PATTERN)]
    event_type: Annotated[str, StringConstraints(pattern=EVENT_TYPE_PATTERN)]
    occurred_at: IsoInstant | None
    properties: dict[str, Any]
    received_at: IsoInstant


class MatchV1(BaseModel):
    """matches v1: a football-data.org v4 match; the fields we rely on, the rest kept as sent."""

    # An external API adds fields over time; they are kept, not a reason to reject the match.
    model_config = ConfigDict(extra="allow", frozen=True)

    id: Id
    utcDate: IsoInstant  # the API's own field name
    status: Name

    @model_validator(mode="after")
    def _plain_field_names(self) -> MatchV1:
        # Extra fields become top-level document fields: "$x" or "a.b" would be read as operators
        # or paths by MongoDB, so such a record is rejected rather than half-stored.
        odd = [k for k in self.model_extra or {} if not re.fullmatch(FIELD_NAME_PATTERN, k)]
        if odd:
            raise ValueError(f"unexpected field names {sorted(odd)[:5]}")
        return self


CONTRACTS: dict[tuple[str, int], type[BaseModel]] = {
    ("devices", 1): DeviceReadingV1,
    ("machine-metrics", 1): MachineMetricV1,
    ("work-orders", 1): WorkOrderV1,
    ("user-events", 1): UserEventV1,
    ("matches", 1): MatchV1,
}


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


def contract_for(topic: str, version: int) -> type[BaseModel]:
    """The model of (topic, version); ContractError naming what is registered otherwise."""
    model = CONTRACTS.get((topic, version))
    if model is not None:
        return model
    known = sorted(v for t, v in CONTRACTS if t == topic)
    if not known:
        topics = ", ".join(sorted({t for t, _ in CONTRACTS}))
        raise ContractError(f"no contract for topic {topic!r} (known topics: {topics})")
    versions = ", ".join(str(v) for v in known)
    raise ContractError(f"unknown schema_version {version} for topic {topic} (known: {versions})")


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


def describe_errors(error: ValidationError) -> str:
    """Pydantic's errors as 'field: message; ...' without the input values, so reasons group."""
    parts = []
    for item in error.errors(include_url=False, include_input=False):
        loc = ".".join(str(p) for p in item["loc"]) or "record"
        message = item["msg"].removeprefix("Value error, ")
        parts.append(f"{loc}: {message}")
    return "; ".join(parts)


def validate_record(topic: str, version: int, payload: Any) -> BaseModel:
    """The payload as its contract's model; ContractError with the reason when it does not fit."""
    model = contract_for(topic, version)
    if not isinstance(payload, dict):
        raise ContractError(f"record must be a JSON object, got {json_type(payload)}")
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        raise ContractError(describe_errors(exc)) from None
