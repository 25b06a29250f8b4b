"""Query parameters of the stand-in's routes, parsed and checked into plain values (pure).

Times are carried as integer microseconds since the Unix epoch, so window bounds given as ISO-8601
text, epoch seconds or dates compare exactly (a float timestamp could not).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROS = 1_000_000
MICROS_PER_MS = 1_000
MIN_US = (datetime(1, 1, 2, tzinfo=UTC) - EPOCH) // timedelta(microseconds=1)
MAX_US = (datetime(9999, 12, 30, tzinfo=UTC) - EPOCH) // timedelta(microseconds=1)
MAX_DEVICES = 1000
_EPOCH_NUMBER = re.compile(r"-?\d+(\.\d+)?")
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


@dataclass(frozen=True)
class Problem:
    """What is wrong with one query parameter."""

    field: str
    problem: str


class BadParameter(ValueError):
    """One or more query parameters are unusable; answered with 400 and every problem listed."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(f"{p.field}: {p.problem}" for p in problems))
        self.problems = problems

    @classmethod
    def one(cls, field: str, problem: str) -> BadParameter:
        """The error for a single bad parameter."""
        return cls([Problem(field, problem)])


@dataclass(frozen=True)
class Window:
    """since <= t < until in epoch microseconds; None is unbounded on that side."""

    since_us: int | None
    until_us: int | None

    @property
    def bounded(self) -> bool:
        """Whether either bound is given."""
        return self.since_us is not None or self.until_us is not None

    def as_list(self) -> list[int | None]:
        """The bounds as a JSON-ready pair."""
        return [self.since_us, self.until_us]


@dataclass(frozen=True)
class Limits:
    """Page size bounds of the app."""

    default: int
    maximum: int


def datetime_to_us(moment: datetime) -> int:
    """Epoch microseconds of a datetime (naive is taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - EPOCH) // timedelta(microseconds=1)


def us_to_datetime(us: int) -> datetime:
    """An aware UTC datetime from epoch microseconds."""
    return EPOCH + timedelta(microseconds=us)


def format_us(us: int | None) -> str:
    """Epoch microseconds as ISO-8601 with Z (for logs and messages); "-" when unbounded."""
    if us is None:
        return "-"
    text = us_to_datetime(us).isoformat(timespec="microseconds" if us % MICROS else "seconds")
    return text.replace("+00:00", "Z")


def epoch_number_to_us(value: int | float | Decimal | str, unit_us: int = MICROS) -> int:
    """Epoch seconds (or units of `unit_us` microseconds) as epoch microseconds, exactly."""
    # repr() of a float is its shortest exact decimal, so 1624377478.1 does not become ...0999.
    text = repr(value) if isinstance(value, float) else str(value)
    return int((Decimal(text) * unit_us).to_integral_value())


def parse_instant(field: str, text: str) -> int:
    """An ISO-8601 time (Z, offset, or naive as UTC) or epoch seconds, as epoch microseconds."""
    text = text.strip()
    try:
        if _EPOCH_NUMBER.fullmatch(text):
            us = epoch_number_to_us(text)
        else:
            us = datetime_to_us(datetime.fromisoformat(text))
    except (ValueError, InvalidOperation, OverflowError):
        raise BadParameter.one(
            field, f"{text!r} is neither an ISO-8601 time nor epoch seconds"
        ) from None
    if not MIN_US <= us <= MAX_US:
        raise BadParameter.one(field, f"{text!r} is out of the supported range")
    return us


def parse_day(field: str, text: str) -> int:
    """A YYYY-MM-DD date as the epoch microseconds of its first instant (UTC)."""
    text = text.strip()
    try:
        if not _DAY.fullmatch(text):
            raise ValueError(text)
        day = date.fromisoformat(text)
    except ValueError:
        raise BadParameter.one(field, f"{text!r} is not a date YYYY-MM-DD") from None
    return datetime_to_us(datetime(day.year, day.month, day.day, tzinfo=UTC))


def _bound(
    args: Mapping[str, str], name: str, alias: str, day_offset: int, required: bool
) -> int | None:
    given, aliased = args.get(name), args.get(alias)
    if given is not None and aliased is not None:
        raise BadParameter.one(alias, f"give {name} or {alias}, not both")
    if given is not None:
        return parse_instant(name, given)
    if aliased is not None:
        # dateTo names the last day *included* (football-data.org v4): the bound is the next day.
        return parse_day(alias, aliased) + day_offset * 86_400 * MICROS
    if required:
        raise BadParameter.one(name, f"required (or {alias} as YYYY-MM-DD)")
    return None


def parse_window(args: Mapping[str, str], *, required: bool) -> Window:
    """The [since, until) window from since/until or dateFrom/dateTo (dateTo inclusive)."""
    since, until, problems = None, None, []
    try:
        since = _bound(args, "since", "dateFrom", 0, required)
    except BadParameter as exc:
        problems += exc.problems
    try:
        until = _bound(args, "until", "dateTo", 1, required)
    except BadParameter as exc:
        problems += exc.problems
    if problems:
        raise BadParameter(problems)
    if since is not None and until is not None and since > until:
        field = "since" if "since" in args else "dateFrom"
        raise BadParameter.one(field, f"{format_us(since)} is after until {format_us(until)}")
    return Window(since, until)


def _bounded_int(args: Mapping[str, str], field: str, default: int, low: int, high: int) -> int:
    text = args.get(field)
    if text is None:
        return default
    try:
        value = int(text.strip())
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        raise BadParameter.one(field, f"{text!r} is not an integer from {low} to {high}")
    return value


def parse_limit(args: Mapping[str, str], limits: Limits) -> int:
    """The page size: `limit`, 1..maximum, default when absent."""
    return _bounded_int(args, "limit", limits.default, 1, limits.maximum)


def parse_devices(args: Mapping[str, str], default: int) -> int:
    """How many simulated devices to serve: `devices`, 1..MAX_DEVICES."""
    return _bounded_int(args, "devices", default, 1, MAX_DEVICES)


def gather(*parsers: Callable[[], Any]) -> list[Any]:
    """Run every parser and return their values; raise one BadParameter listing all problems."""
    values: list[Any] = []
    problems: list[Problem] = []
    for parse in parsers:
        try:
            values.append(parse())
        except BadParameter as exc:
            problems += exc.problems
            values.append(None)
    if problems:
        raise BadParameter(problems)
    return values
