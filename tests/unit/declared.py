"""A minimal valid source entry for unit tests: the fields a test cares about, plus a contract."""

from __future__ import annotations

from typing import Any


def entry(time_format: str = "iso8601", **overrides: Any) -> dict[str, Any]:
    """A sources.yaml entry; without `contracts`, one declaring the key fields (as strings) and
    the event-time field (a timestamp of `time_format`)."""
    spec: dict[str, Any] = {
        "base_url": "{external_api_url}",
        "route": "/x",
        "key_fields": ["device_id", "ts"],
        "event_time_field": "ts",
        "topic": "x",
        "collection": "x",
    }
    spec.update(overrides)
    if "contracts" not in spec:
        fields: dict[str, Any] = {k.split(".")[0]: "string" for k in spec["key_fields"]}
        fields[spec["event_time_field"]] = {"type": "timestamp", "format": time_format}
        spec["contracts"] = {1: {"fields": fields}}
    return spec
