"""ImageGate speaks the OpenAI Images API: the official ``openai`` client against a live server."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest
from PIL import Image

from imagegate.prompts.styles import STYLES
from tests.conftest import SettingsFactory

ServerFactory = Callable[..., httpx.Client]


def openai_client(api: httpx.Client) -> openai.OpenAI:
    base = str(api.base_url).rstrip("/")
    return openai.OpenAI(base_url=f"{base}/v1", api_key="x", max_retries=0, timeout=30)


@pytest.fixture
def client(api: httpx.Client) -> Iterator[openai.OpenAI]:
    with openai_client(api) as client:
        yield client


def newest_job(api: httpx.Client) -> dict[str, Any]:
    job: dict[str, Any] = api.get("/v1/jobs", params={"limit": 1}).json()["data"][0]
    return job


def test_b64_json_is_the_stored_png(client: openai.OpenAI, api: httpx.Client) -> None:
    answer = client.images.generate(
        prompt="a lighthouse at dusk", size="128x64", response_format="b64_json"
    )
    assert answer.data is not None
    (image,) = answer.data
    png = base64.b64decode(image.b64_json or "")
    assert Image.open(io.BytesIO(png)).size == (128, 64)
    assert image.revised_prompt == "a lighthouse at dusk"
    assert image.url is None
    job = newest_job(api)
    assert job["status"] == "completed"
    assert api.get(job["images"][0]["url"]).content == png


def test_url_answers_are_signed_urls_of_n_images(client: openai.OpenAI) -> None:
    answer = client.images.generate(
        prompt="boats in a harbour", n=2, size="64x96", style="vivid", response_format="url"
    )
    assert answer.data is not None
    assert len(answer.data) == 2
    pngs = [httpx.get(image.url or "").raise_for_status().content for image in answer.data]
    assert [Image.open(io.BytesIO(png)).size for png in pngs] == [(64, 96)] * 2
    assert pngs[0] != pngs[1]
    suffix = STYLES["cinematic"].suffix
    assert {image.revised_prompt for image in answer.data} == {f"boats in a harbour, {suffix}"}


def test_our_own_style_names_and_quality_are_honoured(
    client: openai.OpenAI, api: httpx.Client
) -> None:
    # OpenAI's client types style as vivid|natural; our own style names ride in the body.
    client.images.generate(
        prompt="a fox", size="64x64", quality="low", extra_body={"style": "watercolor"}
    )
    job = newest_job(api)
    assert (job["style"], job["steps"]) == ("watercolor", 15)


@pytest.mark.parametrize(
    ("size", "code"),
    [
        ("big", "invalid_dimensions"),
        ("100x64", "invalid_dimensions"),
        ("64x4096", "invalid_dimensions"),
    ],
)
def test_a_bad_size_gets_an_openai_error_naming_size(
    client: openai.OpenAI, size: str, code: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.images.generate(prompt="a fox", size=size)
    assert caught.value.status_code == 400
    body = caught.value.body
    assert isinstance(body, dict)
    assert body | {"message": ""} == {
        "message": "",
        "type": "invalid_request_error",
        "param": "size",
        "code": code,
    }
    assert "size" in body["message"]


def test_an_empty_prompt_gets_an_openai_error(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.images.generate(prompt="   ")
    assert (caught.value.param, caught.value.code) == ("prompt", "prompt_empty")
    assert caught.value.type == "invalid_request_error"


@pytest.mark.parametrize(
    ("kwargs", "param", "code"),
    [
        ({"n": 5}, "n", "out_of_range"),
        ({"model": "dall-e-3"}, "model", "model_not_found"),
        ({"extra_body": {"seed": 3}}, "seed", "unknown_field"),
        ({"response_format": "jpeg"}, "response_format", "invalid_value"),
    ],
)
def test_other_refusals_name_their_param(
    client: openai.OpenAI, kwargs: dict[str, Any], param: str, code: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.images.generate(prompt="a fox", size="64x64", **kwargs)
    assert (caught.value.param, caught.value.code) == (param, code)


def test_malformed_json_gets_the_envelope_here_and_problem_json_elsewhere(
    api: httpx.Client,
) -> None:
    headers = {"content-type": "application/json"}
    here = api.post("/v1/images/generations", content=b"{nope", headers=headers)
    assert here.status_code == 400
    assert here.json() == {
        "error": {
            "message": "The request body is not valid JSON.",
            "type": "invalid_request_error",
            "param": None,
            "code": "malformed_json",
        }
    }
    elsewhere = api.post("/v1/jobs", content=b"{nope", headers=headers)
    assert elsewhere.headers["content-type"] == "application/problem+json"
    assert elsewhere.json()["code"] == "malformed_json"


def test_a_job_outliving_the_timeout_gets_504_and_is_canceled(
    make_settings: SettingsFactory, server_factory: ServerFactory
) -> None:
    # One step of 4 s: the worker cannot finish (nor notice its own timeout) before the
    # request's 0.5 s wait is over.
    settings = make_settings(job_timeout_s=0.5, sketch_delay_ms=4000, default_steps=1)
    api = server_factory(settings)
    with openai_client(api) as client, pytest.raises(openai.InternalServerError) as caught:
        client.images.generate(prompt="a slow fox", size="64x64")
    assert caught.value.status_code == 504
    assert (caught.value.code, caught.value.type) == ("wait_timeout", "server_error")
    assert newest_job(api)["cancel_requested"] or newest_job(api)["status"] == "canceled"


def test_models_lists_the_served_model(client: openai.OpenAI) -> None:
    models = client.models.list()
    assert [model.id for model in models] == ["sketch-v1"]
    assert models.data[0].owned_by == "imagegate"
