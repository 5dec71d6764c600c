"""The browser can reach ImageGate from another origin (issue 11, part 1): CORS exposes what
the clients read and allows what they send; ``*`` only with auth off; and in Chromium, the
original design's client, unchanged, and @imagegate/client with a browser token work from a
page of another origin (http://localhost:A calling http://127.0.0.1:B)."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from imagegate.api.app import ALLOWED_HEADERS, EXPOSED_HEADERS
from imagegate.settings import Settings
from tests.browser import browser
from tests.conftest import SettingsFactory
from tests.js.support import app_origin

__all__ = ["browser"]  # the fixture, for pytest
ServerFactory = Callable[..., httpx.Client]
APP = "https://app.example"
CLIENT_HEADERS = [
    "Authorization",
    "Idempotency-Key",
    "Content-Type",
    "Last-Event-ID",
    "Cache-Control",
]


@pytest.fixture
def cors_api(make_settings: SettingsFactory, server_factory: ServerFactory) -> httpx.Client:
    return server_factory(make_settings(cors_origins=[APP]))


def test_a_preflight_allows_every_header_the_clients_send(cors_api: httpx.Client) -> None:
    for path, method in [("/v1/jobs", "POST"), ("/v1/jobs/job_x/events", "GET")]:
        preflight = cors_api.options(
            path,
            headers={
                "Origin": APP,
                "Access-Control-Request-Method": method,
                "Access-Control-Request-Headers": ", ".join(h.lower() for h in CLIENT_HEADERS),
            },
        )
        assert preflight.status_code == 200, preflight.text
        assert preflight.headers["access-control-allow-origin"] == APP
        allowed = {
            h.strip().lower() for h in preflight.headers["access-control-allow-headers"].split(",")
        }
        assert {h.lower() for h in CLIENT_HEADERS} <= allowed
    refused = cors_api.options(
        "/v1/jobs",
        headers={
            "Origin": APP,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "x-evil",
        },
    )
    assert refused.status_code == 400


def test_answers_expose_the_headers_the_clients_read(cors_api: httpx.Client) -> None:
    headers = {"Origin": APP, "Idempotency-Key": "cors-1"}
    body = {"prompt": "a kite", "seed": 3}
    created = cors_api.post("/v1/jobs", json=body, headers=headers)
    replayed = cors_api.post("/v1/jobs", json=body, headers=headers)
    assert replayed.headers["idempotent-replayed"] == "true"
    exposed = {
        h.strip().lower() for h in created.headers["access-control-expose-headers"].split(",")
    }
    wanted = {
        "location",
        "retry-after",
        "ratelimit",
        "ratelimit-policy",
        "cache-status",
        "idempotent-replayed",
    }
    assert wanted <= exposed
    assert {h.lower() for h in EXPOSED_HEADERS} == exposed
    for name in ("location", "cache-status"):  # what is exposed is really sent
        assert name in created.headers
    refusal = cors_api.get("/v1/jobs/no-such-job", headers={"Origin": APP})
    assert refusal.status_code == 404
    assert refusal.headers["access-control-allow-origin"] == APP  # a page reads its problem


def test_any_origin_is_allowed_only_with_auth_off(
    make_settings: SettingsFactory, server_factory: ServerFactory
) -> None:
    with pytest.raises(ValidationError, match="only with IMAGEGATE_AUTH=off"):
        Settings(cors_origins="*", auth="required", secret_key="k" * 32)
    assert Settings(cors_origins="https://a.example, https://b.example").cors_origins == [
        "https://a.example",
        "https://b.example",
    ]
    api = server_factory(make_settings(cors_origins="*"))
    anywhere = {"Origin": "https://anywhere.example"}
    created = api.post("/v1/jobs", json={"prompt": "a kite"}, headers=anywhere)
    assert created.status_code == 202
    assert created.headers["access-control-allow-origin"] == "*"


def test_the_header_lists_are_the_ones_documented() -> None:
    assert set(CLIENT_HEADERS) <= set(ALLOWED_HEADERS)


# --- in Chromium, from another origin ---------------------------------------------------


@pytest.fixture
def page_origin() -> Iterator[str]:
    with app_origin() as origin:
        yield origin


def run_page(browser: Any, url: str, done: str) -> tuple[str, list[str]]:
    """Opens the page, waits until #state starts with ``done`` or ``error``; returns it and
    the console's errors."""
    page = browser.new_page()
    errors: list[str] = []
    page.on(
        "console", lambda message: errors.append(message.text) if message.type == "error" else None
    )
    page.goto(url)
    page.wait_for_function(
        f"() => /^({done}|error)/.test(document.getElementById('state').textContent)",
        timeout=30_000,
    )
    state = page.inner_text("#state")
    page.close()
    return state, errors


@pytest.mark.browser
def test_the_original_client_works_from_another_origin(
    browser: Any, page_origin: str, make_settings: SettingsFactory, server_factory: ServerFactory
) -> None:
    without = server_factory(make_settings())
    page = f"{page_origin}/original_page.html?api={str(without.base_url).rstrip('/')}"
    state, errors = run_page(browser, page, "loaded")
    assert state.startswith("error"), state  # no CORS for this origin: the browser blocks it
    assert any("CORS" in error for error in errors), errors

    api = server_factory(make_settings(cors_origins=[page_origin]))
    page = f"{page_origin}/original_page.html?api={str(api.base_url).rstrip('/')}"
    state, _ = run_page(browser, page, "loaded")
    assert state == "loaded 512x512"
    assert len(api.get("/v1/jobs").json()["data"]) == 1


@pytest.mark.browser
def test_a_page_of_another_origin_generates_with_a_browser_token(
    browser: Any, page_origin: str, make_settings: SettingsFactory, server_factory: ServerFactory
) -> None:
    admin_token = secrets.token_urlsafe(32)
    api = server_factory(
        make_settings(
            auth="required",
            admin_token=admin_token,
            cors_origins=[page_origin],
            preview_every=2,
            sketch_delay_ms=600,
        )
    )
    admin = {"Authorization": f"Bearer {admin_token}"}
    scopes = ["jobs:write", "jobs:read"]
    made = api.post(
        "/v1/admin/keys", json={"tenant": "acme", "name": "web", "scopes": scopes}, headers=admin
    )
    key = {"Authorization": f"Bearer {made.json()['key']}"}
    theirs = api.post("/v1/jobs", json={"prompt": "a secret", "user": "user-b"}, headers=key).json()
    token = api.post("/v1/client-tokens", json={"user": "user-a", "ttl_s": 600}, headers=key).json()
    page = (
        f"{page_origin}/token_page.html?api={str(api.base_url).rstrip('/')}"
        f"&theirs={theirs['id']}#token={token['token']}"
    )
    state, errors = run_page(browser, page, "done")
    assert state.startswith("done"), (state, errors)
    report = dict(part.split("=", 1) for part in state.split()[1:])
    assert report["status"] == "completed"
    assert int(report["previews"]) >= 2
    assert report["transport"] == "EventSource"
    assert report["theirs"] == "404:job_not_found"
    assert report["user"] == "user-a"
