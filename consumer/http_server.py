"""/healthz and /metrics over HTTP, served from a daemon thread next to the consumer loop."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

log = logging.getLogger(__name__)

HealthProbe = Callable[[], tuple[bool, dict[str, object]]]


class StatusServer:
    """GET /healthz (200 or 503 with a JSON body) and GET /metrics (Prometheus text)."""

    def __init__(
        self, host: str, port: int, health: HealthProbe, registry: CollectorRegistry
    ) -> None:
        probe, reg = health, registry

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/healthz":
                    ok, body = probe()
                    self._send(200 if ok else 503, "application/json", json.dumps(body).encode())
                elif path == "/metrics":
                    self._send(200, CONTENT_TYPE_LATEST, generate_latest(reg))
                else:
                    self._send(404, "application/json", b'{"error": "not found"}')

            def _send(self, status: int, content_type: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                # Health probes every few seconds would drown the batch log lines.
                return

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="status-http")
        self._thread.daemon = True

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()
        log.info("status server listening port=%d paths=/healthz,/metrics", self.port)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
