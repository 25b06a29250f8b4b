"""The user-events API's app factory: `gunicorn 'producer.events.app:create_app()'`."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from flask import Flask, Response, jsonify

from headwater.settings import get_settings
from producer.events import db, health, ingest, openapi, reads, stats, timing
from producer.events.errors import register_error_handlers
from producer.events.offload import offload_for_this_process
from producer.events.store import EventStore
from producer.events.times import now_utc

log = logging.getLogger(__name__)


class EventsApp(Flask):
    """Flask, with the automatic answer to OPTIONS in JSON like every other answer."""

    def make_default_options_response(self) -> Response:
        """200 `{"allow": [...]}` with the Allow header (Flask's own has an empty HTML body)."""
        methods = sorted(super().make_default_options_response().allow)
        response = jsonify(allow=methods)
        response.allow.update(methods)
        return response


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the events app; test_config overrides DATABASE, API_KEY, CLOCK, OFFLOAD, ..."""
    _ensure_logging()
    app = EventsApp(__name__)
    settings = get_settings()
    svc = settings.services
    app.config.from_mapping(
        DATABASE=settings.stack.data_dir / "events" / "events.db",
        API_KEY=svc.api_key.get_secret_value(),
        BATCH_LIMIT=svc.events_batch_limit,
        MAX_CONTENT_LENGTH=svc.events_max_body_bytes,
        PAGE_SIZE=svc.page_size,
        MAX_PAGE_SIZE=svc.max_page_size,
        # What "now" is for received_at and the occurred_at check; tests hand in a fake clock.
        CLOCK=now_utc,
        DB_TIMEOUT_S=10.0,
        GROUP_COMMIT_MAX_EVENTS=svc.events_group_commit_max_events,
        # Where blocking SQLite calls run: gevent's threadpool under the gevent worker, else inline.
        OFFLOAD=offload_for_this_process(),
    )
    if test_config:
        app.config.update(test_config)
    _check_config(app.config)
    database = Path(app.config["DATABASE"])
    database.parent.mkdir(parents=True, exist_ok=True)
    # Responses keep the documented field order instead of sorting keys.
    app.json.sort_keys = False  # type: ignore[attr-defined]
    store = EventStore(
        database,
        timeout_s=app.config["DB_TIMEOUT_S"],
        offload=app.config["OFFLOAD"],
        max_group_events=app.config["GROUP_COMMIT_MAX_EVENTS"],
    )
    db.init_app(app, store)
    timing.init_app(app)
    app.register_blueprint(health.bp)
    app.register_blueprint(ingest.bp)
    app.register_blueprint(reads.bp)
    app.register_blueprint(stats.bp)
    app.register_blueprint(openapi.bp)
    register_error_handlers(app)
    log.info(
        "events api ready database=%s batch_limit=%d max_body_bytes=%d page_size=%d/%d "
        "group_commit_max_events=%d offload=%s",
        database,
        app.config["BATCH_LIMIT"],
        app.config["MAX_CONTENT_LENGTH"],
        app.config["PAGE_SIZE"],
        app.config["MAX_PAGE_SIZE"],
        app.config["GROUP_COMMIT_MAX_EVENTS"],
        getattr(app.config["OFFLOAD"], "__name__", app.config["OFFLOAD"]),
    )
    return app


def _check_config(config: dict[str, Any]) -> None:
    # Refuse to start rather than serve writes nobody can authorise, or limits that make no sense.
    if not config["API_KEY"]:
        raise ValueError("API_KEY is empty: set HEADWATER_API_KEY")
    for name in (
        "BATCH_LIMIT",
        "MAX_CONTENT_LENGTH",
        "PAGE_SIZE",
        "MAX_PAGE_SIZE",
        "GROUP_COMMIT_MAX_EVENTS",
    ):
        if not isinstance(config[name], int) or config[name] < 1:
            raise ValueError(f"{name} must be a positive integer, got {config[name]!r}")
    if config["PAGE_SIZE"] > config["MAX_PAGE_SIZE"]:
        raise ValueError("PAGE_SIZE must not exceed MAX_PAGE_SIZE")


def _ensure_logging() -> None:
    # gunicorn configures only its own loggers; without a root handler the per-request lines
    # (INFO) would be dropped. A host that configured logging already is left alone.
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO,
            format="%(asctime)s %(levelname)s [%(process)d] %(name)s %(message)s",
        )
