"""``imagegate worker --metrics-port``: a small HTTP server for Prometheus and the kubelet.

- ``GET /metrics``: the Prometheus exposition (this process's counters and histograms,
  and the queue and job gauges read from the database).
- ``GET /healthz``: liveness. 200 while every worker thread's loop is alive or the pool
  drains; 503 while the model loads (``starting``: a startup probe gives it room) and when
  a thread died or stalled (:mod:`imagegate.worker.liveness`).
- ``GET /readyz``: readiness. 200 once the model is loaded and the workers claim; 503
  while it loads and once draining has begun.

The standard library's threading HTTP server, on a daemon thread: probes and scrapes are
few, small and short, and it needs nothing the worker does not have already.
"""

from __future__ import annotations

import json
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

import structlog
from prometheus_client import CONTENT_TYPE_LATEST

from imagegate.worker.liveness import Health

log = structlog.get_logger(__name__)


class ProbeTarget(Protocol):
    def metrics(self) -> bytes: ...

    def liveness(self) -> Health: ...

    def readiness(self) -> Health: ...


class ProbeServer:
    def __init__(self, target: ProbeTarget, host: str, port: int) -> None:
        handler = type("Handler", (_ProbeHandler,), {"target": target})
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="worker-probes", daemon=True
        )

    @property
    def port(self) -> int:
        """The port bound (the one asked for, or the one chosen for port 0)."""
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()
        host = self._server.server_address[0]
        log.info("worker.probes_listening", host=host, port=self.port)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class _ProbeHandler(BaseHTTPRequestHandler):
    target: ProbeTarget
    server_version = "imagegate-worker"

    def do_GET(self) -> None:
        try:
            self._route(self.path.split("?", 1)[0])
        except Exception:  # a probe must answer, never drop the connection
            log.exception("worker.probe_failed", path=self.path)
            self._send_json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": "internal error"})

    def _route(self, path: str) -> None:
        if path == "/metrics":
            self._send(HTTPStatus.OK, self.target.metrics(), CONTENT_TYPE_LATEST)
        elif path == "/healthz":
            self._send_health(self.target.liveness())
        elif path == "/readyz":
            self._send_health(self.target.readiness())
        else:
            self._send_json(HTTPStatus.NOT_FOUND, {"error": "not found"})

    def _send_health(self, health: Health) -> None:
        status = HTTPStatus.OK if health.ok else HTTPStatus.SERVICE_UNAVAILABLE
        body: dict[str, Any] = {"status": health.status}
        if health.workers:
            body["workers"] = health.workers
        self._send_json(status, body)

    def _send_json(self, status: HTTPStatus, body: dict[str, Any]) -> None:
        self._send(status, json.dumps(body).encode(), "application/json")

    def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("worker.probe", request=format % args)
