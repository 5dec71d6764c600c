"""Running the app under uvicorn: in the foreground (``serve``), or in a background thread
on a free loopback port (the embedded ``imagegate generate``, and the tests)."""

from __future__ import annotations

import logging
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

import uvicorn
from fastapi import FastAPI

from imagegate.api.app import create_app
from imagegate.api.connections import connection_protocols
from imagegate.settings import Settings


def serve(settings: Settings, workers: int, host: str, port: int) -> None:
    app = create_app(settings, workers)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=settings.log_level,
        timeout_graceful_shutdown=int(settings.drain_grace_s) + 5,
        **uvicorn_options(settings),
    )
    logging.getLogger("uvicorn.access").addFilter(RedactSignatures())
    _DrainingServer(config, app).run()


class RedactSignatures(logging.Filter):
    """Signed URLs are capabilities: the access log keeps their path, never their ``sig``."""

    SIG = re.compile(r"([?&]sig=)[^&\s]+")

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and any(isinstance(a, str) and "sig=" in a for a in args):
            record.args = tuple(
                self.SIG.sub(r"\1[redacted]", arg) if isinstance(arg, str) else arg for arg in args
            )
        return True


class _DrainingServer(uvicorn.Server):
    """Stops the in-process workers claiming the moment SIGTERM arrives. uvicorn runs the
    app's shutdown (which drains them) only after open connections close, and a client
    following a job over SSE would otherwise keep new jobs starting meanwhile."""

    def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
        super().__init__(config)
        self.app = app

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        runtime = getattr(self.app.state, "runtime", None)
        if runtime is not None and runtime.pool is not None:
            runtime.pool.stop_claiming()
        super().handle_exit(sig, frame)


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """Trust ``X-Forwarded-For`` and ``-Proto`` only from the configured proxies. uvicorn
    trusts any local peer by default, which lets a caller on the host forge its address
    (in the audit log, and for per-address rate limits). Cap WebSocket messages. And give
    slow or silent clients timeouts (api/connections.py), so they cannot hold the server."""
    proxies = settings.trusted_proxies
    return {
        "proxy_headers": bool(proxies),
        "forwarded_allow_ips": ",".join(proxies) or None,
        # A WebSocket message is held to the HTTP body limit (uvicorn allows 16 MiB).
        "ws_max_size": settings.max_body_bytes,
        "timeout_keep_alive": settings.keep_alive_timeout_s,
        "ws_ping_interval": settings.ws_ping_interval_s,
        "ws_ping_timeout": settings.ws_ping_timeout_s,
        **connection_protocols(settings),
    }


@contextmanager
def background_server(settings: Settings, workers: int) -> Iterator[str]:
    """Serve on 127.0.0.1 at a free port in a thread; yields the base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    bound = settings.model_copy(update={"host": "127.0.0.1", "port": port})  # for own links
    app = create_app(bound, workers)
    config = uvicorn.Config(app, log_level="warning", lifespan="on", **uvicorn_options(settings))
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the server failed to start")
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
