"""What the stand-in's views share: its config, checked once, and the data folders' catalog."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import current_app

from producer.standin.datafiles import Catalog
from producer.standin.query import MAX_DEVICES, Limits

EXTENSION = "standin"
DEVICES_ROUTE = "devices"
# Names the app answers itself; a data file with one of these stems is not served.
RESERVED_ROUTES = frozenset({DEVICES_ROUTE, "healthz"})


@dataclass(frozen=True)
class Standin:
    """The per-app state of the stand-in."""

    catalog: Catalog
    limits: Limits
    default_devices: int

    def route_list(self) -> list[str]:
        """Every data route as a path, the simulator's included."""
        return sorted([f"/{DEVICES_ROUTE}", *(f"/{name}" for name in self.catalog.routes())])


def build_state(config: dict[str, Any]) -> Standin:
    """The state from the app config; a ValueError names the setting that is out of range."""
    data_dir = Path(config["DATA_DIR"])
    if not data_dir.is_dir():
        raise ValueError(f"DATA_DIR {data_dir} is not a directory")
    # Unlike DATA_DIR it may not exist yet: a missing folder serves nothing until it is created.
    extra = config.get("EXTRA_DATA_DIR")
    extra_dir = None if extra is None else Path(extra)
    maximum, default = int(config["MAX_PAGE_SIZE"]), int(config["PAGE_SIZE"])
    if maximum < 1 or not 1 <= default <= maximum:
        raise ValueError(f"need 1 <= PAGE_SIZE ({default}) <= MAX_PAGE_SIZE ({maximum})")
    devices = int(config["SIMULATOR_DEVICES"])
    if not 1 <= devices <= MAX_DEVICES:
        raise ValueError(f"SIMULATOR_DEVICES must be 1..{MAX_DEVICES}, got {devices}")
    catalog = Catalog(
        data_dir, RESERVED_ROUTES, load_sources=config["LOAD_SOURCES"], extra_dir=extra_dir
    )
    return Standin(catalog, Limits(default, maximum), devices)


def get_standin() -> Standin:
    """The state of the app handling the current request."""
    state: Standin = current_app.extensions[EXTENSION]
    return state
