"""The gunicorn worker the events API runs on: slow clients are cut off, errors are JSON.

Slow clients. On gunicorn's threaded worker a client that trickles its request holds one of its
16 threads for as long as it likes, and 200 of them stop the API. This worker is gunicorn's gevent
worker instead: a connection costs a greenlet, not a thread, and has deadlines:
- the request head (line and headers) must be complete `events_header_timeout_s` after the
  connection opened or its previous answer went out, else the connection is closed (an idle
  keep-alive connection is closed the same way, without an answer that could be taken for the
  answer to a request sent at that moment);
- the body must be complete `events_body_timeout_s` after the head, else the app answers a JSON
  408 (producer/events/deadlines.py) and the connection is closed.
The store's blocking SQLite calls run on gevent's native threadpool (producer/events/offload.py),
so a commit's fsync never stalls the other connections.

Errors. gunicorn answers a request it cannot parse (431 headers too large, 414 request line too
long, 400 bad request line or header, ...) itself, before the app sees it, with an HTML page. Here
only those bytes are replaced: gunicorn still picks the status, logs the error and writes the
access line; the body becomes the `{"error", "details"}` shape of producer/events/errors.py.

Serve with `--worker-class` WORKER_CLASS (infra/stack.py).
"""

from __future__ import annotations

import json
import re
import socket
from http import HTTPStatus
from typing import Any

import gevent
from gunicorn import util
from gunicorn.http import errors as http_errors
from gunicorn.workers.ggevent import GeventWorker

from headwater.settings import get_settings
from producer.events.deadlines import DeadlineBody
from producer.events.errors import error_body
from producer.events.validation import Problem

WORKER_CLASS = "producer.events.server.EventsWorker"
_STATUS_LINE = re.compile(rb"HTTP/1\.[01] (\d{3}) ([^\r\n]*)\r\n")
_PROBLEM_MAX = 200

# What each of gunicorn's parse errors is about, named like the app's fields.
_FIELDS: tuple[tuple[tuple[type[Exception], ...], str], ...] = (
    (
        (
            http_errors.LimitRequestLine,
            http_errors.InvalidRequestLine,
            http_errors.InvalidRequestMethod,
            http_errors.InvalidHTTPVersion,
        ),
        "request_line",
    ),
    (
        (
            http_errors.LimitRequestHeaders,
            http_errors.InvalidHeader,
            http_errors.InvalidHeaderName,
            http_errors.ObsoleteFolding,
            http_errors.InvalidSchemeHeaders,
            http_errors.UnsupportedTransferCoding,
            http_errors.ExpectationFailed,
        ),
        "headers",
    ),
    (
        (
            http_errors.InvalidChunkSize,
            http_errors.ChunkMissingTerminator,
            http_errors.InvalidChunkExtension,
        ),
        "body",
    ),
)


class _Captured:
    """Stands in for the client socket while gunicorn writes its error, keeping the bytes."""

    def __init__(self) -> None:
        self.data = b""

    def gettimeout(self) -> float:
        return 0.0

    def setblocking(self, flag: bool) -> None:
        pass

    def send(self, data: bytes) -> int:
        self.data += bytes(data)
        return len(data)

    def sendall(self, data: bytes) -> None:
        self.send(data)


def error_status(written: bytes, exc: BaseException) -> tuple[int, str]:
    """The status and reason gunicorn chose for `exc`, read from the answer it wrote."""
    match = _STATUS_LINE.match(written)
    if match is not None:
        return int(match.group(1)), match.group(2).decode("latin-1")
    # Nothing readable was written: a parse error is the client's fault, anything else ours.
    if isinstance(exc, http_errors.ParseException):
        return 400, "Bad Request"
    return 500, "Internal Server Error"


def error_code(status: int) -> str:
    """The API's error code for a status: "internal_error" as the app says, else its phrase."""
    if status == 500:
        return "internal_error"
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        return "error"
    return re.sub(r"[^a-z0-9]+", "_", phrase.lower()).strip("_")


def error_problem(status: int, exc: BaseException) -> Problem:
    """The field and problem of a detail about `exc`."""
    field = next((name for kinds, name in _FIELDS if isinstance(exc, kinds)), "request")
    if status == 500:
        # Like the app's 500: the kind of failure, not its text.
        return Problem(field, type(exc).__name__)
    text = str(exc) or type(exc).__name__
    if len(text) > _PROBLEM_MAX:
        text = text[:_PROBLEM_MAX] + "..."
    return Problem(field, text)


def json_error_response(written: bytes, exc: BaseException) -> bytes:
    """The HTTP answer to send instead of gunicorn's `written` one: same status, a JSON body."""
    status, reason = error_status(written, exc)
    detail = error_problem(status, exc)
    body = json.dumps(error_body(error_code(status), [detail]), separators=(",", ":"))
    head = (
        f"HTTP/1.1 {status} {reason}\r\n"
        "Connection: close\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "\r\n"
    )
    return head.encode("latin-1") + body.encode("ascii")


class EventsWorker(GeventWorker):
    """gunicorn's gevent worker: deadlines for slow clients, its own errors answered in JSON."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        services = get_settings().services
        self.header_timeout_s = services.events_header_timeout_s
        self.body_timeout_s = services.events_body_timeout_s

    def init_process(self) -> None:
        """Log the deadlines, then gunicorn's own start (patch, load the app, serve)."""
        self.log.info(
            "events worker deadlines header_timeout_s=%g body_timeout_s=%g",
            self.header_timeout_s,
            self.body_timeout_s,
        )
        super().init_process()

    def timeout_ctx(self) -> gevent.Timeout:
        """The deadline for the next request's head (gunicorn's own is the keep-alive setting)."""
        # False: past it the block just ends, no request was read and gunicorn closes quietly.
        return gevent.Timeout(self.header_timeout_s, False)

    def handle_request(self, listener_name: Any, req: Any, sock: Any, addr: Any) -> None:
        """Serve one request with its body's deadline running from now."""
        body = req.body

        def close_after_answer() -> None:
            req.must_close = True

        req.body = DeadlineBody(body, self.body_timeout_s, gevent.Timeout, close_after_answer)
        try:
            super().handle_request(listener_name, req, sock, addr)
        finally:
            # What the app left unread is drained (or the connection closed) by gunicorn under
            # the next head's deadline, not this body's.
            req.body = body

    def handle_error(self, req: Any, client: socket.socket, addr: Any, exc: BaseException) -> None:
        """gunicorn's answer to a request it could not serve, with the API's JSON as its body."""
        # gunicorn picks the status, logs and writes its HTML answer into `written`; the client
        # gets the same status with the JSON body instead.
        written = _Captured()
        super().handle_error(req, written, addr, exc)
        try:
            util.write_nonblock(client, json_error_response(written.data, exc))
        except Exception:  # noqa: BLE001 - the client may be gone; as gunicorn, answer nobody
            self.log.debug("Failed to send error message.")
