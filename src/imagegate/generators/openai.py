"""``openai``: any OpenAI-compatible Images API as a backend (OpenAI, or another ImageGate).

Each request of a batch is one ``POST {base}/images/generations`` with the full prompt,
``n`` and ``size`` ("WxH"), asking for ``b64_json``. An answer that carries a ``url``
instead is downloaded with the same client (without the API key), so the images are
always stored and served by us, never by the provider. The provider is not trusted with
our network: a URL is fetched only from the provider's own host (never a redirect), an
answer is read up to ``max_response_bytes`` and no further, and an image's size is checked
from its header before it is decoded: one far larger than asked for is refused, and one of
another size is fitted (scaled and centre-cropped) to the size the job asked for.

The Images API has no field for the seed, the negative prompt, the steps or the guidance,
so none of them is sent: the seed recorded with the job is ours alone, and the same job
run twice gives different images.

429 and 5xx answers and failed connections are tried again, up to ``max_retries`` times,
after the ``Retry-After`` the provider asks for (in seconds) or else an exponential
backoff with full jitter. The provider's error envelope ``{"error": {"message", "type",
"param", "code"}}`` maps onto :class:`imagegate.errors.UpstreamError` and its subclasses.
"""

from __future__ import annotations

import base64
import binascii
import io
import random
import time
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import httpx
import structlog
from PIL import Image as PILImage
from PIL import ImageOps
from PIL.Image import Image

from imagegate.errors import (
    ContentPolicyViolation,
    UpstreamBadRequest,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamUnavailable,
)
from imagegate.generators import GenerationRequest, StepCallback, StepInfo

if TYPE_CHECKING:
    from imagegate.settings import Settings

log = structlog.get_logger(__name__)

CONNECT_TIMEOUT_S = 10.0
MAX_PAUSE_S = 30.0  # longer waits are the job queue's business, not a worker's sleep
CONTENT_POLICY_CODES = frozenset({"content_policy_violation", "moderation_blocked"})
MAX_RESPONSE_BYTES = 64 * 1024 * 1024  # a few full-size PNGs in base64
MAX_OVERSIZE = 4  # an image may be this many times the asked width or height, and no more


class OpenAIGenerator:
    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        model: str = "dall-e-2",
        timeout_s: float = 60.0,
        max_retries: int = 3,
        backoff_s: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
    ) -> None:
        self._base_url = base_url.rstrip("/") + "/"
        self._max_response_bytes = max_response_bytes
        self._api_key = api_key
        self._model = model
        self._timeout = httpx.Timeout(timeout_s, connect=min(CONNECT_TIMEOUT_S, timeout_s))
        self._max_retries = max_retries
        self._backoff_s = backoff_s
        self._sleep = sleep
        self._client: httpx.Client | None = None
        self._close: Callable[[], object] = lambda: None

    @classmethod
    def from_settings(cls, settings: Settings) -> OpenAIGenerator:
        key = settings.openai_api_key
        return cls(
            base_url=settings.openai_base_url,
            api_key=key.get_secret_value() if key else None,
            model=settings.openai_model,
            timeout_s=settings.openai_timeout_s,
            max_retries=settings.openai_max_retries,
            backoff_s=settings.openai_retry_backoff_s,
            max_response_bytes=settings.openai_max_response_bytes,
        )

    @property
    def model_name(self) -> str:
        return self._model

    def load(self) -> None:
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        self._client = httpx.Client(base_url=self._base_url, headers=headers, timeout=self._timeout)
        # Nothing closes a generator (the protocol has no close), so the pool's sockets are
        # closed when the generator goes away rather than left to the garbage collector.
        self._close = weakref.finalize(self, self._client.close)

    def close(self) -> None:
        self._close()

    def generate(
        self, batch: Sequence[GenerationRequest], on_step: StepCallback
    ) -> list[list[Image]]:
        images = []
        for request in batch:
            images.append(self._generate_one(request))
            on_step(StepInfo(1, 1))
        return images

    def _generate_one(self, request: GenerationRequest) -> list[Image]:
        response = self._send(
            lambda client: client.build_request(
                "POST", "images/generations", json=self._body(request)
            )
        )
        size = (request.width, request.height)
        return [_fitted(self._image_of(item, size), size) for item in _items(response, request.n)]

    def _body(self, request: GenerationRequest) -> dict[str, Any]:
        return {
            "model": self._model,
            "prompt": request.prompt,
            "n": request.n,
            "size": f"{request.width}x{request.height}",
            "response_format": "b64_json",
        }

    def _image_of(self, item: dict[str, Any], size: tuple[int, int]) -> Image:
        if isinstance(item.get("b64_json"), str):
            try:
                return _decode(base64.b64decode(item["b64_json"], validate=True), size)
            except binascii.Error as exc:
                raise UpstreamError("The image provider sent invalid base64.") from exc
        if isinstance(item.get("url"), str):
            return _decode(self._download(item["url"]), size)
        raise UpstreamError("The image provider's answer has neither b64_json nor url.")

    def _download(self, url: str) -> bytes:
        # Only from the provider's own host: any other address in an answer would make us a
        # proxy into our own network (a metadata service, an admin port) for the provider.
        try:
            target = httpx.URL(url)
        except httpx.InvalidURL as exc:
            raise UpstreamError("The image provider sent an image URL we cannot fetch.") from exc
        if target.scheme not in ("http", "https") or target.host != self._provider_host:
            log.warning("openai.url_refused", url=str(target.copy_with(query=None)))
            raise UpstreamError("The image provider sent an image URL on another host.")
        return self._send(lambda client: _without_key(client.build_request("GET", url))).content

    @property
    def _provider_host(self) -> str:
        return httpx.URL(self._base_url).host

    def _send(self, build: Callable[[httpx.Client], httpx.Request]) -> httpx.Response:
        """Send, retrying 429, 5xx and failed connections; raise the mapped error on failure."""
        assert self._client is not None, "load() first"
        for attempt in range(self._max_retries + 1):
            last = attempt == self._max_retries
            try:
                response = self._read_capped(self._client.send(build(self._client), stream=True))
            except httpx.TransportError as exc:
                if last:
                    raise UpstreamUnavailable(f"The image provider is unreachable: {exc}") from exc
                self._pause(attempt, None, type(exc).__name__)
                continue
            if response.is_success:
                return response
            if last or not _retryable(response.status_code):
                raise upstream_error(response)
            self._pause(attempt, response.headers.get("Retry-After"), response.status_code)
        raise AssertionError("unreachable")  # pragma: no cover

    def _read_capped(self, response: httpx.Response) -> httpx.Response:
        """Read the body, but never more than the cap: the provider chooses its length."""
        body = bytearray()
        try:
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > self._max_response_bytes:
                    raise UpstreamError(
                        f"The image provider's answer is larger than {self._max_response_bytes}"
                        " bytes."
                    )
        finally:
            response.close()
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            content=bytes(body),
            request=response.request,
        )

    def _pause(self, attempt: int, retry_after: str | None, why: object) -> None:
        asked = _seconds(retry_after)
        ceiling = min(MAX_PAUSE_S, self._backoff_s * 2**attempt)
        pause = min(asked, MAX_PAUSE_S) if asked is not None else random.uniform(0, ceiling)
        log.info("openai.retry", attempt=attempt + 1, reason=why, pause_s=round(pause, 3))
        self._sleep(pause)


