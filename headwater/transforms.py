"""Custom transforms: the only record-shape code left, for what a declaration cannot say (pure).

A source's contract names one by `transform:`. It receives the stored body the declaration gives
(declared fields under their stored names, timestamps already dates) and returns the document to
store. Each one declares the shape it stores, so the collection's $jsonSchema, its indexes and the
filter rules are still checked against it; and the input fields it needs, checked at load.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from headwater.declarations import ContractSpec, FieldSpec


@dataclass(frozen=True)
class Transform:
    """A registered transform: what it needs, what it stores, and the function itself."""

    name: str
    description: str
    needs: dict[str, str]  # input field -> declared type it must have
    fields: dict[str, FieldSpec]  # the stored shape it returns
    time_field: str  # the stored field holding the event time
    apply: Callable[[dict[str, Any]], dict[str, Any]]

    def check_input(self, contract: ContractSpec) -> None:
        """ValueError naming what the contract lacks for this transform."""
        for name, kind in self.needs.items():
            spec = contract.fields.get(name)
            if spec is None or spec.type != kind or spec.store_as not in (None, name):
                raise ValueError(
                    f"transform {self.name} needs a {kind} field {name!r} stored under its name"
                )


# The machine-metrics source publishes bare numbers; it never says in which unit.
MACHINE_METRIC_UNIT = "unknown"
MACHINE_DEVICE_TYPE = "machine"


def machine_device_id(param_id: int) -> str:
    """The device id a machine parameter is stored under, e.g. "machine-param-19"."""
    return f"machine-param-{param_id}"


def machine_sensor(param_id: int) -> str:
    """The sensor name of a machine parameter, e.g. "param_19"."""
    return f"param_{param_id}"


def _machine_metric_reading(body: dict[str, Any]) -> dict[str, Any]:
    # A parameter id becomes a device and a sensor of its own, so machine metrics sit in
    # `readings` beside the IoT devices and the same queries and rollups serve both.
    param = body["id"]
    return {
        "device_id": machine_device_id(param),
        "device_type": MACHINE_DEVICE_TYPE,
        "sensor": machine_sensor(param),
        "value": body["val"],
        "unit": MACHINE_METRIC_UNIT,
        "ts": body["time"],
    }


READING_SHAPE: dict[str, FieldSpec] = {
    "device_id": FieldSpec(type="string", min_length=1, max_length=200),
    "device_type": FieldSpec(type="string", required=False, nullable=True, max_length=200),
    "sensor": FieldSpec(type="string", min_length=1, max_length=200),
    "value": FieldSpec(type="number"),
    "unit": FieldSpec(type="string", min_length=1, max_length=32),
    "ts": FieldSpec(type="timestamp"),
}

REGISTRY: dict[str, Transform] = {
    t.name: t
    for t in (
        Transform(
            name="machine_metric_reading",
            description="a factory parameter value {id, val, time} as a reading of device "
            "machine-param-<id>, sensor param_<id>, unit unknown",
            needs={"id": "integer", "val": "number", "time": "timestamp"},
            fields=READING_SHAPE,
            time_field="ts",
            apply=_machine_metric_reading,
        ),
    )
}
