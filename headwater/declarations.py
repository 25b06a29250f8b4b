"""What a source's entry in sources.yaml says about its records, and everything derived from it.

One declaration per source names the record's fields (type, required, constraints), per schema
version; the collection it is stored in and that collection's indexes; the plausibility window of
its event time; and its filter rules. From it come (all pure, here): the validating model of each
version, the stored document's shape, the filter checks, the MongoDB `$jsonSchema` of every
collection sources store in, and the indexes. A transform that no declaration can express is
named by the entry and lives in headwater/transforms.py.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StringConstraints,
    create_model,
    field_validator,
    model_validator,
)

from headwater.contracts import (
    FIELD_NAME_PATTERN,
    MAX_EPOCH_S,
    IsoDate,
    IsoInstant,
    Number,
)

TimeFormat = Literal["iso8601", "epoch_s", "epoch_ms", "date"]
FieldType = Literal["string", "integer", "number", "boolean", "timestamp", "object", "array"]
# Fields every stored document gets from the consumer; no declaration may use these names.
RESERVED_FIELDS = frozenset({"_id", "source", "ingest"})
INT64 = (-(2**63), 2**63 - 1)
_BSON_TYPES: dict[str, list[str]] = {
    "string": ["string"],
    "integer": ["int", "long"],
    "number": ["double", "int", "long", "decimal"],
    "boolean": ["bool"],
    "timestamp": ["date"],
    "object": ["object"],
    "array": ["array"],
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FieldSpec(_Strict):
    """One field of a record: its JSON type, whether it must be there, and its constraints.

    In YAML a bare type name is short for {type: NAME}: `unit: string`.
    """

    type: FieldType
    required: bool = True
    nullable: bool = False
    # timestamp: how the source writes it (stored as a BSON date, UTC, millisecond precision).
    format: TimeFormat | None = None
    min: float | None = None
    max: float | None = None
    min_length: int | None = Field(default=None, ge=0)
    max_length: int | None = Field(default=None, ge=1)
    pattern: str | None = None
    enum: tuple[str | int | float | bool, ...] | None = None
    # object / array: at most this many bytes as compact JSON (keys and nesting included).
    max_size: int | None = Field(default=None, ge=1)
    # object / array: keys at any depth may not start with '$' or contain '.' (MongoDB would read
    # them as operators or paths); false keeps such keys (stored as sent).
    plain_keys: bool = True
    # object: at most this many keys; array: at most this many items.
    max_items: int | None = Field(default=None, ge=0)
    # The stored document's name for the field (e.g. an API's `time` stored as `ts`).
    store_as: str | None = None
    description: str = ""

    @model_validator(mode="after")
    def _fits_type(self) -> FieldSpec:
        numeric = self.type in ("integer", "number") or (
            self.type == "timestamp" and self.format in ("epoch_s", "epoch_ms")
        )
        if (self.min is not None or self.max is not None) and not numeric:
            raise ValueError(
                f"min/max apply to integer, number and epoch timestamps, not {self.type}"
            )
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min:g} is above max {self.max:g}")
        if (self.min_length, self.max_length, self.pattern) != (None, None, None) and (
            self.type != "string"
        ):
            raise ValueError("min_length/max_length/pattern apply to strings only")
        if (self.max_size, self.max_items) != (None, None) and self.type not in ("object", "array"):
            raise ValueError("max_size/max_items apply to object and array only")
        if self.format is not None and self.type != "timestamp":
            raise ValueError("format applies to timestamps only")
        if self.enum is not None and self.type not in ("string", "integer", "number"):
            raise ValueError("enum applies to string, integer and number only")
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(
                    f"pattern {self.pattern!r} is not a regular expression: {exc}"
                ) from None
        return self

    @property
    def time_format(self) -> TimeFormat:
        return self.format or "iso8601"


def _field_shorthand(value: Any) -> Any:
    return {"type": value} if isinstance(value, str) else value


class ContractSpec(_Strict):
    """One schema version of a source's records."""

    fields: dict[str, FieldSpec]
    # forbid: a field the version does not declare is a reason to reject (a new version, not a
    # guess). keep: an external API's added fields are stored as sent (names must be plain).
    extra: Literal["forbid", "keep"] = "forbid"
    # A custom transform registered in headwater/transforms.py, applied to the stored shape.
    transform: str | None = None

    @field_validator("fields", mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: _field_shorthand(v) for k, v in value.items()}
        return value

    @model_validator(mode="after")
    def _names(self) -> ContractSpec:
        if not self.fields:
            raise ValueError("a contract declares at least one field")
        stored: set[str] = set()
        for name, spec in self.fields.items():
            for label in (name, spec.store_as or name):
                if not re.fullmatch(FIELD_NAME_PATTERN, label):
                    raise ValueError(
                        f"field name {label!r} is not a plain name ({FIELD_NAME_PATTERN})"
                    )
                if label in RESERVED_FIELDS:
                    raise ValueError(f"field name {label!r} is reserved for the consumer")
            target = spec.store_as or name
            if target in stored:
                raise ValueError(f"two fields are stored as {target!r}")
            stored.add(target)
        return self