def upstream_error(response: httpx.Response) -> UpstreamError:
    """The provider's refusal, from its error envelope, as one of our errors."""
    error = _envelope(response)
    status = response.status_code
    message = f"The image provider answered {status}: {error.get('message') or 'no reason'}"
    extra = {"provider_status": status, "provider_code": error.get("code")}
    if error.get("code") in CONTENT_POLICY_CODES:
        return ContentPolicyViolation(message, **extra)
    if status == 429:
        return UpstreamRateLimited(message, **extra)
    if status >= 500:
        return UpstreamUnavailable(message, **extra)
    return UpstreamBadRequest(message, **extra)


def _envelope(response: httpx.Response) -> dict[str, Any]:
    try:
        error = response.json()["error"]
    except (ValueError, KeyError, TypeError):
        return {"message": response.text[:200]}
    return error if isinstance(error, dict) else {"message": str(error)}


def _items(response: httpx.Response, n: int) -> list[dict[str, Any]]:
    try:
        data = response.json()["data"]
    except (ValueError, KeyError, TypeError) as exc:
        raise UpstreamError("The image provider's answer has no image data.") from exc
    if not isinstance(data, list) or len(data) != n or not all(isinstance(x, dict) for x in data):
        raise UpstreamError(f"The image provider did not send the {n} image(s) asked for.")
    return data


def _decode(data: bytes, size: tuple[int, int]) -> Image:
    """The image, once its header shows a size we are willing to decode."""
    try:
        image = PILImage.open(io.BytesIO(data))
        width, height = image.size
        if width > size[0] * MAX_OVERSIZE or height > size[1] * MAX_OVERSIZE:
            raise UpstreamError(
                f"The image provider sent a {width}x{height} image for a {size[0]}x{size[1]} job."
            )
        image.load()
    except (OSError, ValueError, PILImage.DecompressionBombError) as exc:
        raise UpstreamError("The image provider sent an unreadable image.") from exc
    return image


def _fitted(image: Image, size: tuple[int, int]) -> Image:
    """The image at the size the job asked for: scaled to cover it, then centre-cropped."""
    if image.size == size:
        return image
    log.info("openai.image_resized", sent=image.size, wanted=size)
    return ImageOps.fit(image, size, method=PILImage.Resampling.LANCZOS)


def _without_key(request: httpx.Request) -> httpx.Request:
    # Image URLs are signed by their host; our API key is for the API, not for a CDN.
    request.headers.pop("Authorization", None)
    return request


def _retryable(status: int) -> bool:
    return status == 429 or status >= 500


def _seconds(retry_after: str | None) -> float | None:
    try:
        return max(0.0, float(retry_after)) if retry_after is not None else None
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff
