"""Admin routes: the review queue and its decisions, and the audit log. They need the
admin token (``IMAGEGATE_ADMIN_TOKEN``) as ``Authorization: Bearer …``; without a
configured token they are closed."""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Response

from imagegate.api.deps import LinksDep, RuntimeDep
from imagegate.api.schemas import JobOut
from imagegate.errors import IllegalTransition, ImageNotFound, Unauthorized
from imagegate.jobs.audit import AuditEntry
from imagegate.jobs.states import Status
from imagegate.runtime import Runtime


def admin(runtime: RuntimeDep, authorization: Annotated[str | None, Header()] = None) -> str:
    """Checks the bearer token; returns who decided, for the record."""
    token = runtime.settings.admin_token
    if token is None:
        raise Unauthorized("The admin API is off: set IMAGEGATE_ADMIN_TOKEN to use it.")
    scheme, _, given = (authorization or "").partition(" ")
    expected = token.get_secret_value().encode()
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), expected):
        raise Unauthorized()
    return "admin"


AdminDep = Annotated[str, Depends(admin)]
router = APIRouter(prefix="/v1/admin", tags=["admin"])


@router.get("/reviews", response_model=list[JobOut])
def review_queue(_: AdminDep, runtime: RuntimeDep, links: LinksDep) -> list[JobOut]:
    """Jobs held for a reviewer, oldest first, with the checks that held them."""
    return [JobOut.of(job, links) for job in runtime.store.pending_review()]


@router.post("/reviews/{job_id}/approve", response_model=JobOut)
def approve(job_id: str, reviewer: AdminDep, runtime: RuntimeDep, links: LinksDep) -> JobOut:
    return JobOut.of(_decide(runtime, job_id, reviewer, approve=True), links)


@router.post("/reviews/{job_id}/reject", response_model=JobOut)
def reject(job_id: str, reviewer: AdminDep, runtime: RuntimeDep, links: LinksDep) -> JobOut:
    return JobOut.of(_decide(runtime, job_id, reviewer, approve=False), links)


@router.get(
    "/reviews/{job_id}/images/{index}",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}},
)
def withheld_image(_: AdminDep, runtime: RuntimeDep, job_id: str, index: int) -> Response:
    """An image the output gate withheld (quarantined), for the reviewer to look at."""
    png = runtime.quarantine.get(runtime.store.get(job_id), index)
    return Response(png, media_type="image/png", headers={"Cache-Control": "no-store"})


@router.get("/audit")
def audit_log(
    _: AdminDep,
    runtime: RuntimeDep,
    category: str | None = None,
    stage: str | None = None,
    action: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, list[dict[str, Any]]]:
    """Blocked, flagged and reviewed requests, newest first."""
    entries = runtime.store.audit_entries(
        category=category, stage=stage, action=action, limit=limit
    )
    return {"data": entries}


@router.get("/audit/counts")
def audit_counts(_: AdminDep, runtime: RuntimeDep) -> dict[str, dict[str, int]]:
    return runtime.store.audit_counts()


def _decide(runtime: Runtime, job_id: str, reviewer: str, approve: bool) -> Any:
    """Record the decision. A job held for its images has them released from quarantine
    first, and the copies dropped again if the decision cannot be recorded."""
    job = runtime.store.get(job_id)
    categories, reasons = _what_held(job.moderation or {})
    entry = AuditEntry(
        owner=job.owner,
        prompt=job.spec.prompt,
        normalized_prompt=job.spec.full_prompt,
        stage="review",
        action="approve" if approve else "reject",
        categories=categories,
        reasons=reasons,
    )
    held_output = job.status is Status.PENDING_REVIEW and job.meta is not None
    if not (approve and held_output):  # rejected, held before it ran, or not held
        return runtime.store.review(job_id, approve, reviewer, entry)
    try:
        released = runtime.quarantine.release(job)
    except ImageNotFound:
        decided_meanwhile = runtime.store.get(job_id)
        if decided_meanwhile.status is Status.PENDING_REVIEW:
            raise  # still held, but its images are gone: nothing to release
        raise IllegalTransition(
            "The job is not waiting for this review.", job_status=decided_meanwhile.status
        ) from None
    try:
        decided = runtime.store.review(job_id, approve, reviewer, entry, released)
    except Exception:
        runtime.quarantine.settle(job, released, recorded=False)
        raise
    runtime.quarantine.settle(job, released, recorded=True)
    return decided


def _what_held(moderation: dict[str, Any]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The categories and reasons of the check that held the job: its prompt's, or, for
    a job held after it ran, its images'."""
    outputs = [o for o in moderation.get("output") or () if o.get("flagged")]
    if outputs:
        categories = sorted({c for o in outputs for c in o.get("categories", ())})
        reasons = tuple(dict.fromkeys(r for o in outputs for r in o.get("reasons", ())))
        return tuple(categories), reasons
    checked = moderation.get("input") or {}
    hits = tuple(c for c, hit in checked.get("categories", {}).items() if hit)
    return hits, tuple(checked.get("reasons", ()))