class Plausibility(_Strict):
    """How far from the consumer's clock an event time may lie (None: no bound that way)."""

    max_future_s: float | None = Field(default=3600, ge=0)
    max_age_s: float | None = Field(default=None, gt=0)


class IndexSpec(_Strict):
    """A secondary index of the source's collection: keys in order, 1 or -1."""

    name: str = Field(pattern=r"^[A-Za-z0-9_]{1,64}$")
    keys: dict[str, Literal[1, -1]]
    unique: bool = False

    @model_validator(mode="after")
    def _has_keys(self) -> IndexSpec:
        if not self.keys:
            raise ValueError(f"index {self.name} has no keys")
        return self


# ---- filter rules -----------------------------------------------------------------------------


def _number(value: float) -> str:
    return f"{value:g}"


class SensorRange(_Strict):
    """The unit a sensor reports in and its physically possible values, inclusive."""

    unit: str
    min: float
    max: float

    @model_validator(mode="after")
    def _ordered(self) -> SensorRange:
        if self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        return self


class RangesRule(_Strict):
    """Per value of `by` (e.g. each sensor): the unit `unit` must hold and the range of `value`."""

    rule: Literal["ranges"]
    by: str
    value: str
    unit: str
    ranges: dict[str, SensorRange]
    # Values of `by` with one of these prefixes pass unranged; any other unlisted one is rejected.
    unranged_prefixes: tuple[str, ...] = ()

    def check(self, doc: Mapping[str, Any]) -> str | None:
        name = doc.get(self.by)
        bounds = self.ranges.get(name) if isinstance(name, str) else None
        if bounds is None:
            if isinstance(name, str) and name.startswith(self.unranged_prefixes):
                return None
            return f"no range configured for {self.by} {name}"
        if doc.get(self.unit) != bounds.unit:
            return f"{name} unit must be {bounds.unit}"
        value = doc.get(self.value)
        if not isinstance(value, int | float) or not bounds.min <= value <= bounds.max:
            return f"{name} outside [{_number(bounds.min)}, {_number(bounds.max)}] {bounds.unit}"
        return None


class BoundsRule(_Strict):
    """A numeric field within [min, max] (either bound may be left out)."""

    rule: Literal["bounds"]
    field: str
    min: float | None = None
    max: float | None = None

    def check(self, doc: Mapping[str, Any]) -> str | None:
        value = doc.get(self.field)
        if not isinstance(value, int | float) or isinstance(value, bool):
            return None  # the contract decides whether the field must be a number
        if self.min is not None and value < self.min:
            return f"{self.field} below {_number(self.min)}"
        if self.max is not None and value > self.max:
            return f"{self.field} above {_number(self.max)}"
        return None


class AllowRule(_Strict):
    """Only these values of a field are stored."""

    rule: Literal["allow"]
    field: str
    values: tuple[str | int | float | bool, ...]

    def check(self, doc: Mapping[str, Any]) -> str | None:
        value = doc.get(self.field)
        return None if value in self.values else f"{self.field} {value} not accepted"


