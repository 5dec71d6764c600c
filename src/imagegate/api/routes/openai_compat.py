"""The OpenAI Images API, spoken by ImageGate: ``POST /v1/images/generations``, ``GET /v1/models``.

An OpenAI client works against ImageGate with its base URL set to ``{ImageGate}/v1``. A
generation is an ordinary job (the same checks, queue, workers and storage as ``POST
/v1/jobs``) that the request waits for, up to ``IMAGEGATE_JOB_TIMEOUT_S``; after that it
answers 504 and cancels the job, since nobody is left to collect it.

How OpenAI's fields become a job:

- ``size`` "WxH" gives the width and height ("auto" or none: the default size).
- ``n`` is 1 to 4, as for every job.
- ``quality`` "hd" or "high" doubles the default steps (within the maximum), "low" halves
  them, and the others keep the default.
- ``style`` "vivid" becomes our ``cinematic`` style and "natural" no style; any of our own
  style names (``GET /v1/styles``) is taken as is.
- ``response_format`` "url" (the default) answers our signed image URL, "b64_json" the PNG.
- ``model`` may be omitted or name the model this server runs (``GET /v1/models``).
- ``user`` is the end user, as ``user`` of ``POST /v1/jobs`` (per-user limits and
  history; a browser token's own user). There is no seed: the Images API has none.
- Each image's ``revised_prompt`` is the full prompt, the style's suffix included.

Every error on these routes, ours or the request's, is in OpenAI's envelope ``{"error":
{"message", "type", "param", "code"}}`` (:class:`OpenAIRoute`), with 400 where the rest
of the API says 422, because that is what OpenAI's clients expect.
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Callable, Coroutine
from functools import partial
from typing import Any, Literal

import structlog
from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from imagegate.api.deps import (
    IdempotencyKeyHeader,
    LinksDep,
    PrincipalDep,
    RuntimeDep,
    Writer,
    client_ip,
)
from imagegate.api.links import Links
from imagegate.api.problems import _field_error, error_headers
from imagegate.api.submission import end_user, submit
from imagegate.cache import idempotency
from imagegate.errors import (
    GenerationError,
    IllegalTransition,
    ImageGateError,
    InvalidField,
    MalformedBody,
    WaitTimeout,
)
from imagegate.jobs.models import ImageRecord, Job, JobSpec
from imagegate.jobs.specs import JobRequest, build_spec
from imagegate.jobs.states import Status
from imagegate.runtime import Runtime
from imagegate.settings import Settings

log = structlog.get_logger(__name__)

SAFETY_POLL_S = 1.0  # seconds between reads when no event wakes the wait
OPENAI_STYLES: dict[str, str | None] = {"vivid": "cinematic", "natural": None}
SIZE = re.compile(r"([0-9]{1,5})x([0-9]{1,5})")
STARTED = int(time.time())


class OpenAIRoute(APIRoute):
    """A route whose every error is answered in OpenAI's envelope instead of problem+json."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except Exception as exc:
                return openai_error(exc, request.url.path)

        return handle


router = APIRouter(prefix="/v1", tags=["OpenAI compatible"], route_class=OpenAIRoute)


class ImageGenerationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt: str
    model: str | None = None
    n: int = 1
    size: str | None = None
    quality: Literal["standard", "hd", "low", "medium", "high", "auto"] | None = None
    style: str | None = None
    response_format: Literal["url", "b64_json"] | None = "url"
    output_format: Literal["png", "webp", "jpeg"] | None = None
    output_compression: int | None = None
    user: str | None = None

    def to_request(self, settings: Settings) -> JobRequest:
        width, height = _size(self.size)
        return JobRequest(
            prompt=self.prompt,
            style=OPENAI_STYLES.get(self.style, self.style) if self.style else None,
            width=width,
            height=height,
            steps=_steps(self.quality, settings),
            n=self.n,
            output_format=self.output_format,
            output_compression=self.output_compression,
        )


class ImageOut(BaseModel):
    url: str | None = None
    b64_json: str | None = None
    revised_prompt: str


class ImagesOut(BaseModel):
    created: int
    data: list[ImageOut]
    output_format: Literal["png", "webp", "jpeg"] = "png"


class ModelOut(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "imagegate"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelOut]


