"""The web playground at /playground (issue 11, part 3) in Chromium, against a live
``imagegate serve`` with previews and a slow sketch: submit, previews, the final image;
cancel; a refused prompt and a rate limit shown as such; the gallery with costs; and the
progressive sequence: the reserved box never moves, previews then the final image, and
(once the server sends placeholders) the placeholder before the final image."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser import browser
from tests.processes import serve

pytestmark = [pytest.mark.slow, pytest.mark.browser]
__all__ = ["browser"]  # the fixture, for pytest
STATIC = Path(__file__).resolve().parent.parent / "src" / "imagegate" / "api" / "static"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    data = tmp_path_factory.mktemp("playground")
    env = {
        "IMAGEGATE_DATA_DIR": str(data / "data"),
        "IMAGEGATE_PREVIEW_EVERY": "3",
        "IMAGEGATE_SKETCH_DELAY_MS": "2500",
        "IMAGEGATE_LOG_LEVEL": "warning",
    }
    with serve(env, data / "serve.log", workers=1) as client:
        yield client


@pytest.fixture
def page(browser: Any, live: httpx.Client) -> Iterator[Any]:
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{str(live.base_url).rstrip('/')}/playground")
    page.wait_for_function("() => document.getElementById('style').options.length > 1")
    yield page
    page.close()
    assert errors == []


@pytest.fixture
def plain_page(browser: Any, live: httpx.Client) -> Iterator[Any]:
    """A page of our origin with nothing else on it that could move."""
    page = browser.new_page()
    page.goto(f"{str(live.base_url).rstrip('/')}/health")
    yield page
    page.close()


def submit(page: Any, prompt: str, **fields: str) -> None:
    page.fill("#prompt", prompt)
    for name, value in fields.items():
        if name in ("style", "size"):
            page.select_option(f"#{name}", value)
        else:
            page.fill(f"#{name}", value)
    page.click("#submit")


def test_the_page_and_its_files_are_served(live: httpx.Client) -> None:
    page = live.get("/playground")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    for name in ("playground.js", "client.js", "playground.css"):
        asset = live.get(f"/playground/{name}")
        assert asset.status_code == 200, name
        assert asset.text == (STATIC / "playground" / name).read_text()
    assert live.get("/playground/../settings.py").status_code == 404
    assert live.get("/playground/secret_key").json()["code"] == "not_found"


def test_a_prompt_shows_live_previews_then_the_final_image(page: Any, live: httpx.Client) -> None:
    page.evaluate(
        """() => {
        window.seen = [];
        new MutationObserver(() => {
          const img = document.querySelector('#results img');
          if (img && img.dataset.igStage) window.seen.push(img.dataset.igStage + ' ' + img.src);
        }).observe(document.getElementById('results'),
                   {subtree: true, attributes: true, attributeFilter: ['src']});
        window.steps = [];
        const status = document.getElementById('status');
        new MutationObserver(() => window.steps.push(status.textContent))
          .observe(status, {childList: true, characterData: true, subtree: true});
        }"""
    )
    submit(page, "a lighthouse at dusk", style="watercolor", size="768x512", seed="5")
    page.wait_for_selector("#results img[data-ig-stage=final]", timeout=30_000)
    seen: list[str] = page.evaluate("window.seen")
    stages = [entry.split()[0] for entry in dict.fromkeys(seen)]
    assert stages[-1] == "final"
    assert stages.count("preview") >= 3, seen
    assert all("/previews/" in entry for entry in seen if entry.startswith("preview"))
    statuses = page.evaluate("window.steps")
    assert any(text.startswith("Step ") for text in statuses), statuses
    assert page.inner_text("#status").startswith("Done in")
    details = page.inner_text("#details")
    job_id = details.split()[0]
    job = live.get(f"/v1/jobs/{job_id}").json()
    assert job["style"] == "watercolor"
    assert f"seed 5 · 768\N{MULTIPLICATION SIGN}512 · cost {job['cost']['amount']} USD" in details
    card = page.wait_for_selector(f"#gallery li[data-job='{job_id}']")
    assert "USD" in card.inner_text()


def test_a_template_takes_its_inputs(page: Any, live: httpx.Client) -> None:
    page.check("input[name=mode][value=template]")
    page.select_option("#template", "landscape")
    page.fill("#template-inputs input[name=environment]", "alpine lake")
    page.click("#submit")
    page.wait_for_function("() => document.getElementById('status').textContent.startsWith('Done')")
    job = live.get(f"/v1/jobs/{page.inner_text('#details').split()[0]}").json()
    assert job["full_prompt"].startswith("alpine lake landscape")


def test_cancel_stops_the_job_on_the_server(page: Any, live: httpx.Client) -> None:
    submit(page, "a slow kite over the sea")
    page.wait_for_function("() => document.getElementById('status').textContent.startsWith('Step')")
    page.click("#cancel")
    page.wait_for_function("() => document.getElementById('status').textContent === 'Canceled.'")
    assert "canceled" in page.inner_text("#message")
    job_id = page.inner_text("#details").split()[0]
    assert live.get(f"/v1/jobs/{job_id}").json()["status"] == "canceled"


def test_a_refused_prompt_says_why_and_queues_nothing(page: Any, live: httpx.Client) -> None:
    before = len(live.get("/v1/jobs").json()["data"])
    submit(page, "a man holding a handgun")
    page.wait_for_selector("#message.refused")
    assert page.inner_text("#message").startswith("Refused by the content policy (weapons)")
    assert len(live.get("/v1/jobs").json()["data"]) == before


def test_a_bad_field_is_named(page: Any) -> None:
    submit(page, "")
    page.wait_for_selector("#message.error")
    assert page.inner_text("#message").startswith("prompt:")


def test_the_progressive_sequence_keeps_its_box(plain_page: Any, live: httpx.Client) -> None:
    """Layout shift as the browser measures it (PerformanceObserver), and the element's box
    and the next element's place at each stage."""
    page = plain_page
    result: dict[str, Any] = page.evaluate(PROGRESSIVE, {"width": 384, "height": 256})
    stages = [stage for stage, *_ in result["stages"]]
    assert stages[-1] == "final"
    assert "preview" in stages
    assert {(w, h) for _, w, h, _ in result["stages"]} == {tuple(result["reserved"][:2])}, result
    assert {top for *_, top in result["stages"]} == {result["reserved"][2]}, result
    assert result["reserved"][0] == 300
    assert result["reserved"][1] == 200  # 384 x 256 at 300 px wide
    assert result["shift"] == 0, result
    done = live.get(f"/v1/jobs/{result['job']}").json()
    if done["images"][0].get("placeholder") is None:
        pytest.skip("the server does not send placeholders yet: the sequence from one is untested")
    again: dict[str, Any] = page.evaluate(PROGRESSIVE_DONE, result["job"])
    assert [stage for stage, *_ in again["stages"]] == ["placeholder", "final"]
    assert again["stages"][0][4].startswith("blur(")
    assert again["stages"][1][4] == "none"
    assert {(w, h, top) for _, w, h, top, _ in again["stages"]} == {tuple(again["reserved"])}
    assert again["shift"] == 0


