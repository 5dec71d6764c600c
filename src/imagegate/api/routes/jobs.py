"""The /v1 job resource: submit, read, list, cancel, webhook deliveries, previews."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from imagegate.api.deps import (
    CacheControlHeader,
    IdempotencyKeyHeader,
    LinksDep,
    PolledRoute,
    Reader,
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
from imagegate.api.image_headers import image_headers
from imagegate.api.openapi import headers
from imagegate.api.problems import documented
from imagegate.api.schemas import JobCreate, JobOut, JobPage
from imagegate.api.submission import end_user, submit
from imagegate.cache import idempotency
from imagegate.cache.keys import cache_request, mode_of
from imagegate.errors import ImageNotFound
from imagegate.jobs.models import Job
from imagegate.jobs.states import Status
from imagegate.runtime import Runtime
from imagegate.storage.keys import preview_key
from imagegate.tenancy.principal import Scope

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
polls = APIRouter(prefix="/v1/jobs", tags=["jobs"], route_class=PolledRoute)


SUBMITTED = headers(
    "Location",
    "Cache-Status",
    "Idempotent-Replayed",
    "RateLimit-Policy",
    "RateLimit",
    "Retry-After",
)


@router.post(
    "",
    status_code=202,
    response_model=JobOut,
    responses=documented(402, 503, answers={202: SUBMITTED}),
)
def submit_job(
    body: JobCreate,
    runtime: RuntimeDep,
    principal: Writer,
    request: Request,
    links: LinksDep,
    response: Response,
    idempotency_key: IdempotencyKeyHeader = None,
    cache_control: CacheControlHeader = None,
) -> JobOut:
    """Give ``prompt`` (and optionally ``style``), or ``template`` and ``inputs``. The prompt
    is checked by the safety pipeline: a refusal is a 400 ``content_policy_violation``, a
    prompt held for a reviewer starts ``pending_review``, and warnings come back in
    ``warnings``. Rate limits, quotas and caps refuse with 429, a budget with 402, a full
    queue with 503; admitted submissions carry ``RateLimit-Policy`` and ``RateLimit``.

    A seeded request is answered from the cache when the same one was made before (a job
    already ``completed``, ``metadata.cache: "hit"``, no cost), and follows an identical
    job in flight rather than generating twice. ``Cache-Status`` says which."""
    user = end_user(principal, body.user)
    spec = runtime.intake.spec(body.to_request(), body.template, body.inputs)
    if body.webhook_url is not None:
        runtime.guard.check(body.webhook_url)
    mode = mode_of(cache_control, body.cache)
    cache = cache_request(spec, body.seed is not None, principal.tenant, runtime.settings, mode)
    asked = idempotency.request_of(idempotency_key, "/v1/jobs", body.model_dump(mode="json"))
    accepted = submit(
        runtime,
        principal,
        spec,
        client_ip(request),
        user,
        body.webhook_url,
        body.template,
        cache=cache,
        idempotent=asked,
    )
    submitted = accepted.submitted
    response.headers.update(accepted.headers)
    if accepted.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    response.headers["Location"] = links.job(submitted.job.id)
    response.headers.update(poll_hint(runtime, submitted.job.status))
    view = job_view(runtime, submitted.job, links)
    return view.model_copy(update={"warnings": list(submitted.warnings)})


@polls.get(
    "/{job_id}",
    response_model=JobOut,
    **polled(404, answers={200: headers("Retry-After")}),
)
async def get_job(job_id: str, request: Request) -> Response:
    """The job, with its place in the queue while it waits. While it is unfinished,
    `Retry-After` says when to poll again (or follow `/events`)."""
    # Polled often: one trip to the thread pool (credential and read), as GET /status.
    return await run_in_threadpool(_job, job_id, request)


def _job(job_id: str, request: Request) -> Response:
    runtime = runtime_of(request)
    principal = authorized(runtime, request, Scope.JOBS_READ)
    stale_after_s = _stale_after_s(runtime)
    job, queue = runtime.store.poll(job_id, principal.tenant, principal.user, stale_after_s)
    view = JobOut.of(job, links_of(request, runtime), queue)
    return json_answer(view, poll_hint(runtime, job.status))


@router.get("", response_model=JobPage)
def list_jobs(
    runtime: RuntimeDep,
    principal: Reader,
    links: LinksDep,
    status: Status | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: str | None = None,
    user: Annotated[str | None, Query(max_length=200, description="One end user's jobs.")] = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
) -> JobPage:
    """Newest first. Pass ``next_cursor`` back as ``cursor`` for the next page. A browser
    token lists its own user's jobs only."""
    page, next_cursor = runtime.store.list_jobs(
        principal.tenant,
        status=status,
        limit=limit,
        cursor=cursor,
        user=end_user(principal, user),
        created_after=created_after,
        created_before=created_before,
    )
    return JobPage(data=[JobOut.of(job, links) for job in page], next_cursor=next_cursor)


@router.post(
    "/{job_id}/cancel", status_code=202, response_model=JobOut, responses=documented(404, 409)
)
def cancel_job(job_id: str, runtime: RuntimeDep, principal: Writer, links: LinksDep) -> JobOut:
    """Queued: canceled at once. Generating: stops at its next step. Finished: 409."""
    return JobOut.of(runtime.store.cancel(job_id, principal.tenant, principal.user), links)


@router.get("/{job_id}/webhooks", responses=documented(404))
def list_webhook_deliveries(
    job_id: str, runtime: RuntimeDep, principal: Reader
) -> dict[str, list[dict[str, Any]]]:
    """Each webhook message of the job, with every delivery attempt."""
    runtime.store.get(job_id, principal.tenant, principal.user)
    return {"data": runtime.store.webhook_deliveries(job_id)}


@router.get(
    "/{job_id}/previews/{step}",
    response_class=Response,
    responses=documented(
        403,
        404,
        answers={
            200: {"content": {"image/png": {}}, "description": "A low-resolution preview."}
            | headers("Cache-Control", "Content-Disposition"),
        },
    ),
)
def get_preview(
    job_id: str,
    step: int,
    runtime: RuntimeDep,
    expires: Annotated[int, Query()],
    sig: Annotated[str, Query(max_length=128)],
    kid: Annotated[str | None, Query(max_length=16)] = None,
) -> Response:
    runtime.signer.verify(f"preview/{job_id}/{step}", expires, sig, kid)
    if withheld(runtime.store.get(job_id)):  # its images are not served: nor their previews
        raise ImageNotFound("No preview was made at this step.")
    try:
        data = runtime.storage.get(preview_key(job_id, step))
    except ImageNotFound as exc:
        raise ImageNotFound("No preview was made at this step.") from exc
    return Response(
        data,
        media_type="image/png",
        headers=image_headers(f"{job_id}-preview-{step}", "private, max-age=3600"),
    )


def withheld(job: Job) -> bool:
    """The output gate withheld the job's images: it failed for them, or waits for review."""
    outputs = (job.moderation or {}).get("output") or ()
    flagged = any(output.get("flagged") for output in outputs)
    return flagged and job.status is not Status.COMPLETED


def job_view(runtime: Runtime, job: Job, links: Any) -> JobOut:
    """The job resource, with its place in the queue while it waits."""
    queue = None
    if job.status is Status.QUEUED:
        queue = runtime.store.queue_info(job, stale_after_s=_stale_after_s(runtime))
    return JobOut.of(job, links, queue)


def _stale_after_s(runtime: Runtime) -> float:
    """A worker not seen for two leases no longer counts towards a waiting job's ETA."""
    return 2 * runtime.settings.lease_s
