"""A request id on every request: in every log line the request causes, and in the answer.

A caller's (or a proxy's) ``X-Request-ID`` is kept when it is plausible: 1 to 128
characters of letters, digits and ``-_.:/+=``; anything else is replaced with a fresh
one, so a header cannot forge log lines or carry a payload into them. The id is echoed in
the response's ``X-Request-ID`` and bound to structlog's context for the request (the
route's thread too: Starlette copies the context into it). A job does not store it: the
``job.submitted`` line of the request that created a job names both ids.
"""

from __future__ import annotations

import re
import uuid

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = b"x-request-id"
PLAUSIBLE = re.compile(rb"[A-Za-z0-9\-_.:/+=]{1,128}")


def request_id_of(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == HEADER and PLAUSIBLE.fullmatch(value):
            return bytes(value).decode("ascii")
    return uuid.uuid4().hex


class RequestId:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        request_id = request_id_of(scope)
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] in ("http.response.start", "websocket.accept"):
                headers = [h for h in message.get("headers", []) if h[0].lower() != HEADER]
                message["headers"] = [*headers, (HEADER, request_id.encode("ascii"))]
            await send(message)

        bound = structlog.contextvars.bind_contextvars(request_id=request_id)
        await self.app(scope, receive, send_with_id)
        # Unbound only on success: an unexpected error is logged by the server error
        # handler, outside every middleware, and its line should still name the request.
        # Each request runs in a task of its own, so the id goes no further.
        structlog.contextvars.reset_contextvars(**bound)
