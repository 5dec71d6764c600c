"""uvicorn's HTTP and WebSocket protocols, with the timeouts a slow client must not outlast.

uvicorn waits without limit for a peer to read what it is sent, and for a new connection
to send its request: a client that stops reading (its TCP window full) would keep an SSE
stream's task, a WebSocket, or an image download's buffered body forever, and a socket
opened and left silent would never be closed. Here a connection whose writes have waited
``IMAGEGATE_SEND_TIMEOUT_S`` for the peer to read is aborted (not closed: a close would
wait for the same buffer to drain), which ends the stream and frees its slot; and one
whose request headers take longer than ``IMAGEGATE_HEADER_TIMEOUT_S`` is closed.
``IMAGEGATE_SEND_BUFFER_BYTES`` caps what each connection buffers for its reader, in the
kernel and in the transport, so stalled readers pin less memory (and stall sooner).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from typing import Any, ClassVar

import structlog
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from imagegate.settings import Settings

log = structlog.get_logger(__name__)


class WriteDeadline:
    """Armed while the transport's buffer is over its high-water mark (uvicorn's writers
    then wait); aborts the connection if the peer reads nothing for ``seconds``."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._timer: asyncio.TimerHandle | None = None

    def arm(self, transport: asyncio.Transport) -> None:
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.seconds, _abort, transport)

    def disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def _abort(transport: asyncio.Transport) -> None:
    """Reset, so the kernel drops what it still holds for the peer too (a plain close
    would leave it trying to deliver that for minutes)."""
    log.warning("connection.send_timeout", peer=transport.get_extra_info("peername"))
    sock = transport.get_extra_info("socket")
    with contextlib.suppress(OSError):  # already gone: nothing is left to drop
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


class DeadlinedWrites:
    """The send deadline, for a uvicorn protocol: armed when the transport pauses its
    writer, disarmed when it resumes or the connection ends."""

    write_deadline: WriteDeadline
    transport: asyncio.Transport

    def pause_writing(self) -> None:
        super().pause_writing()  # type: ignore[misc]
        self.write_deadline.arm(self.transport)

    def resume_writing(self) -> None:
        self.write_deadline.disarm()
        super().resume_writing()  # type: ignore[misc]

    def connection_lost(self, exc: Exception | None) -> None:
        self.write_deadline.disarm()
        super().connection_lost(exc)  # type: ignore[misc]


class GuardedHttp(DeadlinedWrites, HttpToolsProtocol):
    send_timeout_s: ClassVar[float] = 30.0
    header_timeout_s: ClassVar[float] = 20.0
    send_buffer_bytes: ClassVar[int | None] = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.write_deadline = WriteDeadline(self.send_timeout_s)
        self.header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if self.send_buffer_bytes is not None:
            _cap_send_buffer(transport, self.send_buffer_bytes)
        self._await_headers()

    def on_headers_complete(self) -> None:
        self._headers_arrived()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.pipeline and not self.transport.is_closing():
            self._await_headers()  # the next request's, while uvicorn's keep-alive runs

    def connection_lost(self, exc: Exception | None) -> None:
        self._headers_arrived()
        super().connection_lost(exc)

    def _await_headers(self) -> None:
        self._headers_arrived()
        self.header_timer = self.loop.call_later(self.header_timeout_s, self._headers_late)

    def _headers_arrived(self) -> None:
        if self.header_timer is not None:
            self.header_timer.cancel()
            self.header_timer = None

    def _headers_late(self) -> None:
        self.header_timer = None
        if not self.transport.is_closing():
            self.transport.close()


def _cap_send_buffer(transport: asyncio.Transport, size: int) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)
    transport.set_write_buffer_limits(high=size)


class GuardedWebSocket(DeadlinedWrites, WebSocketsSansIOProtocol):
    send_timeout_s: ClassVar[float] = 30.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.write_deadline = WriteDeadline(self.send_timeout_s)


def connection_protocols(settings: Settings) -> dict[str, type[asyncio.Protocol]]:
    """uvicorn's ``http`` and ``ws`` options: the guarded protocols, with our timeouts."""

    class Http(GuardedHttp):
        send_timeout_s = settings.send_timeout_s
        header_timeout_s = settings.header_timeout_s
        send_buffer_bytes = settings.send_buffer_bytes

    class WebSocket(GuardedWebSocket):
        send_timeout_s = settings.send_timeout_s

    return {"http": Http, "ws": WebSocket}
