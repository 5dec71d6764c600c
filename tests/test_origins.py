"""Cross-origin exposure (issue 16, finding 6) against a real server: DNS rebinding and
poisoned links through ``Host``, CSRF on state-changing routes, and cross-site WebSocket
hijacking, each refused; clients that are not browsers, and allowed pages, still served."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pytest
import websockets
from websockets.exceptions import InvalidStatus

from tests.conftest import SettingsFactory

ServerFactory = Callable[..., httpx.Client]
EVIL = "https://evil.example"


def ws_url(client: httpx.Client, path: str) -> str:
    return str(client.base_url).replace("http", "ws", 1) + path


def jobs_in(api: httpx.Client) -> int:
    return len(api.get("/v1/jobs").json()["data"])


def test_a_foreign_host_is_refused_but_the_probes_answer(api: httpx.Client) -> None:
    job = api.post("/v1/jobs", json={"prompt": "a kite"}).json()
    rebound = {"Host": "rebind.attacker.example"}
    for path in (f"/status/{job['id']}", f"/v1/jobs/{job['id']}", "/v1/jobs", "/docs"):
        refused = api.get(path, headers=rebound)
        assert refused.status_code == 400, path
        assert refused.json()["code"] == "host_untrusted"
        assert refused.json()["field"] == "Host"
        assert "attacker" not in refused.text.split('"detail"')[0]  # no links on its host
    for probe in ("/health", "/ready", "/metrics"):
        assert api.get(probe, headers={"Host": "10.1.2.3:8000"}).status_code == 200
    for ours in ("localhost", "127.0.0.1:8000", "[::1]:8000"):
        assert api.get("/v1/jobs", headers={"Host": ours}).status_code == 200


def test_trusted_hosts_and_the_public_url_are_ours(
    make_settings: SettingsFactory, server_factory: ServerFactory
) -> None:
    api = server_factory(
        make_settings(trusted_hosts=["*.internal.example"], public_url="https://images.example.com")
    )
    for host in ("images.example.com", "api.internal.example", "a.b.internal.example:8443"):
        assert api.get("/v1/jobs", headers={"Host": host}).status_code == 200, host
    for host in ("internal.example.evil", "example.com", "images.example.com.evil"):
        assert api.get("/v1/jobs", headers={"Host": host}).status_code == 400, host


@pytest.mark.parametrize(
    "browser",
    [{"Origin": EVIL}, {"Origin": "null"}, {"Sec-Fetch-Site": "cross-site"}],
    ids=["origin", "null-origin", "sec-fetch-site"],
)
def test_a_cross_site_form_post_queues_nothing(api: httpx.Client, browser: dict[str, str]) -> None:
    form = {"Content-Type": "application/x-www-form-urlencoded"}  # a CORS "simple request"
    refused = api.post("/generate", params={"user_prompt": "a kite"}, headers=form | browser)
    assert refused.status_code == 403
    assert refused.json()["code"] == "origin_forbidden"
    assert refused.json()["field"] == next(iter(browser))
    again = api.post("/v1/jobs", json={"prompt": "a kite"}, headers=browser)
    assert again.status_code == 403
    assert jobs_in(api) == 0


def test_clients_that_are_not_browsers_and_our_own_pages_are_served(api: httpx.Client) -> None:
    own = str(api.base_url).rstrip("/")
    plain = api.post("/generate", params={"user_prompt": "a kite"})  # no Origin at all
    assert plain.status_code == 200
    from_us = api.post("/generate", params={"user_prompt": "a kite"}, headers={"Origin": own})
    assert from_us.status_code == 200
    same = {"Sec-Fetch-Site": "same-origin"}
    assert api.post("/v1/jobs", json={"prompt": "a kite"}, headers=same).status_code == 202
    assert api.get("/v1/jobs", headers={"Origin": EVIL}).status_code == 200  # reads: CORS's job
    assert jobs_in(api) == 3


def test_an_allowed_origin_may_post_and_read_the_answer(
    make_settings: SettingsFactory, server_factory: ServerFactory
) -> None:
    app_origin = "https://app.example"
    api = server_factory(make_settings(cors_origins=[app_origin]))
    created = api.post("/v1/jobs", json={"prompt": "a kite"}, headers={"Origin": app_origin})
    assert created.status_code == 202
    assert created.headers["access-control-allow-origin"] == app_origin
    preflight = api.options(
        "/v1/jobs",
        headers={"Origin": app_origin, "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code == 200
    assert (
        api.post("/v1/jobs", json={"prompt": "a kite"}, headers={"Origin": EVIL}).status_code == 403
    )


@pytest.mark.parametrize("path", ["/ws/generate", "/v1/jobs/job_x/ws"])
def test_a_websocket_from_another_site_is_refused_before_it_opens(
    api: httpx.Client, path: str
) -> None:
    async def connect(origin: str | None) -> None:
        headers = {"Origin": origin} if origin else {}
        async with websockets.connect(
            ws_url(api, path), additional_headers=headers, open_timeout=10
        ):
            pass

    with pytest.raises(InvalidStatus) as refused:
        asyncio.run(connect(EVIL))
    assert refused.value.response.status_code == 403
    asyncio.run(connect(str(api.base_url).rstrip("/")))  # our own page
    asyncio.run(connect(None))  # not a browser


def test_a_hijacked_socket_never_reads_an_image_link(api: httpx.Client) -> None:
    async def hijack() -> list[str]:
        received: list[str] = []
        try:
            async with websockets.connect(
                ws_url(api, "/ws/generate"),
                additional_headers={"Origin": EVIL},
                open_timeout=10,
            ) as socket:
                await socket.send('{"prompt": "a kite"}')
                received.append(str(await asyncio.wait_for(socket.recv(), 10)))
        except InvalidStatus:
            pass
        return received

    assert asyncio.run(hijack()) == []
    assert jobs_in(api) == 0
