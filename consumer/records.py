"""What a valid record means, independent of the topic it came on: the consumer's domain (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel

from headwater.contracts import (
    DeviceReadingV1,
    MachineMetricV1,
    MatchV1,
    UserEventV1,
    WorkOrderV1,
)

# The machine-metrics source publishes bare numbers; it never says in which unit.
MACHINE_METRIC_UNIT = "unknown"


@dataclass(frozen=True)
class Reading:
    """One measured value of one sensor of one device at one instant."""

    device_id: str
    sensor: str
    value: float
    unit: str
    ts: datetime


@dataclass(frozen=True)
class WorkOrder:
    """Cumulative production of a product at an instant."""

    product: int
    production: float
    ts: datetime


@dataclass(frozen=True)
class UserEvent:
    """An event a user posted, as the events API stored it."""

    event_id: str
    user_id: str
    event_type: str
    occurred_at: datetime | None
    properties: dict[str, Any]
    received_at: datetime


@dataclass(frozen=True)
class Match:
    """A football match; `fields` is the record as the API sent it."""

    match_id: int
    utc_date: datetime
    status: str
    fields: dict[str, Any]


Record = Reading | WorkOrder | UserEvent | Match


def to_millis(moment: datetime) -> datetime:
    """UTC at millisecond precision: what a BSON date keeps, so a stored value reads back equal."""
    moment = moment.astimezone(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def from_epoch_s(seconds: float) -> datetime:
    """Epoch seconds as an aware UTC datetime at millisecond precision."""
    return to_millis(datetime.fromtimestamp(seconds, tz=UTC))


def machine_device_id(param_id: int) -> str:
    """The device id a machine parameter is stored under, e.g. "machine-param-19"."""
    return f"machine-param-{param_id}"


def machine_sensor(param_id: int) -> str:
    """The sensor name of a machine parameter, e.g. "param_19"."""
    return f"param_{param_id}"


def to_record(model: BaseModel) -> Record:
    """The domain record of a validated contract model."""
    if isinstance(model, DeviceReadingV1):
        return Reading(model.device_id, model.sensor, model.value, model.unit, to_millis(model.ts))
    if isinstance(model, MachineMetricV1):
        return Reading(
            machine_device_id(model.id),
            machine_sensor(model.id),
            model.val,
            MACHINE_METRIC_UNIT,
            from_epoch_s(model.time),
        )
    if isinstance(model, WorkOrderV1):
        return WorkOrder(model.product, model.production, from_epoch_s(model.time))
    if isinstance(model, UserEventV1):
        occurred = to_millis(model.occurred_at) if model.occurred_at is not None else None
        return UserEvent(
            model.event_id,
            model.user_id,
            model.event_type,
            occurred,
            dict(model.properties),
            to_millis(model.received_at),
        )
    if isinstance(model, MatchV1):
        return Match(model.id, to_millis(model.utcDate), model.status, model.model_dump())
    raise TypeError(f"no domain record for {type(model).__name__}")
