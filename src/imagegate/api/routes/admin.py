"""Admin routes: the review queue and its decisions, and the audit log. They need the
admin token (``IMAGEGATE_ADMIN_TOKEN``) as ``Authorization: Bearer …``; without a
configured token they are closed."""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query

from imagegate.api.deps import LinksDep, RuntimeDep
from imagegate.api.schemas import JobOut
from imagegate.errors import Unauthorized
from imagegate.jobs.audit import AuditEntry
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
    job = runtime.store.get(job_id)
    checked = (job.moderation or {}).get("input") or {}
    entry = AuditEntry(
        owner=job.owner,
        prompt=job.spec.prompt,
        normalized_prompt=job.spec.full_prompt,
        stage="review",
        action="approve" if approve else "reject",
        categories=tuple(c for c, hit in checked.get("categories", {}).items() if hit),
        reasons=tuple(checked.get("reasons", ())),
    )
    return runtime.store.review(job_id, approve, reviewer, entry)
