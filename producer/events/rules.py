"""The events API's field rules, read from the user-events declaration in sources.yaml.

What a posted event may hold is what the consumer will accept from the topic: the same patterns,
lengths, key count and size limit, declared once (the `user-events` entry's contract and filters).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache

from headwater.declarations import FieldSpec, NotAfterRule
from headwater.sources import get_source

SOURCE = "user-events"


@dataclass(frozen=True)
class TextRule:
    """A text field: its length bounds and the pattern it must match in full."""

    min_length: int
    max_length: int
    pattern: re.Pattern[str]
    pattern_text: str

    @classmethod
    def of(cls, spec: FieldSpec) -> TextRule:
        pattern = spec.pattern or ".*"
        return cls(
            min_length=spec.min_length or 0,
            max_length=spec.max_length or 2**31,
            pattern=re.compile(pattern),
            pattern_text=pattern,
        )

    def matches(self, value: str) -> bool:
        return self.pattern.fullmatch(value) is not None


@dataclass(frozen=True)
class EventRules:
    """Every rule of a posted event that the declaration carries."""

    event_id: TextRule
    user_id: TextRule
    event_type: TextRule
    properties_max_keys: int
    properties_max_bytes: int
    max_future: timedelta


@lru_cache(maxsize=1)
def event_rules() -> EventRules:
    """The rules of the user-events source's current schema version."""
    source = get_source(SOURCE)
    fields = source.contracts[source.schema_version].fields
    future = [
        r.max_s for r in source.filters if isinstance(r, NotAfterRule) and r.field == "occurred_at"
    ]
    return EventRules(
        event_id=TextRule.of(fields["event_id"]),
        user_id=TextRule.of(fields["user_id"]),
        event_type=TextRule.of(fields["event_type"]),
        properties_max_keys=fields["properties"].max_items or 2**31,
        properties_max_bytes=fields["properties"].max_size or 2**31,
        max_future=timedelta(seconds=future[0] if future else 300),
    )
