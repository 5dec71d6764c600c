"""The HTTP API through a real uvicorn server on loopback, on SQLite and PostgreSQL."""

from __future__ import annotations

import io
from collections.abc import Callable
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from PIL import Image

from imagegate.jobs.store import JobStore
from imagegate.settings import Settings
from tests.conftest import SettingsFactory
from tests.helpers import eventually, wait_for_job


def test_the_original_client_flow(api: httpx.Client) -> None:
    submitted = api.post("/generate", json={"prompt": "a lighthouse at dusk", "style": "noir"})
    assert submitted.status_code == 200
    body = submitted.json()
    assert set(body) == {"job_id", "status", "check_url"}
    assert body["status"] == "queued"
    assert body["check_url"].endswith(f"/status/{body['job_id']}")

    def finished() -> dict[str, object] | None:
        status = api.get(body["check_url"]).json()
        return status if status["status"] == "completed" else None

    status = eventually(finished)
    assert set(status) == {"id", "status", "result_url", "error"}
    assert status["id"] == body["job_id"] and status["error"] is None
    image = api.get(str(status["result_url"]))
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(image.content)).size == (512, 512)


def test_the_original_query_form(api: httpx.Client) -> None:
    query = urlencode({"user_prompt": "a forest cabin", "style": "watercolor"})
    body = api.post(f"/generate?{query}").json()
    job = wait_for_job(api, body["job_id"])
    assert job["prompt"] == "a forest cabin"
    assert job["style"] == "watercolor"
    assert job["full_prompt"].startswith("a forest cabin, watercolor")


def test_an_unknown_job_is_a_real_404_with_json(api: httpx.Client) -> None:
    for path in ("/status/nope", "/v1/jobs/nope"):
        response = api.get(path)
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "job_not_found"


def test_v1_submit_answers_202_with_the_job_and_location(api: httpx.Client) -> None:
    response = api.post("/v1/jobs", json={"prompt": "red city skyline", "seed": 7, "n": 2})
    assert response.status_code == 202
    job = response.json()
    assert response.headers["location"].endswith(f"/v1/jobs/{job['id']}")
    assert job["status"] == "queued" and job["seed"] == 7 and job["n"] == 2
    done = wait_for_job(api, job["id"])
    assert done["status"] == "completed"
    assert len(done["images"]) == 2
    assert done["metadata"]["seed"] == 7 and done["metadata"]["model"] == "sketch-v1"
    assert done["metadata"]["batch_size"] == 1
    assert done["attempts"] == 1 and done["started_at"] and done["finished_at"]
    assert done["progress"] == {"step": done["steps"], "total": done["steps"]}
    first, second = (api.get(image["url"]).content for image in done["images"])
    assert first != second  # image i uses seed + i


def test_a_seed_is_chosen_and_recorded_when_omitted(api: httpx.Client) -> None:
    job = api.post("/v1/jobs", json={"prompt": "a meadow"}).json()
    assert isinstance(job["seed"], int)
    assert wait_for_job(api, job["id"])["metadata"]["seed"] == job["seed"]


def test_the_png_carries_the_generation_parameters(api: httpx.Client) -> None:
    job = api.post("/v1/jobs", json={"prompt": "a boat", "seed": 3, "width": 256}).json()
    done = wait_for_job(api, job["id"])
    png = Image.open(io.BytesIO(api.get(done["images"][0]["url"]).content))
    assert png.size == (256, 512)
    text = png.text  # type: ignore[attr-defined]
    assert text["prompt"] == "a boat"
    assert text["seed"] == "3" and text["model"] == "sketch-v1"
    assert text["size"] == "256x512" and text["steps"] == str(done["steps"])


def test_list_pages_newest_first_and_filters_by_status(api: httpx.Client) -> None:
    ids = [api.post("/v1/jobs", json={"prompt": f"job {i}"}).json()["id"] for i in range(3)]
    for job_id in ids:
        wait_for_job(api, job_id)
    first = api.get("/v1/jobs", params={"limit": 2}).json()
    second = api.get("/v1/jobs", params={"limit": 2, "cursor": first["next_cursor"]}).json()
    assert [j["id"] for j in first["data"] + second["data"]] == ids[::-1]
    assert second["next_cursor"] is None
    completed = api.get("/v1/jobs", params={"status": "completed"}).json()["data"]
    assert {j["id"] for j in completed} == set(ids)
    assert api.get("/v1/jobs", params={"status": "canceled"}).json()["data"] == []


def test_styles_are_listed(api: httpx.Client) -> None:
    styles = api.get("/v1/styles").json()
    assert {"noir", "watercolor", "pixel_art"} <= {s["name"] for s in styles}


