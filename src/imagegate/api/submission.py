"""Submitting a job as a principal: one path for every route that creates jobs (``/v1/jobs``,
``/generate``, both WebSockets, the OpenAI-compatible route)."""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from imagegate import metrics
from imagegate.cache.idempotency import IdempotencyRequest, Replay
from imagegate.cache.keys import NOT_CACHEABLE, CacheRequest
from imagegate.errors import BudgetExceeded, Forbidden, QueueFull, RateLimited
from imagegate.intake import Caller, Submitted
from imagegate.jobs.models import JobSpec
from imagegate.runtime import Runtime
from imagegate.tenancy.principal import Principal

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Accepted:
    submitted: Submitted
    headers: dict[str, str]  # RateLimit-Policy and RateLimit, Cache-Status
    replayed: bool = False  # an Idempotency-Key's earlier job, not a new one


def end_user(principal: Principal, asked: str | None) -> str | None:
    """The job's end user: a browser token's own, or what a key's caller names."""
    if principal.user is None:
        return asked
    if asked is not None and asked != principal.user:
        raise Forbidden("This token creates jobs for its own user only.", field="user")
    return principal.user


def check_template(principal: Principal, template: str | None) -> None:
    allowed = principal.templates
    if allowed is not None and template not in allowed:
        raise Forbidden(
            f"This token may only create jobs from the templates {', '.join(allowed) or '(none)'}.",
            field="template",
        )


def submit(
    runtime: Runtime,
    principal: Principal,
    spec: JobSpec,
    client_ip: str | None,
    user: str | None = None,
    webhook_url: str | None = None,
    template: str | None = None,
    cache: CacheRequest = NOT_CACHEABLE,
    idempotent: IdempotencyRequest | None = None,
) -> Accepted:
    """Admit (limits, quotas, caps, budget) and record the job, or answer it from the
    cache, or return the job an Idempotency-Key's first request made. Blocking: call in a
    thread."""
    check_template(principal, template)
    admission = runtime.gate.admit_submission(principal, spec, user, client_ip)
    caller = Caller(principal.tenant, client_ip)
    try:
        submitted = runtime.intake.submit(spec, caller, webhook_url, admission, cache, idempotent)
    except (RateLimited, BudgetExceeded, QueueFull) as refused:  # caps and budgets
        policy = refused.extra.get("policy") or refused.code
        metrics.RATE_LIMIT_REFUSALS.labels(policy).inc()
        refused.headers.update(admission.headers)
        raise
    except Replay as replay:
        job = runtime.store.get(replay.job_id, principal.tenant)
        return Accepted(Submitted(job), admission.headers, replayed=True)
    status = submitted.job.cache or "bypass"
    metrics.CACHE_LOOKUPS.labels(status).inc()
    # With the request's id bound: the one line that ties a request to the job it made.
    log.info("job.submitted", job_id=submitted.job.id, tenant=principal.tenant, cache=status)
    return Accepted(submitted, admission.headers | {"Cache-Status": cache_status(status)})


def cache_status(status: str) -> str:
    """The RFC 9211 Cache-Status field for what the cache did with the request."""
    return {
        "hit": "ImageGate; hit",
        "collapsed": "ImageGate; fwd=miss; collapsed",
        "miss": "ImageGate; fwd=miss; stored",
    }.get(status, "ImageGate; fwd=bypass")
