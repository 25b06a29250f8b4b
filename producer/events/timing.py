"""Server-Timing on every answer: how long the server spent on the request, in milliseconds.

From the moment the worker hands the parsed request to Flask until its response is built (for a
POST /events that includes waiting for the group commit's fsync). A client subtracting it from
what it measured sees the time spent outside the handler: its own queueing, the socket, the
worker's event loop. The bench's events-API figures split their latency this way.
"""

from __future__ import annotations

import time

from flask import Flask, Response, g

HEADER = "Server-Timing"


def init_app(app: Flask) -> None:
    app.before_request(_start)
    app.after_request(_stamp)


def _start() -> None:
    g.request_started = time.perf_counter()


def _stamp(response: Response) -> Response:
    started = g.get("request_started")
    if started is not None:
        response.headers[HEADER] = f"app;dur={(time.perf_counter() - started) * 1000:.3f}"
    return response


def parse_duration_ms(value: str | None) -> float | None:
    """The `app` metric's duration of a Server-Timing header, None when absent or malformed."""
    if not value:
        return None
    for metric in value.split(","):
        name, *params = (part.strip() for part in metric.split(";"))
        if name != "app":
            continue
        for param in params:
            key, _, number = param.partition("=")
            if key.strip() == "dur":
                try:
                    return float(number)
                except ValueError:
                    return None
    return None
