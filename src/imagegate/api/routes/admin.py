"""Admin routes: the review queue and its decisions, and the audit log. They need the
admin token (``IMAGEGATE_ADMIN_TOKEN``), which sees every tenant, or a key with the
``admin`` scope, which sees its own tenant only; as ``Authorization: Bearer …``. Without
a configured token, and with auth off, they are closed."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response

from imagegate.api.deps import LinksDep, RuntimeDep, client_ip, credential_of
from imagegate.api.image_headers import image_headers
from imagegate.api.openapi import headers, refuses
from imagegate.api.problems import documented
from imagegate.api.schemas import JobOut
from imagegate.errors import Forbidden, IllegalTransition, ImageNotFound
from imagegate.jobs.audit import AuditEntry
from imagegate.jobs.models import Job
from imagegate.jobs.states import Status
from imagegate.runtime import Runtime
from imagegate.storage.blobs import BlobWriter
from imagegate.storage.encoding import FORMATS
from imagegate.tenancy.principal import Principal


@refuses(401, 403, 429)  # no admin credential, a key without the scope, too many failures
def admin(runtime: RuntimeDep, request: Request) -> Principal:
    """The admin token, or a key with the admin scope."""
    credential = credential_of(request)
    return runtime.gate.authenticate(lambda: runtime.auth.admin(credential), client_ip(request))


AdminDep = Annotated[Principal, Depends(admin)]
router = APIRouter(prefix="/v1/admin", tags=["admin"])


def tenant_filter(principal: Principal) -> str | None:
    """None for the admin token (every tenant); a tenant admin's own tenant."""
    return None if principal.kind == "admin" else principal.tenant


def require_operator(principal: Principal) -> None:
    if principal.kind != "admin":
        raise Forbidden("Only the admin token sees every tenant.")


def reviewer(principal: Principal) -> str:
    return "admin" if principal.kind == "admin" else f"key:{principal.key_id}"


def held_job(runtime: Runtime, principal: Principal, job_id: str) -> Job:
    return runtime.store.get(job_id, tenant_filter(principal))


@router.get("/reviews", response_model=list[JobOut])
def review_queue(principal: AdminDep, runtime: RuntimeDep, links: LinksDep) -> list[JobOut]:
    """Jobs held for a reviewer, oldest first, with the checks that held them."""
    held = runtime.store.pending_review(owner=tenant_filter(principal))
    return [JobOut.of(job, links) for job in held]


@router.post("/reviews/{job_id}/approve", response_model=JobOut, responses=documented(404, 409))
def approve(job_id: str, principal: AdminDep, runtime: RuntimeDep, links: LinksDep) -> JobOut:
    job = held_job(runtime, principal, job_id)
    return JobOut.of(_decide(runtime, job, reviewer(principal), approve=True), links)


@router.post("/reviews/{job_id}/reject", response_model=JobOut, responses=documented(404, 409))
def reject(job_id: str, principal: AdminDep, runtime: RuntimeDep, links: LinksDep) -> JobOut:
    job = held_job(runtime, principal, job_id)
    return JobOut.of(_decide(runtime, job, reviewer(principal), approve=False), links)


@router.get(
    "/reviews/{job_id}/images/{index}",
    response_class=Response,
    responses=documented(
        404,
        answers={
            200: {
                "content": {kind: {} for kind in FORMATS.values()},
                "description": "The withheld image, in the job's output format.",
            }
            | headers("Cache-Control", "Content-Disposition"),
        },
    ),
)
def withheld_image(principal: AdminDep, runtime: RuntimeDep, job_id: str, index: int) -> Response:
    """An image the output gate withheld (quarantined), for the reviewer to look at."""
    job = held_job(runtime, principal, job_id)
    data = runtime.quarantine.get(job, index)
    media_type = FORMATS[job.spec.output_format]
    headers = image_headers(f"{job_id}-withheld-{index}", "no-store", media_type)
    return Response(data, media_type=media_type, headers=headers)


@router.get("/audit")
def audit_log(
    principal: AdminDep,
    runtime: RuntimeDep,
    category: str | None = None,
    stage: str | None = None,
    action: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, list[dict[str, Any]]]:
    """Blocked, flagged and reviewed requests, newest first."""
    entries = runtime.store.audit_entries(
        category=category, stage=stage, action=action, limit=limit, owner=tenant_filter(principal)
    )
    return {"data": entries}


@router.get("/audit/counts")
def audit_counts(principal: AdminDep, runtime: RuntimeDep) -> dict[str, dict[str, int]]:
    """Counts over every tenant: the admin token's alone."""
    require_operator(principal)
    return runtime.store.audit_counts()


def _decide(runtime: Runtime, job: Job, reviewer: str, approve: bool) -> Any:
    """Record the decision. A job held for its images has them released from quarantine
    first, and the copies dropped again if the decision cannot be recorded."""
    job_id = job.id
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
        released = runtime.quarantine.release(job, BlobWriter(runtime.storage, runtime.engine))
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
