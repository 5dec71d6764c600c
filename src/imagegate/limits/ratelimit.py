"""Rate limits and quotas, counted by the ``limits`` library.

In memory for the embedded mode; in Redis (``IMAGEGATE_REDIS_URL``) once configured, so
that a limit holds across every API replica and nothing is counted in process memory.
Per-minute limits use a moving window; daily quotas a fixed one. Each refusal and each
admitted submission carries the IETF ``RateLimit-Policy`` and ``RateLimit`` fields
(draft-ietf-httpapi-ratelimit-headers, structured-field syntax).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from limits import RateLimitItem, RateLimitItemPerDay, RateLimitItemPerMinute
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter

from imagegate import metrics
from imagegate.errors import QuotaExceeded, RateLimited, ServiceUnavailable

DAY_S = 86_400


@dataclass(frozen=True, slots=True)
class Check:
    """One limit to count against: ``policy`` names it in headers and refusals
    (``key.requests_per_minute``), ``identity`` is who is counted (``key:key_…``)."""

    policy: str
    identity: str
    quota: int
    window_s: int
    cost: int = 1
    unit: str = "requests"

    def item(self) -> RateLimitItem:
        # The unit is in the storage key: a subject's requests and its images, with the
        # same quota and window, would otherwise share one counter.
        namespace = f"imagegate:{self.unit}"
        if self.window_s == DAY_S:
            return RateLimitItemPerDay(self.quota, namespace=namespace)
        return RateLimitItemPerMinute(self.quota, namespace=namespace)


@dataclass(frozen=True, slots=True)
class Standing:
    check: Check
    remaining: int
    reset_s: int


class RateLimiter:
    def __init__(self, redis_url: str | None = None) -> None:
        self.shared = redis_url is not None
        storage = storage_from_string(redis_url or "memory://")
        self._moving = MovingWindowRateLimiter(storage)
        self._fixed = FixedWindowRateLimiter(storage)

    def admit(self, checks: Sequence[Check], report: bool = True) -> list[Standing]:
        """Count every check, or raise the refusal of the first one over its quota.
        Returns where each stands (with ``report``; without, an admitted request costs
        one storage call per check, not two, and nothing is returned)."""
        if not checks:  # the embedded default counts nothing
            return []
        with _storage_errors():
            standings = [self._hit(check, report) for check in checks]
        return standings if report else []

    def standings(self, checks: Sequence[Check]) -> list[Standing]:
        """Where each check stands, counting nothing."""
        with _storage_errors():
            return [self._standing(check) for check in checks]

    def _standing(self, check: Check) -> Standing:
        limiter = self._fixed if check.window_s == DAY_S else self._moving
        stats = limiter.get_window_stats(check.item(), check.identity)
        return Standing(check, max(0, stats.remaining), _seconds_until(stats.reset_time))

    def _hit(self, check: Check, report: bool) -> Standing:
        limiter = self._fixed if check.window_s == DAY_S else self._moving
        item, identity = check.item(), check.identity
        allowed = check.cost <= check.quota and limiter.hit(item, identity, cost=check.cost)
        if allowed and not report:
            return Standing(check, 0, 0)
        standing = self._standing(check)
        if not allowed:
            metrics.RATE_LIMIT_REFUSALS.labels(check.policy).inc()
            raise refusal(standing)
        return standing


@contextmanager
def _storage_errors() -> Iterator[None]:
    try:
        yield
    except RateLimited:
        raise
    except Exception as exc:  # the Redis server is away: refuse for now, and say why
        raise ServiceUnavailable(f"The rate-limit store is unavailable: {exc}") from exc


def refusal(standing: Standing) -> RateLimited:
    check = standing.check
    kind = QuotaExceeded if check.window_s == DAY_S else RateLimited
    what = "quota" if kind is QuotaExceeded else "rate limit"
    error = kind(
        f"The {what} {check.policy} ({check.quota} {check.unit} per "
        f"{_window_name(check.window_s)}) is reached; retry in {standing.reset_s} s.",
        retry_after_s=standing.reset_s,
        policy=check.policy,
        limit=check.quota,
        window_s=check.window_s,
    )
    error.headers.update(header_fields([standing]))
    return error


def header_fields(standings: Sequence[Standing]) -> dict[str, str]:
    """``RateLimit-Policy: "key.requests_per_minute";q=60;w=60`` and ``RateLimit:
    "key.requests_per_minute";r=59;t=60``, one list member per policy."""
    policies = ", ".join(
        f'"{s.check.policy}";q={s.check.quota};w={s.check.window_s}' for s in standings
    )
    current = ", ".join(f'"{s.check.policy}";r={s.remaining};t={s.reset_s}' for s in standings)
    return {"RateLimit-Policy": policies, "RateLimit": current}


def _seconds_until(reset_time: float) -> int:
    return max(1, math.ceil(reset_time - time.time()))


def _window_name(window_s: int) -> str:
    return "day" if window_s == DAY_S else "minute"