SETUP = """
  const { ImageGateClient } = await import('/playground/client.js');
  const client = new ImageGateClient(location.origin);
  const img = document.createElement('img');
  img.style.width = '300px';
  img.style.height = 'auto';
  const below = document.createElement('p');
  below.textContent = 'text below the image';
  let shift = 0;
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) if (!entry.hadRecentInput) shift += entry.value;
  }).observe({ type: 'layout-shift' });
  const stages = [];
  const box = () => {
    const r = img.getBoundingClientRect();
    return [r.width, r.height, below.getBoundingClientRect().top];
  };
  const onStage = (stage) => stages.push([stage, ...box(), img.style.filter]);
"""

PROGRESSIVE = f"""async ({{ width, height }}) => {{
  {SETUP}
  const job = await client.jobs.create({{ prompt: 'a harbour at noon', width, height, steps: 12 }});
  document.body.append(img, below); // in the same task as the call: no paint in between
  const running = client.progressiveImage(img, job, {{ onStage }});
  const reserved = box();
  await running;
  await new Promise((resolve) => setTimeout(resolve, 500));
  img.remove(); below.remove();
  return {{ job: job.id, reserved, stages: stages.map((s) => s.slice(0, 4)), shift }};
}}"""

PROGRESSIVE_DONE = f"""async (jobId) => {{
  {SETUP}
  const job = await client.jobs.get(jobId);
  document.body.append(img, below); // in the same task as the call: no paint in between
  const running = client.progressiveImage(img, job, {{ onStage }});
  const reserved = box();
  await running;
  await new Promise((resolve) => setTimeout(resolve, 500));
  img.remove(); below.remove();
  return {{ reserved, stages, shift }};
}}"""
