"""Refuse request bodies over the configured size before the app reads them.

The body is read here, up to the limit, and replayed to the app: a declared
Content-Length over the limit is refused at once, and a chunked body as soon as it
crosses the limit. Either way the client gets the usual 413 problem.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from imagegate.api.problems import problem_response
from imagegate.errors import BodyTooLarge


class BodySizeLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        framing = dict(scope["headers"])
        declared = framing.get(b"content-length", b"")
        if not declared and b"transfer-encoding" not in framing:
            await self.app(scope, receive, send)  # no body (RFC 9112 6.3): nothing to hold
            return
        body = (
            None
            if declared.isdigit() and int(declared) > self.max_bytes
            else await self._read(receive)
        )
        if body is None:
            refusal = BodyTooLarge(f"The request body is over {self.max_bytes} bytes.")
            response = problem_response(refusal, scope["path"], max_bytes=self.max_bytes)
            await response(scope, receive, send)
            return
        await self.app(scope, _replay(body, receive), send)

    async def _read(self, receive: Receive) -> bytes | None:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return b"".join(chunks)  # the client left; the app sees an empty body
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()  # after the body: wait for the disconnect, as usual
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay
