"""Admission: what a request must pass before its job is recorded.

Every request counts against its requests-per-minute limits; a submission also against
its image limits and quotas, and then, in the transaction that records the job, its
concurrent-jobs caps, its token's job allowance, the queue depth, and its budgets (where
its estimated cost is reserved).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from imagegate.errors import RateLimited, Unauthorized
from imagegate.jobs.models import JobSpec
from imagegate.limits import admission
from imagegate.limits.caps import Caps
from imagegate.limits.policy import Limits, default_limits, limits_of
from imagegate.limits.ratelimit import Check, RateLimiter, header_fields
from imagegate.settings import Settings
from imagegate.tenancy.keys import KeyStore
from imagegate.tenancy.principal import Principal
from imagegate.usage import budgets
from imagegate.usage.budgets import Scoped, budget_of
from imagegate.usage.ledger import Pricing


@dataclass(frozen=True, slots=True)
class Admission:
    """A submission's admission, to finish in the job's own transaction."""

    identity: dict[str, Any]  # the job's columns: key, end user, token, estimated cost
    caps: Caps
    budgets: tuple[Scoped, ...]
    estimate_micros: int
    headers: dict[str, str]

    def __call__(self, conn: Connection, job_id: str, now: datetime) -> None:
        self.caps.enforce(conn)
        budgets.reserve(conn, job_id, self.budgets, self.estimate_micros, now)


class Gatekeeper:
    def __init__(
        self, settings: Settings, keys: KeyStore, limiter: RateLimiter, pricing: Pricing
    ) -> None:
        self.settings, self.keys, self.limiter, self.pricing = settings, keys, limiter, pricing
        self._defaults = default_limits(settings)
        self._merged: dict[str, tuple[Any, Limits]] = {}  # tenant -> (its stored limits, merged)
        self._blocked: dict[str, float] = {}  # address -> refused until (monotonic)

    def admit_request(self, principal: Principal, client_ip: str | None) -> None:
        """Count the request (a refusal carries the rate-limit fields; an admitted request
        needs none, so they are not read)."""
        levels = self._levels(principal, principal.user, client_ip)
        self.limiter.admit(admission.request_checks(levels), report=False)

    def admit_submission(
        self, principal: Principal, spec: JobSpec, user: str | None, client_ip: str | None
    ) -> Admission:
        levels = self._levels(principal, user, client_ip)
        requests = admission.request_checks(levels)
        # A key's caller names the end user in the body, so the user's request count is
        # taken here; the others (and a token's user) were counted as the request came in.
        by_body = [c for c in requests if c.policy.startswith("user.") and not principal.user]
        counted = self.limiter.admit([*by_body, *admission.image_checks(levels, spec.n)])
        seen = self.limiter.standings([c for c in requests if c not in by_body])
        headers = header_fields(seen + counted) if seen or counted else {}
        estimate = self.pricing.estimate(spec)
        caps = Caps(
            tenant=principal.tenant,
            concurrent=admission.concurrency_caps(levels),
            token_id=principal.token_id,
            token_max_jobs=principal.max_jobs,
            max_queue_depth=self.settings.max_queue_depth,
            retry_after_s=self.settings.poll_hint_s,
        )
        identity = {
            "key_id": principal.key_id,
            "end_user": user,
            "token_id": principal.token_id,
            "cost_currency": self.pricing.currency,
            "cost_estimate_micros": estimate,
        }
        budgets = self._budgets(principal)
        identity["budgeted"] = bool(budgets)
        return Admission(identity, caps, budgets, estimate, headers)

    def authenticate(self, attempt: Callable[[], Principal], client_ip: str | None) -> Principal:
        """Run ``attempt`` (a credential check), throttling an address that keeps failing:
        past ``IMAGEGATE_AUTH_FAILURES_PER_MINUTE`` failures it gets 429 for every
        credential, right or wrong, until its window has passed."""
        address = client_ip or "unknown"
        wait = self._blocked.get(address, 0.0) - time.monotonic()
        if wait > 0:
            raise RateLimited(
                f"Too many failed credentials from this address; retry in {math.ceil(wait)} s.",
                retry_after_s=math.ceil(wait),
                policy="ip.failed_auth",
                limit=self.settings.auth_failures_per_minute,
            )
        try:
            return attempt()
        except Unauthorized:
            self._count_failure(address)
            raise

    def _count_failure(self, address: str) -> None:
        quota = self.settings.auth_failures_per_minute
        check = Check("ip.failed_auth", f"authfail:{address}", quota, 60, unit="failures")
        try:
            self.limiter.admit([check], report=False)
        except RateLimited as refused:
            self._blocked[address] = time.monotonic() + (refused.retry_after_s or 60)
            raise

    def tenant_limits(self, tenant: str) -> Limits:
        """The tenant's own limits, each unset one taken from the settings."""
        record = self.keys.tenant(tenant)
        stored = record.limits if record else None
        merged = self._merged.get(tenant)
        if merged is None or merged[0] is not stored:  # parsed once per tenant record
            own = limits_of(stored).model_dump(exclude_none=True)
            limits = Limits.model_validate(self._defaults.model_dump(exclude_none=True) | own)
            limits = admission.NONE if limits == admission.NONE else limits  # told by `is`
            merged = self._merged[tenant] = (stored, limits)
        return merged[1]

    def _levels(
        self, principal: Principal, user: str | None, client_ip: str | None
    ) -> list[admission.Subject]:
        limits = self.tenant_limits(principal.tenant)
        return admission.subjects(principal, limits, user, client_ip)

    def _budgets(self, principal: Principal) -> tuple[Scoped, ...]:
        found = []
        record = self.keys.tenant(principal.tenant)
        if record is not None and (budget := budget_of(record.budget)) is not None:
            found.append(Scoped(f"tenant:{principal.tenant}", budget, principal.tenant))
        if principal.key_id is not None and (budget := budget_of(principal.budget)) is not None:
            key = principal.key_id
            found.append(Scoped(f"key:{key}", budget, principal.tenant, key))
        return tuple(found)
