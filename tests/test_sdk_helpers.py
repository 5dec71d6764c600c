"""What the SDK tests share: a loopback TCP proxy that can cut, stall or drop connections,
transports that record each attempt, and credentials. And tests that the proxy really
does what the SDK tests rely on it for, so that theirs cannot pass by accident."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from imagegate.settings import Settings
from tests.conftest import SettingsFactory

ADMIN_TOKEN = "sdk-admin-token-0123456789abcdef0123"
SMALL: dict[str, Any] = {"width": 64, "height": 64}


@dataclass
class Connection:
    client: socket.socket
    upstream: socket.socket
    sent: bytearray = field(default_factory=bytearray)  # what the client sent, verbatim

    def cut(self) -> None:
        for sock in (self.client, self.upstream):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


class Proxy:
    """A TCP proxy on 127.0.0.1 in front of a server. ``sever()`` cuts every open
    connection; ``drop_next`` connections pass the request on and are cut before the
    answer; ``stall_next`` pass it on and never answer."""

    def __init__(self, upstream: str) -> None:
        self.upstream = httpx.URL(upstream)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.connections: list[Connection] = []
        self.drop_next = 0
        self.stall_next = 0
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def requests(self, needle: bytes) -> list[bytes]:
        """What the client sent on each connection whose bytes contain ``needle``."""
        with self._lock:
            return [bytes(c.sent) for c in self.connections if needle in c.sent]

    def sever(self) -> None:
        with self._lock:
            for connection in self.connections:
                connection.cut()

    def close(self) -> None:
        self.listener.close()
        self.sever()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            port = self.upstream.port or 80
            upstream = socket.create_connection((self.upstream.host, port))
            connection = Connection(client, upstream)
            with self._lock:
                self.connections.append(connection)
                mode = "drop" if self.drop_next else "stall" if self.stall_next else "pass"
                self.drop_next -= mode == "drop"
                self.stall_next -= mode == "stall"
            threading.Thread(target=self._forward, args=(connection,), daemon=True).start()
            threading.Thread(target=self._answer, args=(connection, mode), daemon=True).start()

    def _forward(self, connection: Connection) -> None:
        with contextlib.suppress(OSError):
            while data := connection.client.recv(65536):
                with self._lock:
                    connection.sent += data
                connection.upstream.sendall(data)

    def _answer(self, connection: Connection, mode: str) -> None:
        with contextlib.suppress(OSError):
            while data := connection.upstream.recv(65536):
                if mode == "drop":  # the server has answered: the client never hears it
                    connection.cut()
                    return
                if mode == "pass":
                    connection.client.sendall(data)


@pytest.fixture
def proxy_factory() -> Iterator[Callable[[str], Proxy]]:
    made: list[Proxy] = []

    def make(upstream: str) -> Proxy:
        made.append(Proxy(upstream))
        return made[-1]

    yield make
    for proxy in made:
        proxy.close()


@dataclass
class Attempt:
    method: str
    path: str
    status: int | None  # None: the attempt raised (a network error)
    at: float  # time.monotonic() when it was sent
    headers: dict[str, str]


class Recording(httpx.BaseTransport):
    """The real HTTP transport, with each attempt written down."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.attempts: list[Attempt] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        attempt = Attempt(request.method, request.url.path, None, time.monotonic(), {})
        attempt.headers = dict(request.headers)
        self.attempts.append(attempt)
        response = self.inner.handle_request(request)
        attempt.status = response.status_code
        return response

    def close(self) -> None:
        self.inner.close()


class AsyncRecording(httpx.AsyncBaseTransport):
    """An async transport (the app in-process, say), with each attempt written down; it
    can lose the answer of the next ``lose_next`` requests after the app has handled
    them, as a dropped connection would."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.attempts: list[Attempt] = []
        self.lose_next = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        attempt = Attempt(request.method, request.url.path, None, time.monotonic(), {})
        attempt.headers = dict(request.headers)
        self.attempts.append(attempt)
        response = await self.inner.handle_async_request(request)
        if self.lose_next:
            self.lose_next -= 1
            await response.aclose()
            raise httpx.ReadError("connection reset (lost by the test)")
        attempt.status = response.status_code
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


def required_settings(make_settings: SettingsFactory, **more: Any) -> Settings:
    return make_settings(
        auth="required", admin_token=ADMIN_TOKEN, auth_failures_per_minute=100_000, **more
    )


def new_key(api: httpx.Client, tenant: str, **fields: Any) -> str:
    body = {"tenant": tenant, "name": "sdk"} | fields
    response = api.post("/v1/admin/keys", json=body, headers=bearer(ADMIN_TOKEN))
    assert response.status_code == 201, response.text
    key: str = response.json()["key"]
    return key


def bearer(credential: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}"}


# -- the proxy itself --------------------------------------------------------------------


@pytest.fixture
def slow_api(
    server_factory: Callable[..., httpx.Client], make_settings: SettingsFactory
) -> httpx.Client:
    return server_factory(make_settings(sketch_delay_ms=2000))


def test_severing_cuts_a_live_event_stream(
    slow_api: httpx.Client, proxy_factory: Callable[[str], Proxy]
) -> None:
    proxy = proxy_factory(str(slow_api.base_url))
    job = slow_api.post("/v1/jobs", json={"prompt": "cut", "steps": 20} | SMALL).json()
    with (
        httpx.Client(base_url=proxy.url) as plain,
        plain.stream("GET", f"/v1/jobs/{job['id']}/events") as response,
    ):
        lines = response.iter_lines()
        assert next(line for line in lines if line.startswith("event:")) == "event: queued"
        proxy.sever()
        with pytest.raises(httpx.RemoteProtocolError):
            for _ in lines:
                pass


def test_a_dropped_answer_was_handled_by_the_server(
    slow_api: httpx.Client, proxy_factory: Callable[[str], Proxy]
) -> None:
    proxy = proxy_factory(str(slow_api.base_url))
    proxy.drop_next = 1
    with httpx.Client(base_url=proxy.url) as plain, pytest.raises(httpx.RemoteProtocolError):
        plain.post("/v1/jobs", json={"prompt": "lost answer"} | SMALL)
    (job,) = slow_api.get("/v1/jobs").json()["data"]
    assert job["prompt"] == "lost answer"  # made, though its answer never arrived
