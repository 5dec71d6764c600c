"""Which limits a request counts against: its key's, its tenant's, and its end user's.

A key's ``limits`` apply to that key alone; a tenant's (or, where the tenant sets none,
the settings' defaults) to all of its keys together; ``per_user`` (the key's, else the
tenant's) to each end user apart. With auth off there are no keys or tenants to tell
callers apart, so the settings' defaults apply to each client address instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from imagegate.limits.policy import Limits
from imagegate.limits.ratelimit import DAY_S, Check
from imagegate.tenancy.principal import Principal

NONE = Limits()


@dataclass(frozen=True, slots=True)
class Subject:
    """One level that is limited: who is counted, and its limits."""

    level: str  # key, tenant, user, ip
    identity: str
    limits: Limits


def subjects(
    principal: Principal, tenant_limits: Limits, user: str | None, client_ip: str | None
) -> list[Subject]:
    unlimited = tenant_limits is NONE or tenant_limits == NONE  # `is`: the gatekeeper's
    if principal.kind == "local" and unlimited:
        return []  # the embedded default: nothing to count
    if principal.kind == "local":
        per_ip = tenant_limits.model_copy(update={"concurrent_jobs": None})
        local = Limits(concurrent_jobs=tenant_limits.concurrent_jobs)
        return [
            Subject("ip", f"ip:{client_ip or 'unknown'}", per_ip),
            Subject("tenant", f"tenant:{principal.tenant}", local),
        ]
    key_limits = Limits.model_validate(dict(principal.limits))
    found = [Subject("tenant", f"tenant:{principal.tenant}", tenant_limits)]
    if principal.key_id is not None:
        found.insert(0, Subject("key", f"key:{principal.key_id}", key_limits))
    per_user = key_limits.per_user or tenant_limits.per_user
    if user is not None and per_user is not None:
        found.append(Subject("user", f"user:{principal.tenant}:{user}", per_user))
    return found


def request_checks(levels: list[Subject]) -> list[Check]:
    return [
        Check(f"{s.level}.requests_per_minute", s.identity, quota, 60)
        for s in levels
        if (quota := s.limits.requests_per_minute) is not None
    ]


def image_checks(levels: list[Subject], images: int) -> list[Check]:
    return list(_image_checks(levels, images))


def _image_checks(levels: list[Subject], images: int) -> Iterator[Check]:
    for s in levels:
        if s.limits.images_per_minute is not None:
            name = f"{s.level}.images_per_minute"
            yield Check(name, s.identity, s.limits.images_per_minute, 60, images, "images")
        if s.limits.images_per_day is not None:
            name = f"{s.level}.images_per_day"
            yield Check(name, s.identity, s.limits.images_per_day, DAY_S, images, "images")


def concurrency_caps(levels: list[Subject]) -> list[tuple[str, str, int]]:
    """``(policy, identity, cap)`` of each concurrent-jobs cap, counted in the database."""
    return [
        (f"{s.level}.concurrent_jobs", s.identity, cap)
        for s in levels
        if (cap := s.limits.concurrent_jobs) is not None
    ]
