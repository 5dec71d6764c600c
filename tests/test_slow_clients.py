"""Slow and stalled clients (issue 13) against a real uvicorn server on loopback: the bound
on open event streams, and the timeouts that free what a client that reads nothing holds."""

from __future__ import annotations

import asyncio
import contextlib
import json
import select
import socket
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from tests.conftest import SettingsFactory
from tests.helpers import eventually, wait_for_job
from tests.processes import serve

Server = Callable[..., httpx.Client]
# Small buffers on both sides, so a client that reads nothing stalls the server's writes
# after a few kilobytes rather than megabytes.
TIGHT = {"send_buffer_bytes": 4096, "send_timeout_s": 1.0}


def ws_url(client: httpx.Client, path: str) -> str:
    return str(client.base_url).replace("http", "ws", 1) + path


def streams_open(api: httpx.Client) -> float:
    for line in api.get("/metrics").text.splitlines():
        if line.startswith("imagegate_event_streams_open "):
            return float(line.split()[1])
    raise AssertionError("no imagegate_event_streams_open gauge")


def admitted(api: httpx.Client, path: str) -> bool:
    """Whether a new event stream is let in now (it is closed again at once)."""
    with api.stream("GET", path) as response:
        return response.status_code == 200


def stalled_reader(api: httpx.Client, target: str) -> socket.socket:
    """A client that sends its request, then never reads a byte of the answer.

    It sends TCP keep-alives after a second without news. The server's reset can arrive
    with a sequence number past what this full receive window took in, and the kernel then
    drops it as out of window (RFC 5961); a keep-alive to the closed connection is answered
    by a reset at the exact number, so a cut-off is seen either way, and a live server
    only acknowledges it (the window stays shut)."""
    address = urlsplit(str(api.base_url))
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)  # before connect: the window
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 1)
    sock.connect((address.hostname, address.port))
    sock.sendall(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    return sock


def cut_off(sock: socket.socket) -> bool:
    """Whether the server has reset or closed the connection (without reading it)."""
    poller = select.poll()
    poller.register(sock, 0)  # errors and hang-ups only: unread data does not count
    return bool(poller.poll(0))


def reset(sock: socket.socket) -> None:
    """Leave abruptly: a TCP reset, not a close."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


async def refused_socket(url: str) -> tuple[dict[str, Any], int]:
    """The one message a refused WebSocket gets, and its close code."""
    async with websockets.connect(url) as ws:
        message = json.loads(await asyncio.wait_for(ws.recv(), 10))
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)
    assert closed.value.rcvd is not None
    return message, closed.value.rcvd.code


@contextlib.contextmanager
def open_streams(api: httpx.Client, path: str, count: int) -> Iterator[list[httpx.Response]]:
    with contextlib.ExitStack() as stack:
        streams = [stack.enter_context(api.stream("GET", path)) for _ in range(count)]
        assert all(response.status_code == 200 for response in streams)
        yield streams


@pytest.fixture
def waiting(server_factory: Server, make_settings: SettingsFactory) -> tuple[httpx.Client, str]:
    """A server with no workers and room for 3 event streams, and a job that stays queued."""
    api = server_factory(make_settings(max_event_streams=3), workers=0)
    job = api.post("/v1/jobs", json={"prompt": "a queue that never moves"}).json()
    return api, job["id"]


def test_event_streams_past_the_bound_are_refused_until_one_ends(
    waiting: tuple[httpx.Client, str],
) -> None:
    api, job_id = waiting
    path = f"/v1/jobs/{job_id}/events"
    before = streams_open(api)
    with open_streams(api, path, 3) as streams:
        assert streams_open(api) == before + 3
        refused = api.get(path)
        assert refused.status_code == 503
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["code"] == "too_many_streams"
        assert int(refused.headers["retry-after"]) >= 1
        message, code = asyncio.run(refused_socket(ws_url(api, f"/v1/jobs/{job_id}/ws")))
        assert code == 1013 and message["data"]["code"] == "too_many_streams"
        message, code = asyncio.run(refused_socket(ws_url(api, "/ws/generate")))
        assert code == 1013 and message["code"] == "too_many_streams"
        streams[0].close()  # the client leaves: its slot is free again
        assert eventually(lambda: admitted(api, path), timeout_s=10)
    eventually(lambda: streams_open(api) == before, timeout_s=10)


def test_a_websocket_holds_a_slot_until_it_closes(waiting: tuple[httpx.Client, str]) -> None:
    api, job_id = waiting
    path = f"/v1/jobs/{job_id}/events"

    async def follow_while_full() -> bool:
        async with websockets.connect(ws_url(api, f"/v1/jobs/{job_id}/ws")):
            await asyncio.sleep(0.2)  # the slot is taken before the socket is accepted
            return await asyncio.to_thread(admitted, api, path)

    with open_streams(api, path, 2):
        assert asyncio.run(follow_while_full()) is False
        assert eventually(lambda: admitted(api, path), timeout_s=10)


def test_a_client_that_resets_its_connection_frees_its_slot(
    waiting: tuple[httpx.Client, str],
) -> None:
    api, job_id = waiting
    path = f"/v1/jobs/{job_id}/events"
    before = streams_open(api)
    with open_streams(api, path, 2):
        sock = stalled_reader(api, path)
        eventually(lambda: streams_open(api) == before + 3, timeout_s=10)
        assert not admitted(api, path)
        reset(sock)
        assert eventually(lambda: admitted(api, path), timeout_s=10)


def test_stalled_sse_readers_are_cut_off_and_their_slots_freed(
    server_factory: Server, make_settings: SettingsFactory
) -> None:
    # A long job, and keep-alives every millisecond: streams that write steadily to readers
    # that never read.
    settings = make_settings(
        max_event_streams=2, sse_keepalive_s=0.001, sketch_delay_ms=60_000, **TIGHT
    )
    api = server_factory(settings)
    job = api.post("/v1/jobs", json={"prompt": "nobody reads this"}).json()
    wait_for_job(api, job["id"], {"generating"})
    path = f"/v1/jobs/{job['id']}/events"
    before = streams_open(api)
    stalled = [stalled_reader(api, path) for _ in range(2)]
    try:
        eventually(lambda: streams_open(api) == before + 2, timeout_s=10)
        assert api.get("/health", timeout=5).status_code == 200  # the server still answers
        # The job never ends, so only the server can end these streams: after their
        # writes have waited a second on readers that read nothing.
        eventually(lambda: all(cut_off(sock) for sock in stalled), timeout_s=30)
        eventually(lambda: streams_open(api) == before, timeout_s=10)
        assert admitted(api, path)
    finally:
        for sock in stalled:
            sock.close()
        api.post(f"/v1/jobs/{job['id']}/cancel")


def test_a_stalled_image_download_is_cut_off_without_blocking_others(
    server_factory: Server, make_settings: SettingsFactory
) -> None:
    api = server_factory(make_settings(**TIGHT))
    job = api.post(
        "/v1/jobs",
        json={"prompt": "a detailed map", "width": 1024, "height": 1024, "output_format": "jpeg"},
    ).json()
    url = wait_for_job(api, job["id"])["images"][0]["url"]
    target = urlsplit(url)._replace(scheme="", netloc="").geturl()
    size = len(api.get(target).content)
    assert size > 64 * 1024  # far more than the buffers on the way hold
    stalled = [stalled_reader(api, target) for _ in range(3)]
    try:
        assert api.get("/health", timeout=5).status_code == 200
        assert len(api.get(target, timeout=5).content) == size  # a reader that reads is served
        eventually(lambda: all(cut_off(sock) for sock in stalled), timeout_s=30)
    finally:
        for sock in stalled:
            sock.close()


def test_a_connection_that_never_sends_its_request_is_closed(
    server_factory: Server, make_settings: SettingsFactory
) -> None:
    api = server_factory(make_settings(header_timeout_s=0.5))
    address = urlsplit(str(api.base_url))
    with socket.create_connection((address.hostname, address.port)) as silent:
        silent.sendall(b"GET /health HTTP/1.1\r\n")  # and the rest never comes
        silent.settimeout(15)
        assert silent.recv(1024) == b""  # closed by the server


@pytest.mark.slow
def test_imagegate_serve_bounds_streams_and_times_out_stalled_readers(
    tmp_path: Path, database_url: str
) -> None:
    env = {
        "IMAGEGATE_DATA_DIR": str(tmp_path / "data"),
        "IMAGEGATE_DATABASE_URL": database_url,
        "IMAGEGATE_SKETCH_DELAY_MS": "60000",
        "IMAGEGATE_MAX_EVENT_STREAMS": "1",
        "IMAGEGATE_SSE_KEEPALIVE_S": "0.001",
        "IMAGEGATE_SEND_BUFFER_BYTES": "4096",
        "IMAGEGATE_SEND_TIMEOUT_S": "1",
    }
    with serve(env, tmp_path / "serve.log", workers=1) as api:
        job = api.post("/v1/jobs", json={"prompt": "a stalled reader"}).json()
        wait_for_job(api, job["id"], {"generating"})
        path = f"/v1/jobs/{job['id']}/events"
        sock = stalled_reader(api, path)
        try:
            eventually(lambda: streams_open(api) == 1, timeout_s=10)
            assert api.get(path).status_code == 503
            eventually(lambda: cut_off(sock), timeout_s=30)
            assert eventually(lambda: admitted(api, path), timeout_s=10)
        finally:
            sock.close()
            api.post(f"/v1/jobs/{job['id']}/cancel")
