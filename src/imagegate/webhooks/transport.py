"""The sender's transport: httpx's own, over connections that read at most a few KiB.

Under httpcore, h11 buffers up to 100 KiB of a response head that has not ended yet. The
sender reads a response's status line and headers, never its body, and sends one request
per connection, so a cap on all that a connection reads caps the head: a head that has not
ended within ``limit`` bytes fails with HeadersTooLarge (seen as httpx.RemoteProtocolError).
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

MAX_HEADER_BYTES = 16 * 1024


class HeadersTooLarge(httpcore.RemoteProtocolError):
    """The response's status line and headers ran past the sender's limit."""


class CappedTransport(httpx.AsyncHTTPTransport):
    def __init__(self, limit: int = MAX_HEADER_BYTES) -> None:
        super().__init__()
        # httpx has no seam for httpcore's network backend: replace the pool it made with
        # one over capped connections (httpx's request and error mapping stay as they are).
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            max_connections=None,  # the sender bounds how many attempts run at once
            max_keepalive_connections=0,  # one response per connection, one budget each
            network_backend=_CappedBackend(httpcore.AnyIOBackend(), limit),
        )


class _CappedBackend(httpcore.AsyncNetworkBackend):
    def __init__(self, backend: httpcore.AsyncNetworkBackend, limit: int) -> None:
        self._backend, self._limit = backend, limit

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._backend.connect_tcp(host, port, timeout, local_address, socket_options)
        return _CappedStream(stream, self._limit)

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


class _CappedStream(httpcore.AsyncNetworkStream):
    """A connection that reads at most ``budget`` bytes in all (after TLS, if any)."""

    def __init__(self, stream: httpcore.AsyncNetworkStream, budget: int) -> None:
        self._stream, self._budget = stream, budget

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        if self._budget <= 0:
            raise HeadersTooLarge("the response's headers ran past the limit")
        data = await self._stream.read(min(max_bytes, self._budget), timeout)
        self._budget -= len(data)
        return data

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._stream.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._stream.start_tls(ssl_context, server_hostname, timeout)
        return _CappedStream(stream, self._budget)

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)
