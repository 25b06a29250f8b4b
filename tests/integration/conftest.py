"""Fixtures for tests against the real stack on loopback."""

from __future__ import annotations

import importlib
import sys
import uuid
from collections.abc import Iterator
from types import ModuleType

import pytest

from headwater.kafka_access import create_topics
from headwater.kafka_admin import admin_client, delete_topics
from headwater.settings import REPO_ROOT, Settings, get_settings
from infra import stack
from infra.health import check_all


@pytest.fixture(scope="session")
def settings() -> Settings:
    return get_settings()


@pytest.fixture(scope="session")
def live_stack(settings: Settings) -> Settings:
    """The test stack, healthy; started here if it is not (a missing service fails, never skips)."""
    if not all(c.ok for c in check_all(settings)):
        stack.up(settings)
    return settings


@pytest.fixture
def unique_name() -> str:
    """A name no other test uses, for topics, groups and databases."""
    return f"t-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def topic(live_stack: Settings, unique_name: str) -> Iterator[str]:
    """A fresh pipeline-shaped topic (partitions and RF from settings), deleted afterwards."""
    admin = admin_client(live_stack)
    create_topics(admin, live_stack, [unique_name])
    yield unique_name
    delete_topics(admin, [unique_name])


@pytest.fixture(scope="module")
def probes() -> ModuleType:
    """The health plugin's probes, imported the way Airflow does: the plugins folder on sys.path."""
    plugins = str(REPO_ROOT / "plugins")
    if plugins not in sys.path:
        sys.path.insert(0, plugins)
    return importlib.import_module("headwater_health.probes")
