"""Shared test setup: the test stack's settings (tests/stack.env) and test ordering."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

STACK_ENV = Path(__file__).parent / "stack.env"


def _load_stack_env() -> None:
    # Integration tests run against the test stack (own ports and run dir), whether pytest was
    # started by `make test` (which exports the same file) or by hand. Explicit env wins.
    for line in STACK_ENV.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            os.environ.setdefault(key.strip(), value.strip())


_load_stack_env()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that stop the whole stack run after everything that needs it."""
    items.sort(key=lambda item: item.get_closest_marker("lifecycle") is not None)
