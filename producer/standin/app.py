"""The external-API stand-in's app factory: `gunicorn 'producer.standin.app:create_app()'`."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound

from headwater.settings import get_settings
from headwater.sources import load_sources
from producer.standin import devices, files, health
from producer.standin.datafiles import DataFileUnavailable
from producer.standin.query import BadParameter
from producer.standin.state import EXTENSION, build_state, get_standin

log = logging.getLogger(__name__)


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the stand-in app; test_config overrides DATA_DIR, EXTRA_DATA_DIR, PAGE_SIZE, ...

    LOAD_SOURCES is the zero-argument function that returns the declared sources (name -> Source);
    each file route is windowed by the event-time field its source declares.
    """
    _ensure_logging()
    app = Flask(__name__)
    svc = get_settings().services
    app.config.from_mapping(
        DATA_DIR=svc.standin_data_dir,
        EXTRA_DATA_DIR=svc.standin_extra_data_dir,
        LOAD_SOURCES=load_sources,
        PAGE_SIZE=svc.page_size,
        MAX_PAGE_SIZE=svc.max_page_size,
        SIMULATOR_DEVICES=svc.simulator_devices,
    )
    if test_config:
        app.config.update(test_config)
    app.extensions[EXTENSION] = build_state(app.config)
    # Records keep the key order of their source (the simulator's documented shape), unsorted.
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.register_blueprint(health.bp)
    app.register_blueprint(devices.bp)
    app.register_blueprint(files.bp)
    app.register_error_handler(BadParameter, _bad_parameter)
    app.register_error_handler(DataFileUnavailable, _data_file_unavailable)
    app.register_error_handler(NotFound, _not_found)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected)
    log.info(
        "standin ready data_dir=%s extra_data_dir=%s page_size=%s max_page_size=%s devices=%s",
        app.config["DATA_DIR"],
        app.config["EXTRA_DATA_DIR"],
        app.config["PAGE_SIZE"],
        app.config["MAX_PAGE_SIZE"],
        app.config["SIMULATOR_DEVICES"],
    )
    return app


def _ensure_logging() -> None:
    # gunicorn configures only its own loggers; without a root handler the per-request lines
    # (INFO) would be dropped. A host that configured logging already is left alone.
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s"
        )


def _error(status: int, body: dict[str, Any]) -> tuple[Response, int]:
    return jsonify(body), status


def _bad_parameter(exc: BadParameter) -> tuple[Response, int]:
    log.info("standin rejected path=%s status=400 problems=%s", request.path, exc)
    details = [{"field": p.field, "problem": p.problem} for p in exc.problems]
    return _error(400, {"error": "bad_parameter", "details": details})


def _data_file_unavailable(exc: DataFileUnavailable) -> tuple[Response, int]:
    # 503, not 500: a file caught mid-copy parses on a later try, and pullers retry 5xx.
    log.warning("standin unavailable path=%s problem=%s", request.path, exc)
    return _error(503, {"error": "data_file_unavailable", "detail": str(exc)})


def _not_found(exc: NotFound) -> tuple[Response, int]:
    log.info("standin not found path=%s", request.path)
    detail = exc.description if exc.description != NotFound.description else "no such route"
    routes = get_standin().route_list()
    return _error(404, {"error": "not_found", "detail": detail, "routes": routes})


def _http_error(exc: HTTPException) -> tuple[Response, int]:
    name = (exc.name or "error").lower().replace(" ", "_")
    response, status = _error(exc.code or 500, {"error": name, "detail": exc.description})
    if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
        response.headers["Allow"] = ", ".join(sorted(exc.valid_methods))
    return response, status


def _unexpected(exc: Exception) -> tuple[Response, int]:
    log.exception("standin failed path=%s query=%s", request.path, request.query_string)
    return _error(500, {"error": "internal", "detail": type(exc).__name__})