@router.post("/images/generations", response_model=ImagesOut, response_model_exclude_none=True)
async def create_images(
    body: ImageGenerationIn,
    runtime: RuntimeDep,
    principal: Writer,
    request: Request,
    links: LinksDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> ImagesOut:
    """Generate images and wait for them, as OpenAI's Images API does."""
    _check_model(body.model, runtime.settings)
    spec = _spec(body, runtime.settings)
    user = end_user(principal, body.user)
    fields = body.model_dump(mode="json")
    again = idempotency.request_of(idempotency_key, "/v1/images/generations", fields)
    accepted = await run_in_threadpool(
        partial(submit, idempotent=again), runtime, principal, spec, client_ip(request), user
    )
    job = accepted.submitted.job
    job = await wait_for_job(runtime, job.id, runtime.settings.job_timeout_s)
    as_b64 = body.response_format == "b64_json"
    return await run_in_threadpool(_answer, job, as_b64, runtime, links)


@router.get("/models", response_model=ModelList)
def list_models(runtime: RuntimeDep, _: PrincipalDep) -> ModelList:
    return ModelList(data=[ModelOut(id=served_model(runtime.settings), created=STARTED)])


async def wait_for_job(runtime: Runtime, job_id: str, timeout_s: float) -> Job:
    """The job once final; after ``timeout_s``, cancel it and raise :class:`WaitTimeout`.

    Woken by the job's events (from any process), with a slow poll as a safety net.
    """
    store = runtime.store
    deadline = time.monotonic() + timeout_s
    with runtime.hub.waiter(job_id) as waiter:
        while (left := deadline - time.monotonic()) > 0:
            job = await run_in_threadpool(store.get, job_id)
            if job.status.is_final:
                return job
            await waiter.wait(min(left, SAFETY_POLL_S))
    try:
        await run_in_threadpool(store.cancel, job_id)
    except IllegalTransition:  # it finished just now after all
        return await run_in_threadpool(store.get, job_id)
    raise WaitTimeout(f"The job did not finish within {timeout_s:g} s; it was canceled.")


def served_model(settings: Settings) -> str:
    return settings.openai_model if settings.backend == "openai" else settings.model_name


def _check_model(model: str | None, settings: Settings) -> None:
    served = served_model(settings)
    if model is not None and model != served:
        raise InvalidField(
            "model", "model_not_found", f"The model {model!r} does not exist; use {served!r}."
        )


def _spec(body: ImageGenerationIn, settings: Settings) -> JobSpec:
    try:
        return build_spec(body.to_request(settings), settings)
    except InvalidField as refused:
        if refused.field not in ("width", "height"):
            raise
        message = f"Invalid size {body.size!r}: {refused.message}"
        raise InvalidField("size", refused.code, message, **refused.extra) from refused


def _size(size: str | None) -> tuple[int | None, int | None]:
    if size is None or size == "auto":
        return None, None
    match = SIZE.fullmatch(size)
    if match is None:
        raise InvalidField(
            "size", "invalid_dimensions", f"The size {size!r} is not WIDTHxHEIGHT, like 512x512."
        )
    return int(match[1]), int(match[2])


def _steps(quality: str | None, settings: Settings) -> int | None:
    if quality in ("hd", "high"):
        return min(settings.default_steps * 2, settings.max_steps)
    if quality == "low":
        return max(settings.default_steps // 2, 1)
    return None


def _answer(job: Job, as_b64: bool, runtime: Runtime, links: Links) -> ImagesOut:
    if job.status is not Status.COMPLETED:
        raise job_failure(job)
    data = [_image_out(image, job, as_b64, runtime, links) for image in job.images]
    return ImagesOut(
        created=int(job.created_at.timestamp()),
        data=data,
        output_format=job.spec.output_format,
    )


def _image_out(
    image: ImageRecord, job: Job, as_b64: bool, runtime: Runtime, links: Links
) -> ImageOut:
    revised = job.spec.full_prompt
    if as_b64:
        data = base64.b64encode(runtime.storage.get(image.storage_key)).decode("ascii")
        return ImageOut(b64_json=data, revised_prompt=revised)
    return ImageOut(url=links.image(image), revised_prompt=revised)


def job_failure(job: Job) -> ImageGateError:
    """A failed or canceled job's own error, with the status its code has in our tree."""
    code = job.error.code if job.error else "generation_failed"
    message = job.error.message if job.error else f"The job ended {job.status.value}."
    failure = _ERRORS_BY_CODE.get(code, GenerationError)(message)
    failure.code = code  # type: ignore[misc]  # keep the job's code even when unknown to us
    return failure


def _all_errors(root: type[ImageGateError]) -> list[type[ImageGateError]]:
    return [root, *(sub for child in root.__subclasses__() for sub in _all_errors(child))]


# Reversed, so that where a subclass inherits its parent's code, the parent wins.
_ERRORS_BY_CODE = {kind.code: kind for kind in reversed(_all_errors(ImageGateError))}


# -- errors in OpenAI's envelope ------------------------------------------------------------


def openai_error(exc: Exception, path: str) -> JSONResponse:
    if isinstance(exc, RequestValidationError):
        exc = _validation_failure(exc)
    if isinstance(exc, ImageGateError):
        param = exc.field if isinstance(exc, InvalidField) else None
        status = 400 if exc.status == 422 else exc.status
        response = envelope(status, exc.message, exc.code, param)
        response.headers.update(error_headers(exc))
        return response
    if isinstance(exc, HTTPException):
        return envelope(exc.status_code, str(exc.detail), None, None)
    log.exception("request.failed", path=path)
    return envelope(500, "An unexpected error occurred.", "internal_error", None)


def envelope(status: int, message: str, code: str | None, param: str | None) -> JSONResponse:
    kind = "invalid_request_error"
    if status == 429:
        kind = "rate_limit_error"
    elif status >= 500:
        kind = "server_error"
    error = {"message": message, "type": kind, "param": param, "code": code}
    return JSONResponse({"error": error}, status_code=status)


def _validation_failure(exc: RequestValidationError) -> ImageGateError:
    errors = [_field_error(error) for error in exc.errors()]
    if not errors or any(error["code"] == "malformed_json" for error in errors):
        return MalformedBody()
    first = errors[0]
    if not first["field"]:
        return MalformedBody(f"The request body is not valid: {first['message']}.")
    return InvalidField(first["field"], first["code"], f"{first['field']}: {first['message']}")
