"""HeadwaterUIPlugin: the Headwater page at /headwater/ and its entry in the Airflow UI's nav bar.

Every Airflow process loads plugins (scheduler, dag-processor, task runners), and only the API
server serves this one, so importing it stays cheap: Airflow's auth machinery, pymongo and the
summary code are imported on the first request, not here, and no client is made before then.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

from airflow.plugins_manager import AirflowPlugin
from fastapi import Request

from headwater_ui.ui_app import RESOURCE_NAME, URL_PREFIX, create_app

_readers: list[Any] = []  # the one MongoReader, made on the first request
_readers_lock = threading.Lock()


def read_summary(airflow_root: str) -> dict[str, Any]:
    """The summary from this stack's MongoDB (settings from the API server's environment)."""
    import pymongo

    from headwater.pipeline_summary import build_summary
    from headwater.settings import get_settings
    from headwater.sources import load_sources
    from headwater_ui.ui_store import READ_TIMEOUT_S, MongoReader, read_inputs

    settings = get_settings()
    with _readers_lock:
        if not _readers:
            _readers.append(MongoReader(settings))
        reader = _readers[0]
    with pymongo.timeout(READ_TIMEOUT_S):
        inputs = read_inputs(
            reader.db(),
            list(load_sources().values()),
            group=settings.consumer.group or settings.kafka.consumer_group,
            stale_after_s=settings.consumer.stale_after_s,
        )
    return build_summary(inputs, datetime.now(UTC), airflow_root)


async def require_airflow_access(request: Request) -> None:
    """Airflow's own login (UI cookie or bearer token, as for its REST API), then the auth
    manager's permission for the Headwater custom view; HTTPException 401/403 otherwise."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.core_api import security
    from fastapi import HTTPException, status

    credentials = await security.bearer_scheme(request)
    # The dependency Airflow's routes use (also honours the user its JWT refresh middleware set).
    user = await security.get_user(request, None, credentials)
    allowed = get_auth_manager().is_authorized_custom_view(
        method="GET", resource_name=RESOURCE_NAME, user=user
    )
    if not allowed:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "Forbidden")


def close_reader() -> None:
    """Close the MongoDB client when the API server stops."""
    with _readers_lock:
        for reader in _readers:
            reader.close()
        _readers.clear()


def login_url(next_url: str) -> str:
    """The auth manager's login page, coming back to `next_url` afterwards."""
    from airflow.api_fastapi.app import get_auth_manager

    return get_auth_manager().get_url_login(next_url=next_url)


class HeadwaterUIPlugin(AirflowPlugin):
    """The Headwater page: a FastAPI app mounted on the API server and a top-level nav entry."""

    name = "headwater_ui"
    fastapi_apps = [  # noqa: RUF012 - AirflowPlugin declares these as class attributes
        {
            "app": create_app(read_summary, require_airflow_access, login_url, close_reader),
            "url_prefix": URL_PREFIX,
            "name": "Headwater",
        }
    ]
    external_views = [  # noqa: RUF012
        {
            "name": "Headwater",
            # Relative: resolved against the UI's base URL, so a base path keeps working.
            "href": URL_PREFIX.lstrip("/") + "/",
            "icon": URL_PREFIX.lstrip("/") + "/icon.svg",
            "url_route": "headwater",
            "destination": "nav",
            "nav_top_level": True,
        }
    ]
