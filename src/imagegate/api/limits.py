"""Refuse request bodies over the configured size before they are read into memory."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from imagegate.errors import BodyTooLarge


class BodySizeLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self.app(scope, _refuse(self.max_bytes), send)
            return
        await self.app(scope, self._counting(receive), send)

    def _counting(self, receive: Receive) -> Receive:
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise _too_large(self.max_bytes)
            return message

        return counted


def _refuse(max_bytes: int) -> Receive:
    async def refused() -> Message:
        raise _too_large(max_bytes)

    return refused


def _too_large(max_bytes: int) -> BodyTooLarge:
    return BodyTooLarge(f"The request body is over {max_bytes} bytes.", max_bytes=max_bytes)