def test_probes(api: httpx.Client) -> None:
    assert api.get("/health").json() == {"status": "ok"}
    ready = eventually(lambda: (r := api.get("/ready")).status_code == 200 and r)
    checks = {"database": "ok", "storage": "ok", "backend": "ok", "safety": "ok"}
    assert ready.json()["checks"] == checks


def test_openapi_docs_are_served(api: httpx.Client) -> None:
    assert api.get("/docs").status_code == 200
    paths = api.get("/openapi.json").json()["paths"]
    assert {"/generate", "/status/{job_id}", "/v1/jobs", "/v1/jobs/{job_id}/cancel"} <= set(paths)


# -- cancel -------------------------------------------------------------------------------


@pytest.fixture
def api_without_workers(
    server_factory: Callable[..., httpx.Client], settings: Settings
) -> httpx.Client:
    return server_factory(settings, workers=0)


def test_cancel_a_queued_job_is_immediate(api_without_workers: httpx.Client) -> None:
    job = api_without_workers.post("/v1/jobs", json={"prompt": "never drawn"}).json()
    response = api_without_workers.post(f"/v1/jobs/{job['id']}/cancel")
    assert response.status_code == 202
    assert response.json()["status"] == "canceled"
    legacy = api_without_workers.get(f"/status/{job['id']}").json()
    assert legacy["status"] == "canceled" and legacy["error"] == "The job was canceled."


def test_cancel_a_generating_job_stops_it_at_the_next_step(
    server_factory: Callable[..., httpx.Client], make_settings: SettingsFactory
) -> None:
    api = server_factory(make_settings(sketch_delay_ms=20_000))
    job = api.post("/v1/jobs", json={"prompt": "slow", "steps": 100}).json()
    wait_for_job(api, job["id"], {"generating"})
    flagged = api.post(f"/v1/jobs/{job['id']}/cancel").json()
    assert flagged["cancel_requested"] is True
    done = wait_for_job(api, job["id"], timeout_s=5)
    assert done["status"] == "canceled"
    assert done["images"] == []
    assert done["progress"]["step"] < 100


def test_an_api_without_workers_recovers_the_job_of_a_dead_worker(
    api_without_workers: httpx.Client, store: JobStore
) -> None:
    job = api_without_workers.post("/v1/jobs", json={"prompt": "a lighthouse"}).json()
    (claim,) = store.claim(lease_s=0.5)  # a worker that dies at once: its lease runs out
    assert claim.job.id == job["id"]
    assert api_without_workers.get(f"/v1/jobs/{job['id']}").json()["status"] == "generating"
    back = wait_for_job(api_without_workers, job["id"], statuses={"queued"}, timeout_s=20)
    assert back["status"] == "queued"  # in the queue again, where an autoscaler sees it
    assert store.get(job["id"]).attempts == 1


def test_cancel_a_finished_job_is_a_conflict(api: httpx.Client) -> None:
    job = api.post("/v1/jobs", json={"prompt": "quick"}).json()
    wait_for_job(api, job["id"])
    response = api.post(f"/v1/jobs/{job['id']}/cancel")
    assert response.status_code == 409
    assert response.json()["code"] == "illegal_transition"


# -- signed image URLs ----------------------------------------------------------------------


def test_a_tampered_or_expired_image_url_is_forbidden(api: httpx.Client) -> None:
    job = wait_for_job(api, api.post("/v1/jobs", json={"prompt": "x"}).json()["id"])
    url = urlsplit(job["images"][0]["url"])
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    tampered = query | {"sig": "0" * 64}
    expired = query | {"expires": "1000"}
    for params in (tampered, expired):
        response = api.get(url.path, params=params)
        assert response.status_code == 403
        assert response.json()["code"] == "invalid_signature"
    missing = api.get(url.path)
    assert missing.status_code == 422
    assert api.get(url.path, params=query).status_code == 200


def test_signed_urls_survive_a_restart(
    server_factory: Callable[..., httpx.Client], settings: Settings
) -> None:
    first = server_factory(settings)
    job = wait_for_job(first, first.post("/v1/jobs", json={"prompt": "x"}).json()["id"])
    second = server_factory(settings, workers=0)  # same data dir: the same kept secret key
    path = urlsplit(job["images"][0]["url"])
    assert second.get(f"{path.path}?{path.query}").status_code == 200


# -- bad input ------------------------------------------------------------------------------

