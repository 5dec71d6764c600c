"""The ``openai`` backend, end to end over loopback: ImageGate #1 generates through the
OpenAI Images API of ImageGate #2 (a real ``imagegate serve`` process, sketch backend),
directly or through a small scripted proxy that plays a provider's bad moments."""

from __future__ import annotations

import base64
import io
import json
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from PIL import Image

from imagegate.errors import (
    ContentPolicyViolation,
    UpstreamBadRequest,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamUnavailable,
)
from imagegate.generators import GenerationRequest, StepInfo
from imagegate.generators.openai import OpenAIGenerator
from tests.conftest import SettingsFactory
from tests.helpers import wait_for_job
from tests.processes import free_port, serve

pytestmark = pytest.mark.slow
ServerFactory = Callable[..., httpx.Client]
CONTENT_POLICY = {
    "error": {
        "message": "Your request was rejected as a result of our safety system.",
        "type": "invalid_request_error",
        "param": None,
        "code": "content_policy_violation",
    }
}


@dataclass
class Canned:
    status: int
    body: dict[str, Any] | bytes  # JSON, or raw bytes (an image)
    headers: dict[str, str] = field(default_factory=dict)

    def encoded(self) -> tuple[bytes, dict[str, str]]:
        if isinstance(self.body, bytes):
            return self.body, {"Content-Type": "image/png"} | self.headers
        return json.dumps(self.body).encode(), {"Content-Type": "application/json"} | self.headers


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any] | None


class Provider:
    """A loopback Images API: answers its canned replies first, then forwards each request
    to ``upstream`` (after ``rewrite`` of the JSON body), and records what it was sent."""

    def __init__(self, upstream: str | None = None) -> None:
        self.upstream = httpx.Client(base_url=upstream or "http://127.0.0.1:9", timeout=30)
        self.canned: list[Canned] = []
        self.seen: list[Seen] = []
        self.rewrite: Callable[[dict[str, Any]], dict[str, Any]] = lambda body: body
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def answer(self, method: str, path: str, headers: dict[str, str], raw: bytes) -> Canned:
        body = json.loads(raw) if raw else None
        self.seen.append(Seen(method, path, headers, body))
        if self.canned:
            return self.canned.pop(0)
        forwarded = self.upstream.request(
            method, path, json=self.rewrite(body) if body is not None else None
        )
        return Canned(forwarded.status_code, forwarded.json())

    def posts(self) -> list[Seen]:
        return [seen for seen in self.seen if seen.method == "POST"]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join()
        self.upstream.close()


