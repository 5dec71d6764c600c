"""HTTP request counts and latency, by route template (``/v1/jobs/{job_id}``, never the
id itself, so the series stay few). The time is until the response starts: what a client
waits for, and for an event stream the time to its first byte, not its whole life."""

from __future__ import annotations

import time

from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from imagegate.metrics import SECONDS_BUCKETS

UNMATCHED = "unmatched"  # no route: a 404, or a refusal before routing
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

HTTP_REQUESTS = Counter(
    "imagegate_http_requests",
    "HTTP requests answered, by route template, method and status.",
    ["route", "method", "status"],
)
HTTP_LATENCY = Histogram(
    "imagegate_http_request_duration_seconds",
    "Time from a request's arrival to the start of its response, by route template.",
    ["route", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, *SECONDS_BUCKETS),
)


def route_of(scope: Scope) -> str:
    path = getattr(scope.get("route"), "path", None)
    return path if isinstance(path, str) else UNMATCHED


class RequestMetrics:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def timed_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                route = route_of(scope)
                method = scope["method"] if scope["method"] in METHODS else "other"
                HTTP_LATENCY.labels(route, method).observe(time.perf_counter() - started)
                HTTP_REQUESTS.labels(route, method, str(message["status"])).inc()
            await send(message)

        await self.app(scope, receive, timed_send)
