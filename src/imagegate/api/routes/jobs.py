"""The /v1 job resource: submit, read, list, cancel."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from imagegate.api.deps import LinksDep, OwnerDep, RuntimeDep
from imagegate.api.schemas import JobCreate, JobOut, JobPage
from imagegate.jobs.specs import build_spec
from imagegate.jobs.states import Status

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


@router.post("", status_code=202, response_model=JobOut)
def submit_job(
    body: JobCreate, runtime: RuntimeDep, owner: OwnerDep, links: LinksDep, response: Response
) -> JobOut:
    job = runtime.store.submit(build_spec(body.to_request(), runtime.settings), owner)
    response.headers["Location"] = links.job(job.id)
    return JobOut.of(job, links.image)


@router.get("/{job_id}", response_model=JobOut)
def get_job(job_id: str, runtime: RuntimeDep, owner: OwnerDep, links: LinksDep) -> JobOut:
    return JobOut.of(runtime.store.get(job_id, owner), links.image)


@router.get("", response_model=JobPage)
def list_jobs(
    runtime: RuntimeDep,
    owner: OwnerDep,
    links: LinksDep,
    status: Status | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: str | None = None,
) -> JobPage:
    """Newest first. Pass ``next_cursor`` back as ``cursor`` for the next page."""
    page, next_cursor = runtime.store.list_jobs(owner, status=status, limit=limit, cursor=cursor)
    return JobPage(data=[JobOut.of(job, links.image) for job in page], next_cursor=next_cursor)


@router.post("/{job_id}/cancel", status_code=202, response_model=JobOut)
def cancel_job(job_id: str, runtime: RuntimeDep, owner: OwnerDep, links: LinksDep) -> JobOut:
    """Queued: canceled at once. Generating: stops at its next step. Finished: 409."""
    return JobOut.of(runtime.store.cancel(job_id, owner), links.image)
