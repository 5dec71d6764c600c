"""Images on the wire (issue 10, part 6): PNG, WebP or JPEG through both APIs, each
keeping the provenance (PNG text chunks, XMP), with a placeholder, a strong ETag and an
immutable Cache-Control; and the refusals of formats that do not exist."""

from __future__ import annotations

import base64
import contextlib
import io
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import thumbhash
from PIL import Image

from tests.helpers import wait_for_job

PIL_FORMAT = {"png": "PNG", "webp": "WEBP", "jpeg": "JPEG"}


def made(api: httpx.Client, **body: Any) -> dict[str, Any]:
    response = api.post("/v1/jobs", json={"prompt": "a lighthouse at dusk", **body})
    assert response.status_code == 202, response.text
    return wait_for_job(api, response.json()["id"])


@pytest.mark.parametrize("kind", ["png", "webp", "jpeg"])
def test_each_format_is_served_with_its_provenance(api: httpx.Client, kind: str) -> None:
    job = made(api, output_format=kind, seed=11, width=128, height=96, steps=5)
    assert job["status"] == "completed" and job["output_format"] == kind
    [image] = job["images"]
    assert image["content_type"] == f"image/{kind}"
    fetched = api.get(image["url"])
    assert fetched.status_code == 200
    assert fetched.headers["content-type"] == f"image/{kind}"
    assert fetched.headers["content-disposition"].endswith(
        '.jpg"' if kind == "jpeg" else f'.{kind}"'
    )
    decoded = Image.open(io.BytesIO(fetched.content))
    assert decoded.format == PIL_FORMAT[kind] and decoded.size == (128, 96)
    if kind == "png":
        provenance = {k: decoded.info[k] for k in ("prompt", "seed", "model", "job_id")}
        assert provenance == {
            "prompt": "a lighthouse at dusk",
            "seed": "11",
            "model": "sketch-v1",
            "job_id": job["id"],
        }
        assert decoded.info["size"] == "128x96" and decoded.info["steps"] == "5"
    else:
        xmp = decoded.info["xmp"].decode()
        for expected in (
            'ig:prompt="a lighthouse at dusk"',
            'ig:seed="11"',
            'ig:model="sketch-v1"',
            'ig:size="128x96"',
            'ig:steps="5"',
            f'ig:job_id="{job["id"]}"',
            '<rdf:li xml:lang="x-default">a lighthouse at dusk</rdf:li>',
        ):
            assert expected in xmp


def test_compression_trades_bytes_for_fidelity(api: httpx.Client) -> None:
    sizes = {}
    for quality in (10, 95):
        job = made(api, output_format="jpeg", output_compression=quality, seed=3, width=256)
        assert job["output_compression"] == quality
        sizes[quality] = len(api.get(job["images"][0]["url"]).content)
    assert sizes[10] < sizes[95] / 2


def test_the_openai_route_speaks_output_format(api: httpx.Client) -> None:
    answer = api.post(
        "/v1/images/generations",
        json={
            "prompt": "a harbour at night",
            "size": "256x256",
            "response_format": "b64_json",
            "output_format": "webp",
            "output_compression": 70,
        },
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["output_format"] == "webp"
    decoded = Image.open(io.BytesIO(base64.b64decode(body["data"][0]["b64_json"])))
    assert decoded.format == "WEBP" and "a harbour at night" in decoded.info["xmp"].decode()
    refused = api.post(
        "/v1/images/generations", json={"prompt": "a harbour", "output_format": "gif"}
    )
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "output_format"
    png_compressed = api.post(
        "/v1/images/generations",
        json={"prompt": "a harbour", "output_format": "png", "output_compression": 50},
    )
    assert png_compressed.status_code == 400
    assert png_compressed.json()["error"]["param"] == "output_compression"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"output_format": "gif"}, "output_format"),
        ({"output_format": "png", "output_compression": 80}, "output_compression"),
        ({"output_compression": 80}, "output_compression"),  # png is the default
        ({"output_format": "webp", "output_compression": 101}, "output_compression"),
        ({"output_format": "jpeg", "output_compression": -1}, "output_compression"),
    ],
)
def test_bad_formats_are_refused_by_field(
    api: httpx.Client, body: dict[str, Any], field: str
) -> None:
    refused = api.post("/v1/jobs", json={"prompt": "a harbour", **body})
    assert refused.status_code == 422
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert refused.json()["field"] == field


def test_each_image_has_a_placeholder_to_show_meanwhile(api: httpx.Client) -> None:
    job = made(api, seed=5, width=256, height=128)
    placeholder = job["images"][0]["placeholder"]
    hashed = list(base64.b64decode(placeholder["thumbhash"]))
    with contextlib.redirect_stdout(io.StringIO()):  # the package's decoder prints
        width, height, _ = thumbhash.thumb_hash_to_rgba(hashed)
    assert 1.6 < width / height < 2.4  # about the image's 2:1 (ThumbHash rounds it)
    head, data = placeholder["data_url"].split(",", 1)
    assert head == "data:image/png;base64"
    tiny = Image.open(io.BytesIO(base64.b64decode(data)))
    assert tiny.format == "PNG" and max(tiny.size) <= 16 and len(data) < 2000
    again = api.get(f"/v1/jobs/{job['id']}").json()
    assert again["images"][0]["placeholder"] == placeholder  # stored, not recomputed


def test_image_caching_headers_follow_the_signed_url(api: httpx.Client) -> None:
    job = made(api, seed=9)
    url = job["images"][0]["url"]
    fetched = api.get(url)
    expires = int(parse_qs(urlsplit(url).query)["expires"][0])
    control = fetched.headers["cache-control"]
    assert control.startswith("private, max-age=") and control.endswith(", immutable")
    max_age = int(control.split("max-age=")[1].split(",")[0])
    assert abs(max_age - (expires - time.time())) < 5  # cached no longer than the URL lives
    tag = fetched.headers["etag"]
    assert tag.startswith('"') and len(tag) == 34
    assert api.get(url, headers={"If-None-Match": f'W/"x", {tag}'}).status_code == 304
