"""The API docs work with no network but ours (issue 17): Swagger UI and ReDoc load their
scripts and styles from ImageGate itself, not from a CDN."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.browser import browser

pytestmark = pytest.mark.browser
__all__ = ["browser"]  # the fixture, for pytest


def offline_page(browser: Any, api: httpx.Client) -> tuple[Any, list[str]]:
    """A page that can reach our server and nothing else; returns it and the refused URLs."""
    ours = urlsplit(str(api.base_url)).netloc
    refused: list[str] = []
    page = browser.new_page()

    def only_ours(route: Any) -> None:
        url = route.request.url
        if urlsplit(url).netloc == ours:
            route.continue_()
        else:
            refused.append(url)
            route.abort("internetdisconnected")

    page.route("**/*", only_ours)
    return page, refused


def test_swagger_ui_lists_the_operations_offline(browser: Any, api: httpx.Client) -> None:
    page, refused = offline_page(browser, api)
    page.goto(f"{str(api.base_url).rstrip('/')}/docs")
    page.wait_for_selector(".opblock", timeout=20_000)
    paths = page.locator(".opblock-summary-path").all_inner_texts()
    assert "/generate" in [p.strip() for p in paths]
    assert any(p.strip() == "/v1/jobs" for p in paths)
    assert refused == []
    page.close()


def test_redoc_renders_offline(browser: Any, api: httpx.Client) -> None:
    page, refused = offline_page(browser, api)
    page.goto(f"{str(api.base_url).rstrip('/')}/redoc")
    page.get_by_text("/status/{job_id}").first.wait_for(timeout=20_000)
    assert page.locator("h1").first.inner_text().startswith("ImageGate")
    # ReDoc's footer shows Redocly's logo from their CDN; offline, its script hides it.
    assert set(refused) <= {"https://cdn.redoc.ly/redoc/logo-mini.svg"}
    page.close()
