"""Every error as JSON: `{"error": "<code>", "details": [{"field": ..., "problem": ...}]}`."""

from __future__ import annotations

import logging
import sqlite3

from flask import Flask, Response, jsonify, request
from gunicorn.http.errors import NoMoreData, ParseException
from werkzeug.exceptions import (
    HTTPException,
    MethodNotAllowed,
    NotFound,
    RequestEntityTooLarge,
    RequestTimeout,
    UnsupportedMediaType,
)
from werkzeug.wrappers import Response as WerkzeugResponse

from producer.events.validation import Problem
from producer.events.writelock import LockTimeout

log = logging.getLogger(__name__)

# werkzeug's own errors: our code and the field each one is about.
_HTTP_ERRORS: dict[type[HTTPException], tuple[str, str]] = {
    RequestEntityTooLarge: ("payload_too_large", "body"),
    # A body not received in full in time (producer/events/deadlines.py).
    RequestTimeout: ("request_timeout", "body"),
    UnsupportedMediaType: ("unsupported_media_type", "Content-Type"),
    NotFound: ("not_found", "path"),
    MethodNotAllowed: ("method_not_allowed", "method"),
}


class ApiError(Exception):
    """A request refused with a status, an error code and the problems that caused it."""

    def __init__(self, status: int, error: str, problems: list[Problem]) -> None:
        super().__init__(f"{status} {error}")
        self.status = status
        self.error = error
        self.problems = problems

    @classmethod
    def one(cls, status: int, error: str, field: str, problem: str) -> ApiError:
        """An error about a single field."""
        return cls(status, error, [Problem(field, problem)])


def error_body(error: str, problems: list[Problem]) -> dict[str, object]:
    """The JSON body of every error response."""
    return {"error": error, "details": [p.as_dict() for p in problems]}


def _log_rejected(status: int, error: str, problems: list[Problem]) -> None:
    summary = "; ".join(f"{p.field}: {p.problem}" for p in problems[:10])
    if len(problems) > 10:
        summary += f"; ... {len(problems) - 10} more"
    log.info(
        "events rejected method=%s path=%s status=%d error=%s problems=%d reason=%r",
        request.method,
        request.path,
        status,
        error,
        len(problems),
        summary,
    )


def _discard_unread_body() -> None:
    # gunicorn answers "keep-alive", then closes a connection whose unread body passes 64 KiB, so
    # the client's next request on it fails. A refused body within the limit is read and dropped
    # to keep the connection usable; one over the limit (413) is not read: that connection closes.
    limit = request.max_content_length
    length = request.content_length
    if length is None or (limit is not None and length > limit):
        return
    try:
        while request.stream.read(64 * 1024):
            pass
    except (HTTPException, OSError):
        pass


def _api_error(exc: ApiError) -> tuple[Response, int]:
    _discard_unread_body()
    _log_rejected(exc.status, exc.error, exc.problems)
    return jsonify(error_body(exc.error, exc.problems)), exc.status


def _describe(exc: HTTPException) -> str:
    if isinstance(exc, RequestEntityTooLarge):
        return f"is larger than the {request.max_content_length} bytes allowed"
    if isinstance(exc, NotFound):
        return f"no route {request.path[:100]!r}"
    if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
        return f"{request.method} is not allowed here; use {', '.join(sorted(exc.valid_methods))}"
    return exc.description or exc.name


def _http_error(exc: HTTPException) -> WerkzeugResponse:
    status = exc.code or 500
    error, field = next(
        (names for kind, names in _HTTP_ERRORS.items() if isinstance(exc, kind)),
        ((exc.name or "error").lower().replace(" ", "_"), "request"),
    )
    problems = [Problem(field, _describe(exc))]
    # A body too large or too slow is not read any further: its connection closes instead.
    if not isinstance(exc, RequestEntityTooLarge | RequestTimeout):
        _discard_unread_body()
    _log_rejected(status, error, problems)
    # get_response keeps werkzeug's headers (e.g. Allow on a 405); only the body becomes JSON.
    response = exc.get_response()
    response.set_data(jsonify(error_body(error, problems)).get_data())
    response.content_type = "application/json"
    return response


def _unreadable_body(exc: Exception) -> tuple[Response, int]:
    # gunicorn raises these while the app reads a body whose framing is broken (a malformed chunk,
    # or a client gone as the API reads past the limit): the client's fault, not ours. Nothing
    # more is read from the stream, and gunicorn closes the connection after this answer.
    text = str(exc) or type(exc).__name__
    problems = [Problem("body", f"could not be read: {text[:200]}")]
    _log_rejected(400, "malformed_body", problems)
    return jsonify(error_body("malformed_body", problems)), 400


def _unavailable(exc: Exception) -> tuple[Response, int]:
    # 503, not 500: a locked or unwritable database is worth a retry (with the Idempotency-Key).
    log.warning(
        "events unavailable method=%s path=%s problem=%r", request.method, request.path, exc
    )
    body = error_body("unavailable", [Problem("database", str(exc) or type(exc).__name__)])
    return jsonify(body), 503


def _unexpected(exc: Exception) -> tuple[Response, int]:
    log.exception("events failed method=%s path=%s", request.method, request.path)
    body = error_body("internal_error", [Problem("request", type(exc).__name__)])
    return jsonify(body), 500


def register_error_handlers(app: Flask) -> None:
    """Answer every error, ours and werkzeug's, with the JSON error shape."""
    app.register_error_handler(ApiError, _api_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(ParseException, _unreadable_body)
    app.register_error_handler(NoMoreData, _unreadable_body)  # an OSError, but not a 503
    app.register_error_handler(LockTimeout, _unavailable)
    app.register_error_handler(sqlite3.Error, _unavailable)
    app.register_error_handler(OSError, _unavailable)
    app.register_error_handler(Exception, _unexpected)