class BlockRule(_Strict):
    """These values of a field are kept out (e.g. blocked event types)."""

    rule: Literal["block"]
    field: str
    values: tuple[str | int | float | bool, ...] = ()

    def check(self, doc: Mapping[str, Any]) -> str | None:
        value = doc.get(self.field)
        return f"blocked {self.field} {value}" if value in self.values else None


class PrefixRule(_Strict):
    """Text fields starting with one of these prefixes are kept out (e.g. test users)."""

    rule: Literal["block_prefixes"]
    field: str
    prefixes: tuple[str, ...]
    label: str = "blocked prefix"

    def check(self, doc: Mapping[str, Any]) -> str | None:
        value = doc.get(self.field)
        if isinstance(value, str):
            for prefix in self.prefixes:
                if value.startswith(prefix):
                    return f"{self.label} ({self.field} starts with {prefix!r})"
        return None


class NotAfterRule(_Strict):
    """A time field at most max_s after another (e.g. occurred_at vs received_at)."""

    rule: Literal["not_after"]
    field: str
    reference: str
    max_s: float = Field(ge=0)

    def check(self, doc: Mapping[str, Any]) -> str | None:
        value, reference = doc.get(self.field), doc.get(self.reference)
        if isinstance(value, datetime) and isinstance(reference, datetime):
            if value - reference > timedelta(seconds=self.max_s):
                return f"{self.field} more than {_number(self.max_s)} s after {self.reference}"
        return None


FilterRule = Annotated[
    RangesRule | BoundsRule | AllowRule | BlockRule | PrefixRule | NotAfterRule,
    Field(discriminator="rule"),
]
FILTER_FIELDS: dict[type, tuple[str, ...]] = {
    RangesRule: ("by", "value", "unit"),
    BoundsRule: ("field",),
    AllowRule: ("field",),
    BlockRule: ("field",),
    PrefixRule: ("field",),
    NotAfterRule: ("field", "reference"),
}


# ---- time --------------------------------------------------------------------------------------