BAD_INPUT = [
    ({"prompt": ""}, "prompt", "prompt_empty"),
    ({"prompt": "   "}, "prompt", "prompt_empty"),
    ({"prompt": "x" * 2001}, "prompt", "prompt_too_long"),
    ({"prompt": "a\x00b"}, "prompt", "prompt_invalid_characters"),
    ({"prompt": "a\x1bb"}, "prompt", "prompt_invalid_characters"),
    ({"prompt": "ok", "width": 32}, "width", "invalid_dimensions"),
    ({"prompt": "ok", "height": 4096}, "height", "invalid_dimensions"),
    ({"prompt": "ok", "width": 100}, "width", "invalid_dimensions"),
    ({"prompt": "ok", "n": 0}, "n", "out_of_range"),
    ({"prompt": "ok", "n": 5}, "n", "out_of_range"),
    ({"prompt": "ok", "style": "baroque"}, "style", "unknown_style"),
    ({"prompt": "ok", "seed": -1}, "seed", "out_of_range"),
    ({"prompt": "ok", "steps": 0}, "steps", "out_of_range"),
    ({"prompt": "ok", "width": "wide"}, "width", "invalid_type"),
    ({"prompt": 5}, "prompt", "invalid_type"),
    ({}, "prompt", "missing_field"),
    ({"prompt": "ok", "colour": "red"}, "colour", "unknown_field"),
]


@pytest.mark.parametrize(("body", "field", "code"), BAD_INPUT)
def test_bad_input_is_a_problem_naming_the_field(
    api_without_workers: httpx.Client, body: dict[str, object], field: str, code: str
) -> None:
    response = api_without_workers.post("/v1/jobs", json=body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert (problem["code"], problem["field"], problem["status"]) == (code, field, 422)
    assert problem["detail"] and problem["title"]


@pytest.mark.parametrize(("body", "field", "code"), BAD_INPUT[:5] + BAD_INPUT[10:11])
def test_the_original_endpoint_refuses_the_same_way(
    api_without_workers: httpx.Client, body: dict[str, object], field: str, code: str
) -> None:
    response = api_without_workers.post("/generate", json=body)
    assert response.status_code == 422
    assert (response.json()["code"], response.json()["field"]) == (code, field)


def test_an_unknown_style_lists_the_allowed_ones(api_without_workers: httpx.Client) -> None:
    problem = api_without_workers.post("/generate", json={"prompt": "x", "style": "?"}).json()
    assert "noir" in problem["detail"] and "noir" in problem["allowed"]


def test_the_original_endpoint_needs_a_prompt(api_without_workers: httpx.Client) -> None:
    response = api_without_workers.post("/generate")
    assert response.status_code == 422
    assert response.json()["field"] == "prompt"


def test_malformed_json_is_a_400(api_without_workers: httpx.Client) -> None:
    for path in ("/v1/jobs", "/generate"):
        response = api_without_workers.post(
            path, content=b'{"prompt": ', headers={"content-type": "application/json"}
        )
        assert response.status_code == 400
        assert response.json()["code"] == "malformed_json"


def test_a_body_over_64_kib_is_a_413(api_without_workers: httpx.Client) -> None:
    big = b'{"prompt": "' + b"x" * (64 * 1024) + b'"}'
    response = api_without_workers.post(
        "/v1/jobs", content=big, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["code"] == "body_too_large"

    def chunked() -> object:
        yield big  # no Content-Length: the limit is counted while reading

    streamed = api_without_workers.post(
        "/v1/jobs", content=chunked(), headers={"content-type": "application/json"}
    )
    assert streamed.status_code == 413


def test_bad_query_parameters_are_problems_too(api_without_workers: httpx.Client) -> None:
    assert api_without_workers.get("/v1/jobs", params={"limit": 0}).json()["field"] == "limit"
    assert api_without_workers.get("/v1/jobs", params={"status": "x"}).json()["field"] == "status"
    garbled = api_without_workers.get("/v1/jobs", params={"cursor": "%%%"})
    assert garbled.status_code == 422 and garbled.json()["code"] == "invalid_cursor"


def test_an_unknown_route_is_a_problem(api_without_workers: httpx.Client) -> None:
    response = api_without_workers.get("/v2/nothing")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


def test_broken_ids_and_text_are_4xx_never_500(api_without_workers: httpx.Client) -> None:
    for path in ("/v1/jobs/%00", "/status/%00", "/v1/jobs/%00/events"):
        assert api_without_workers.get(path).status_code == 404, path
    assert api_without_workers.post("/v1/jobs/%00/cancel").status_code == 404
    assert (
        api_without_workers.get("/v1/images/%00", params={"expires": 1, "sig": "x"}).status_code
        == 403
    )
    bad_sig = api_without_workers.get("/v1/images/abc", params={"expires": 9999999999, "sig": "é"})
    assert bad_sig.status_code == 403
    surrogate = b'{"prompt": "x", "\\ud800": 1}'
    response = api_without_workers.post(
        "/v1/jobs", content=surrogate, headers={"content-type": "application/json"}
    )
    assert response.status_code == 422 and response.json()["status"] == 422
    for url in ("http://[::1", "http://exa\u0000mple.com/"):
        refused = api_without_workers.post("/v1/jobs", json={"prompt": "x", "webhook_url": url})
        assert refused.status_code == 422 and refused.json()["code"] == "webhook_url_refused"