def _handler_for(provider: Provider) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._reply(b"")

        def do_POST(self) -> None:
            self._reply(self.rfile.read(int(self.headers.get("Content-Length", 0))))

        def _reply(self, raw: bytes) -> None:
            canned = provider.answer(self.command, self.path, dict(self.headers), raw)
            data, headers = canned.encoded()
            self.send_response(canned.status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture(scope="module")
def imagegate2(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """The provider: a real ``imagegate serve`` process with the sketch backend."""
    root = tmp_path_factory.mktemp("imagegate2")
    env = {
        "IMAGEGATE_DATA_DIR": str(root / "data"),
        "IMAGEGATE_DATABASE_URL": f"sqlite:///{root / 'imagegate.db'}",
        "IMAGEGATE_POLL_INTERVAL_S": "0.2",
        "IMAGEGATE_LOG_LEVEL": "warning",
    }
    with serve(env, root / "serve.log", workers=1) as client:
        yield client


@pytest.fixture
def provider(imagegate2: httpx.Client) -> Iterator[Provider]:
    stub = Provider(upstream=str(imagegate2.base_url))
    yield stub
    stub.close()


def start_imagegate1(
    make_settings: SettingsFactory, server_factory: ServerFactory, base_url: str, **extra: Any
) -> httpx.Client:
    settings = make_settings(
        backend="openai",
        openai_base_url=f"{base_url.rstrip('/')}/v1",
        openai_api_key="sk-test",
        openai_model="sketch-v1",
        openai_retry_backoff_s=0.01,
        **extra,
    )
    return server_factory(settings)


def run_job(api: httpx.Client, prompt: str, **fields: Any) -> dict[str, Any]:
    created = api.post("/v1/jobs", json={"prompt": prompt} | fields)
    assert created.status_code == 202, created.text
    return wait_for_job(api, created.json()["id"], timeout_s=30)


def pixels(client: httpx.Client, url: str) -> bytes:
    with Image.open(io.BytesIO(client.get(url).raise_for_status().content)) as image:
        return image.convert("RGB").tobytes()


def unique(prompt: str) -> str:
    """ImageGate #2 serves the whole module: tell its jobs apart by prompt."""
    return f"{prompt} {uuid.uuid4().hex[:8]}"


def provider_job(imagegate2: httpx.Client, prompt: str) -> dict[str, Any]:
    jobs = imagegate2.get("/v1/jobs", params={"limit": 100}).json()["data"]
    (job,) = [job for job in jobs if job["prompt"] == prompt]
    return dict(job)


def test_a_job_is_generated_by_another_imagegate_and_stored_here(
    make_settings: SettingsFactory, server_factory: ServerFactory, imagegate2: httpx.Client
) -> None:
    api = start_imagegate1(make_settings, server_factory, str(imagegate2.base_url))
    prompt = unique("two lighthouses at dusk")
    job = run_job(api, prompt, width=128, height=64, n=2)
    assert job["status"] == "completed", job["error"]
    assert job["metadata"]["model"] == "sketch-v1"
    assert job["images"][0]["url"].startswith(str(api.base_url))  # served by us
    theirs = provider_job(imagegate2, prompt)
    assert (theirs["width"], theirs["height"], theirs["n"]) == (128, 64, 2)
    for ours, their in zip(job["images"], theirs["images"], strict=True):
        assert pixels(api, ours["url"]) == pixels(imagegate2, their["url"])


def test_a_429_is_retried_after_retry_after(
    make_settings: SettingsFactory, server_factory: ServerFactory, provider: Provider
) -> None:
    slow_down = {"error": {"message": "Slow down.", "type": "rate_limit_error", "code": None}}
    provider.canned.append(Canned(429, slow_down, {"Retry-After": "0"}))
    api = start_imagegate1(make_settings, server_factory, provider.url)
    job = run_job(api, "a patient heron", width=64, height=64)
    assert job["status"] == "completed", job["error"]
    assert job["attempts"] == 1  # the backend retried; the job did not fail once
    first, second = provider.posts()
    assert (
        first.body
        == second.body
        == {
            "model": "sketch-v1",
            "prompt": "a patient heron",
            "n": 1,
            "size": "64x64",
            "response_format": "b64_json",
        }
    )
    assert second.headers["Authorization"] == "Bearer sk-test"


def test_a_url_answer_from_another_imagegate_is_downloaded(
    make_settings: SettingsFactory,
    server_factory: ServerFactory,
    provider: Provider,
    imagegate2: httpx.Client,
) -> None:
    provider.rewrite = lambda body: body | {"response_format": "url"}
    api = start_imagegate1(make_settings, server_factory, provider.url)
    prompt = unique("a windmill by a canal")
    job = run_job(api, prompt, width=64, height=64)
    assert job["status"] == "completed", job["error"]
    theirs = provider_job(imagegate2, prompt)
    assert pixels(api, job["images"][0]["url"]) == pixels(imagegate2, theirs["images"][0]["url"])


def test_a_content_policy_refusal_fails_the_job_with_its_code(
    make_settings: SettingsFactory, server_factory: ServerFactory, provider: Provider
) -> None:
    provider.canned += [Canned(400, CONTENT_POLICY), Canned(400, CONTENT_POLICY)]
    api = start_imagegate1(
        make_settings, server_factory, provider.url, max_retries=2, retry_backoff_s=0
    )
    job = run_job(api, "something forbidden", width=64, height=64)
    assert job["status"] == "failed"
    assert len(provider.posts()) == 1
    assert job["error"]["code"] == "content_policy_violation"
    assert job["error"]["retryable"] is False


# -- the generator alone, against the scripted provider -------------------------------------


@pytest.fixture
def stub() -> Iterator[Provider]:
    provider = Provider()
    yield provider
    provider.close()


@pytest.fixture
def generator(stub: Provider) -> Iterator[OpenAIGenerator]:
    generator = OpenAIGenerator(
        f"{stub.url}/v1", api_key="sk-test", model="sketch-v1", max_retries=2, backoff_s=0.01
    )
    generator.load()
    yield generator
    generator.close()


def request(prompt: str = "a lighthouse", n: int = 1) -> GenerationRequest:
    return GenerationRequest("job", prompt, None, None, 64, 64, 30, 7.5, 1, n=n)


def b64_png(colour: str) -> dict[str, str]:
    out = io.BytesIO()
    Image.new("RGB", (64, 64), colour).save(out, "PNG")
    return {"b64_json": base64.b64encode(out.getvalue()).decode()}


def test_the_content_policy_envelope_maps_to_our_error_without_a_retry(
    stub: Provider, generator: OpenAIGenerator
) -> None:
    stub.canned += [Canned(400, CONTENT_POLICY), Canned(200, {"data": [b64_png("red")]})]
    with pytest.raises(ContentPolicyViolation, match="safety system") as caught:
        generator.generate([request()], lambda info: None)
    assert (caught.value.code, caught.value.retryable) == ("content_policy_violation", False)
    assert len(stub.posts()) == 1


@pytest.mark.parametrize(
    ("status", "error"),
    [(429, UpstreamRateLimited), (503, UpstreamUnavailable), (404, UpstreamBadRequest)],
)
def test_errors_are_mapped_after_max_retries(
    stub: Provider, generator: OpenAIGenerator, status: int, error: type[UpstreamError]
) -> None:
    stub.canned += [Canned(status, {"error": {"message": "busy", "code": None}})] * 4
    with pytest.raises(error, match="busy"):
        generator.generate([request()], lambda info: None)
    assert len(stub.posts()) == (3 if error.retryable else 1)  # max_retries=2


def test_an_unreachable_provider_is_unavailable() -> None:
    generator = OpenAIGenerator(f"http://127.0.0.1:{free_port()}/v1", max_retries=1, backoff_s=0)
    generator.load()
    try:
        with pytest.raises(UpstreamUnavailable, match="unreachable"):
            generator.generate([request()], lambda info: None)
    finally:
        generator.close()


def test_each_answer_is_a_step_and_a_raising_callback_stops_the_batch(
    stub: Provider, generator: OpenAIGenerator
) -> None:
    stub.canned += [Canned(200, {"data": [b64_png("red"), b64_png("blue")]})] * 2
    steps: list[StepInfo] = []

    def stop_after_first(info: StepInfo) -> None:
        steps.append(info)
        raise RuntimeError("canceled")

    (images,) = generator.generate([request(n=2)], steps.append)
    assert [image.getpixel((0, 0)) for image in images] == [(255, 0, 0), (0, 0, 255)]
    with pytest.raises(RuntimeError, match="canceled"):
        generator.generate([request(n=2), request(n=2)], stop_after_first)
    assert steps == [StepInfo(1, 1), StepInfo(1, 1)]
    assert len(stub.posts()) == 2


def test_too_few_images_is_an_upstream_error(stub: Provider, generator: OpenAIGenerator) -> None:
    stub.canned.append(Canned(200, {"data": [b64_png("red")]}))
    with pytest.raises(UpstreamError, match="2 image"):
        generator.generate([request(n=2)], lambda info: None)


@pytest.mark.parametrize(
    ("retry_after", "low", "high"), [("7", 7, 7), ("600", 30, 30), (None, 0, 0.04)]
)
def test_pauses_honour_retry_after_or_use_full_jitter(
    stub: Provider, retry_after: str | None, low: float, high: float
) -> None:
    headers = {"Retry-After": retry_after} if retry_after else {}
    stub.canned += [Canned(503, {"error": {"message": "busy"}}, headers)] * 3
    stub.canned.append(Canned(200, {"data": [b64_png("red")]}))
    pauses: list[float] = []
    generator = OpenAIGenerator(
        f"{stub.url}/v1", max_retries=3, backoff_s=0.01, sleep=pauses.append
    )
    generator.load()
    try:
        generator.generate([request()], lambda info: None)
    finally:
        generator.close()
    assert len(pauses) == 3
    assert all(low <= pause <= high for pause in pauses)
    if retry_after is None:  # full jitter: each pause is drawn below a doubling ceiling
        assert [pause <= 0.01 * 2**i for i, pause in enumerate(pauses)] == [True] * 3


def test_a_url_answer_is_downloaded_with_the_same_client_but_not_the_key(
    stub: Provider, generator: OpenAIGenerator
) -> None:
    png = base64.b64decode(b64_png("blue")["b64_json"])
    stub.canned += [
        Canned(200, {"data": [{"url": f"{stub.url}/files/blue.png?sig=abc"}]}),
        Canned(503, {"error": {"message": "busy"}}),  # the download is retried too
        Canned(200, png),
    ]
    (images,) = generator.generate([request()], lambda info: None)
    assert images[0].getpixel((0, 0)) == (0, 0, 255)
    post, *downloads = stub.seen
    assert post.headers["Authorization"] == "Bearer sk-test"
    assert [(seen.method, seen.path) for seen in downloads] == [
        ("GET", "/files/blue.png?sig=abc")
    ] * 2
    assert all("Authorization" not in seen.headers for seen in downloads)


# Security (issue 16, finding 10): the provider is not trusted with our network or memory.


def png_of(size: tuple[int, int], mode: str = "RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, "white").save(out, "PNG")
    return out.getvalue()


def test_an_image_url_on_another_host_is_never_fetched(
    stub: Provider, generator: OpenAIGenerator
) -> None:
    # "localhost" reaches the same loopback stub, but it is not the host we were set up with:
    # a provider's answer must not steer us at any other address (a metadata service).
    port = stub.url.rsplit(":", 1)[1]
    elsewhere = f"http://localhost:{port}/latest/meta-data/iam/security-credentials/"
    stub.canned += [Canned(200, {"data": [{"url": elsewhere}]}), Canned(200, png_of((64, 64)))]
    with pytest.raises(UpstreamError, match="another host"):
        generator.generate([request()], lambda info: None)
    assert [seen.method for seen in stub.seen] == ["POST"]


def test_an_answer_is_read_up_to_the_cap_and_no_further(stub: Provider) -> None:
    padded = {"data": [b64_png("red")], "padding": "x" * 200_000}
    stub.canned.append(Canned(200, padded))
    generator = OpenAIGenerator(f"{stub.url}/v1", max_retries=0, max_response_bytes=100_000)
    generator.load()
    try:
        with pytest.raises(UpstreamError, match="larger than 100000 bytes"):
            generator.generate([request()], lambda info: None)
    finally:
        generator.close()


def test_a_huge_image_is_refused_before_it_is_decoded(
    stub: Provider, generator: OpenAIGenerator
) -> None:
    huge = base64.b64encode(png_of((9000, 9000), "L")).decode()
    stub.canned.append(Canned(200, {"data": [{"b64_json": huge}]}))
    with pytest.raises(UpstreamError, match="9000x9000 image for a 64x64 job"):
        generator.generate([request()], lambda info: None)


def test_an_image_of_another_size_is_fitted_to_the_size_asked_for(
    stub: Provider, generator: OpenAIGenerator
) -> None:
    wide = base64.b64encode(png_of((200, 100))).decode()
    stub.canned.append(Canned(200, {"data": [{"b64_json": wide}]}))
    (images,) = generator.generate([request()], lambda info: None)
    assert images[0].size == (64, 64)
