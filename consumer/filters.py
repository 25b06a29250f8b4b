"""Filter rules (consumer/filters.yaml) and the pure checks that apply them to records.

A check returns None when the record passes, or the reason it does not. Reasons name the rule, not
the offending value (the raw value is kept beside the reason), so they group when counted.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from consumer.records import Match, Reading, Record, UserEvent, WorkOrder


class _Rules(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SensorRange(_Rules):
    """The unit a sensor reports in and the physically possible values, inclusive."""

    unit: str
    min: float
    max: float

    @model_validator(mode="after")
    def _ordered(self) -> SensorRange:
        if self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        return self


class ReadingRules(_Rules):
    sensors: dict[str, SensorRange] = Field(default_factory=dict)
    unranged_sensor_prefixes: tuple[str, ...] = ()
    max_future_s: float = 3600


class UserEventRules(_Rules):
    test_user_prefixes: tuple[str, ...] = ()
    blocked_event_types: tuple[str, ...] = ()
    max_future_s: float = 300


class WorkOrderRules(_Rules):
    min_production: float = 0


class MatchRules(_Rules):
    statuses: tuple[str, ...] | None = None


class FilterRules(_Rules):
    """Every rule the consumer applies after validation."""

    readings: ReadingRules = ReadingRules()
    user_events: UserEventRules = UserEventRules()
    work_orders: WorkOrderRules = WorkOrderRules()
    matches: MatchRules = MatchRules()


def load_rules(path: Path) -> FilterRules:
    """The rules in a filters file; a mistake in it fails here, at start, not per record."""
    return FilterRules.model_validate(yaml.safe_load(path.read_text()) or {})


def _number(value: float) -> str:
    return f"{value:g}"


def check_reading(reading: Reading, rules: ReadingRules, now: datetime) -> str | None:
    """Why a reading is implausible, or None."""
    bounds = rules.sensors.get(reading.sensor)
    if bounds is None:
        if not reading.sensor.startswith(rules.unranged_sensor_prefixes):
            return f"no range configured for sensor {reading.sensor}"
    else:
        if reading.unit != bounds.unit:
            return f"{reading.sensor} unit must be {bounds.unit}"
        if not bounds.min <= reading.value <= bounds.max:
            lo, hi = _number(bounds.min), _number(bounds.max)
            return f"{reading.sensor} outside [{lo}, {hi}] {bounds.unit}"
    if reading.ts - now > timedelta(seconds=rules.max_future_s):
        return f"ts more than {_number(rules.max_future_s)} s in the future"
    return None


def check_user_event(event: UserEvent, rules: UserEventRules) -> str | None:
    """Why an event is kept out of user_events (test traffic, blocked type), or None."""
    for prefix in rules.test_user_prefixes:
        if event.user_id.startswith(prefix):
            return f"test user (user_id starts with {prefix!r})"
    if event.event_type in rules.blocked_event_types:
        return f"blocked event_type {event.event_type}"
    if event.occurred_at is not None and event.occurred_at - event.received_at > timedelta(
        seconds=rules.max_future_s
    ):
        return f"occurred_at more than {_number(rules.max_future_s)} s after received_at"
    return None


def check_work_order(order: WorkOrder, rules: WorkOrderRules) -> str | None:
    """Why a work order is implausible, or None."""
    if order.production < rules.min_production:
        return f"production below {_number(rules.min_production)}"
    return None


def check_match(match: Match, rules: MatchRules) -> str | None:
    """Why a match is not stored, or None."""
    if rules.statuses is not None and match.status not in rules.statuses:
        return f"status {match.status} not accepted"
    return None


def check_record(record: Record, rules: FilterRules, now: datetime) -> str | None:
    """The first rule `record` fails, or None when it passes every rule."""
    if isinstance(record, Reading):
        return check_reading(record, rules.readings, now)
    if isinstance(record, UserEvent):
        return check_user_event(record, rules.user_events)
    if isinstance(record, WorkOrder):
        return check_work_order(record, rules.work_orders)
    return check_match(record, rules.matches)
