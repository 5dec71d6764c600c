"""The original client contract, kept exactly: POST /generate and GET /status/{job_id}."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from imagegate.api.deps import (
    IdempotencyKeyHeader,
    LinksDep,
    PolledRoute,
    RuntimeDep,
    Writer,
    authorized,
    client_ip,
    json_answer,
    links_of,
    poll_hint,
    polled,
    runtime_of,
)
from imagegate.api.openapi import headers
from imagegate.api.problems import documented
from imagegate.api.schemas import LegacyGenerateIn, LegacyGenerateOut, LegacyStatusOut
from imagegate.api.submission import submit
from imagegate.cache import idempotency
from imagegate.errors import InvalidField
from imagegate.jobs.specs import JobRequest, build_spec
from imagegate.tenancy.principal import Scope

router = APIRouter(tags=["original API"])
polls = APIRouter(tags=["original API"], route_class=PolledRoute)


@router.post(
    "/generate",
    response_model=LegacyGenerateOut,
    responses=documented(
        402, 503, answers={200: headers("Cache-Status", "RateLimit-Policy", "RateLimit")}
    ),
)
def generate(
    runtime: RuntimeDep,
    principal: Writer,
    request: Request,
    response: Response,
    links: LinksDep,
    body: Annotated[LegacyGenerateIn | None, Body()] = None,
    user_prompt: Annotated[str | None, Query(description="The query form's prompt")] = None,
    style: Annotated[str | None, Query(description="The query form's style")] = None,
    idempotency_key: IdempotencyKeyHeader = None,
) -> LegacyGenerateOut:
    """Queue a job from a JSON body ``{"prompt", "style"}`` or ``?user_prompt=&style=``."""
    prompt = body.prompt if body else user_prompt
    if prompt is None:
        raise InvalidField("prompt", "missing_field", "A prompt is required.")
    asked = JobRequest(prompt=prompt, style=body.style if body else style)
    spec = build_spec(asked, runtime.settings)
    fields = {"prompt": prompt, "style": asked.style}
    again = idempotency.request_of(idempotency_key, "/generate", fields)
    accepted = submit(
        runtime, principal, spec, client_ip(request), principal.user, idempotent=again
    )
    response.headers.update(accepted.headers)
    job = accepted.submitted.job
    return LegacyGenerateOut(job_id=job.id, status=job.status, check_url=links.status(job.id))


@polls.get(
    "/status/{job_id}",
    response_model=LegacyStatusOut,
    **polled(404, answers={200: headers("Retry-After")}),
)
async def status(job_id: str, request: Request) -> Response:
    """The job's state, and its image's URL once it is completed. While it is unfinished,
    `Retry-After` says when to poll again."""
    # Every client polls this every few seconds: one trip to the thread pool (credential
    # and read), and no dependency to solve (deps.polled).
    return await run_in_threadpool(_status, job_id, request)


def _status(job_id: str, request: Request) -> Response:
    runtime = runtime_of(request)
    principal = authorized(runtime, request, Scope.JOBS_READ)
    job = runtime.store.glance(job_id, principal.tenant, principal.user)
    image = job.first_image
    answer = LegacyStatusOut(
        id=job_id,
        status=job.status,
        result_url=links_of(request, runtime).image_id(job_id, *image) if image else None,
        error=job.error if job.status.is_final else None,
    )
    return json_answer(answer, poll_hint(runtime, job.status))