def to_millis(moment: datetime) -> datetime:
    """UTC at millisecond precision: what a BSON date keeps, so a stored value reads back equal."""
    moment = moment.astimezone(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def from_epoch_s(seconds: float) -> datetime:
    """Epoch seconds as an aware UTC datetime at millisecond precision."""
    return to_millis(datetime.fromtimestamp(seconds, tz=UTC))


def stored_time(value: Any, fmt: TimeFormat) -> datetime:
    """A validated timestamp value as the BSON date it is stored as."""
    if fmt == "epoch_s":
        return from_epoch_s(value)
    if fmt == "epoch_ms":
        return from_epoch_s(value / 1000)
    return to_millis(value)


# ---- the validating model ----------------------------------------------------------------------


MAX_DEPTH = 32
KEY_RULE = "may not start with '$' or contain '.'"


def _text_problem(text: str) -> str | None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid Unicode text (it holds a lone surrogate)"
    return None


def value_problem(value: Any, *, plain_keys: bool = True, path: str = "") -> tuple[str, str] | None:
    """(path, problem) of the first part of a decoded JSON value that MongoDB could not store as
    sent, or that would be read as an operator or a path: a key starting with '$' or holding '.'
    (when `plain_keys`), text that is not valid Unicode, a number that is not finite, nesting
    deeper than MAX_DEPTH. `path` is dotted from the value (e.g. "a.b", "tags.3"); the events API
    and the consumer both name fields with it, so their reasons read the same."""
    stack: list[tuple[str, Any, int]] = [(path, value, 0)]
    while stack:
        where, item, depth = stack.pop()
        if depth > MAX_DEPTH:
            return where, f"is nested deeper than {MAX_DEPTH} levels"
        if isinstance(item, str):
            problem = _text_problem(item)
            if problem is not None:
                return where, problem
        elif isinstance(item, float) and not math.isfinite(item):
            return where, "is not a finite number"
        elif isinstance(item, dict):
            children = []
            for key, child in item.items():
                inner = f"{where}.{key}" if where else str(key)
                if _text_problem(str(key)) is not None:
                    return where, "has a key that is not valid Unicode text (a lone surrogate)"
                if plain_keys and (not key or key.startswith("$") or "." in key):
                    return where, f"key {key!r} {KEY_RULE}"
                children.append((inner, child, depth + 1))
            stack.extend(reversed(children))
        elif isinstance(item, list):
            stack.extend(
                reversed(
                    [
                        (f"{where}.{i}" if where else str(i), c, depth + 1)
                        for i, c in enumerate(item)
                    ]
                )
            )
    return None


def json_size(value: Any) -> int:
    """Bytes of a value as compact UTF-8 JSON (what the size limits measure)."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))


def _max_size(limit: int) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        size = json_size(value)
        if size > limit:
            raise ValueError(f"is {size} bytes as JSON, at most {limit} allowed")
        return value

    return check


def _max_items(limit: int) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if len(value) > limit:
            what = "keys" if isinstance(value, dict) else "items"
            raise ValueError(f"has {len(value)} {what}, at most {limit} allowed")
        return value

    return check


def _storable(plain_keys: bool) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        found = value_problem(value, plain_keys=plain_keys)
        if found is not None:
            where, problem = found
            raise ValueError(f"{where}: {problem}" if where else problem)
        return value

    return check


def _python_type(spec: FieldSpec) -> Any:
    """The pydantic type of one declared field (strict: no numeric strings, no bools as numbers)."""
    kind = spec.type
    if spec.enum is not None:
        base: Any = Literal[spec.enum]  # type: ignore[valid-type]
    elif kind == "string":
        base = Annotated[
            str,
            StringConstraints(
                strict=True,
                min_length=spec.min_length,
                max_length=spec.max_length,
                pattern=spec.pattern,
            ),
        ]
    elif kind == "integer":
        low = spec.min if spec.min is not None else INT64[0]
        high = spec.max if spec.max is not None else INT64[1]
        base = Annotated[StrictInt, Field(ge=low, le=high)]
    elif kind == "number":
        base = Annotated[Number, Field(ge=spec.min, le=spec.max)]
    elif kind == "boolean":
        base = StrictBool
    elif kind == "timestamp":
        fmt = spec.time_format
        if fmt == "iso8601":
            base = IsoInstant
        elif fmt == "date":
            base = IsoDate
        else:
            scale = 1000 if fmt == "epoch_ms" else 1
            low = spec.min if spec.min is not None else 0
            high = spec.max if spec.max is not None else MAX_EPOCH_S * scale
            base = Annotated[Number, Field(ge=low, le=high)]
    elif kind == "object":
        base = Annotated[dict[str, Any], AfterValidator(_storable(spec.plain_keys))]
    else:
        base = Annotated[list[Any], AfterValidator(_storable(spec.plain_keys))]
    if kind == "string":
        base = Annotated[base, AfterValidator(_storable(False))]
    if spec.max_items is not None:
        base = Annotated[base, AfterValidator(_max_items(spec.max_items))]
    if spec.max_size is not None:
        base = Annotated[base, AfterValidator(_max_size(spec.max_size))]
    if spec.nullable or not spec.required:
        base = base | None
    return base


def _plain_extra_names(model: BaseModel) -> BaseModel:
    # Kept extra fields become top-level document fields: "$x" or "a.b" would be read as
    # operators or paths by MongoDB, so such a record is rejected rather than half-stored.
    odd = [k for k in model.model_extra or {} if not re.fullmatch(FIELD_NAME_PATTERN, k)]
    if odd or any(k in RESERVED_FIELDS for k in model.model_extra or {}):
        bad = odd or [k for k in model.model_extra or {} if k in RESERVED_FIELDS]
        raise ValueError(f"unexpected field names {sorted(bad)[:5]}")
    found = value_problem(dict(model.model_extra or {}))
    if found is not None:
        raise ValueError(f"{found[0]}: {found[1]}")
    return model


def build_model(name: str, contract: ContractSpec) -> type[BaseModel]:
    """The pydantic model that validates one version's records."""
    definitions: dict[str, Any] = {}
    for field_name, spec in contract.fields.items():
        annotation = _python_type(spec)
        default: Any = ... if spec.required else None
        definitions[field_name] = (annotation, default)
    config = ConfigDict(extra="allow" if contract.extra == "keep" else "forbid", frozen=True)
    validators: dict[str, Any] = {}
    if contract.extra == "keep":
        validators["_plain_field_names"] = model_validator(mode="after")(_plain_extra_names)
    model_name = re.sub(r"[^A-Za-z0-9]", "_", name)
    return create_model(  # type: ignore[call-overload, no-any-return]
        model_name, __config__=config, __validators__=validators, **definitions
    )


# ---- the stored shape --------------------------------------------------------------------------


def stored_body(contract: ContractSpec, model: BaseModel) -> dict[str, Any]:
    """The stored fields of a validated record, before any custom transform: declared fields
    under their stored names (timestamps as dates, absent optionals as null), then kept extras."""
    body: dict[str, Any] = {}
    for name, spec in contract.fields.items():
        value = getattr(model, name)
        if value is not None and spec.type == "timestamp":
            value = stored_time(value, spec.time_format)
        body[spec.store_as or name] = value
    for name, value in (model.model_extra or {}).items():
        body[name] = value
    return body


def stored_fields(contract: ContractSpec) -> dict[str, FieldSpec]:
    """Stored name -> spec of a version's declared fields (what the stored document holds)."""
    return {spec.store_as or name: spec for name, spec in contract.fields.items()}


def bson_schema(spec: FieldSpec) -> dict[str, Any]:
    """The $jsonSchema of one stored field."""
    types = list(_BSON_TYPES[spec.type])
    if spec.nullable or not spec.required:
        types.append("null")
    schema: dict[str, Any] = {"bsonType": types[0] if len(types) == 1 else types}
    stored_as_date = spec.type == "timestamp"
    if spec.min is not None and not stored_as_date:
        schema["minimum"] = spec.min
    if spec.max is not None and not stored_as_date:
        schema["maximum"] = spec.max
    if spec.min_length is not None:
        schema["minLength"] = spec.min_length
    if spec.max_length is not None:
        schema["maxLength"] = spec.max_length
    if spec.pattern is not None:
        schema["pattern"] = spec.pattern
    if spec.enum is not None:
        schema["enum"] = list(spec.enum) + ([None] if "null" in types else [])
    return schema


def merge_shapes(shapes: Iterable[dict[str, FieldSpec]]) -> tuple[dict[str, Any], list[str]]:
    """($jsonSchema properties, required) of a collection several shapes are stored in: a field's
    types are the union, its constraints kept only where every shape agrees, and it is required
    only if every shape requires it."""
    shapes = list(shapes)
    properties: dict[str, Any] = {}
    required: list[str] = []
    names: list[str] = []
    for shape in shapes:
        names += [n for n in shape if n not in names]
    for name in names:
        schemas = [bson_schema(shape[name]) for shape in shapes if name in shape]
        present_everywhere = len(schemas) == len(shapes)
        if all(s == schemas[0] for s in schemas):
            merged = dict(schemas[0])
        else:
            types: list[str] = []
            for s in schemas:
                kinds = s["bsonType"] if isinstance(s["bsonType"], list) else [s["bsonType"]]
                types += [t for t in kinds if t not in types]
            merged = {"bsonType": types}
        if not present_everywhere:
            kinds = (
                merged["bsonType"] if isinstance(merged["bsonType"], list) else [merged["bsonType"]]
            )
            if "null" not in kinds:
                merged = {"bsonType": [*kinds, "null"]}
        properties[name] = merged
        if present_everywhere and all(
            shape[name].required and not shape[name].nullable for shape in shapes
        ):
            required.append(name)
    return properties, required


def plausibility_reason(field: str, moment: Any, window: Plausibility, now: datetime) -> str | None:
    """Why an event time lies outside the plausibility window around `now`, or None."""
    if not isinstance(moment, datetime):
        return None
    if window.max_future_s is not None and moment - now > timedelta(seconds=window.max_future_s):
        return f"{field} more than {_number(window.max_future_s)} s in the future"
    if window.max_age_s is not None and now - moment > timedelta(seconds=window.max_age_s):
        return f"{field} more than {_number(window.max_age_s)} s in the past"
    return None
