"""When to try a request again, and how long to wait first; and deadlines.

A request is tried again after a network error, a 429 or a 503, up to ``max_retries``
times, with exponential backoff and jitter. A ``Retry-After`` from the server is honoured
(never retried sooner), unless it asks for longer than ``max_retry_after_s``: then the
error is raised at once rather than sleeping through it. Retrying a POST is safe because
every POST carries an Idempotency-Key (see :mod:`imagegate.sdk.base`).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

RETRY_STATUSES = frozenset({429, 503})
# Network trouble, not a mistake of ours: a refused, reset or dropped connection, a timeout.
RETRY_ERRORS = (httpx.NetworkError, httpx.TimeoutException, httpx.RemoteProtocolError)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_retries: int = 3
    backoff_s: float = 0.5  # the first wait, doubled for each retry after it
    max_backoff_s: float = 8.0
    max_retry_after_s: float = 60.0  # a longer Retry-After is raised, not slept through

    def backoff(self, attempt: int) -> float:
        """Exponential with "equal jitter": half the step for sure, half at random."""
        step = min(self.max_backoff_s, self.backoff_s * 2.0**attempt)
        return step / 2 + random.uniform(0, step / 2)

    def after_response(self, attempt: int, response: httpx.Response) -> float | None:
        """Seconds to wait before trying again, or None to give this answer back."""
        if response.status_code not in RETRY_STATUSES or attempt >= self.max_retries:
            return None
        asked = retry_after_s(response.headers.get("retry-after"))
        if asked is None:
            return self.backoff(attempt)
        if asked > self.max_retry_after_s:
            return None
        return asked + random.uniform(0, min(1.0, asked / 10))  # spread out, never early

    def after_error(self, attempt: int, error: Exception) -> float | None:
        if not isinstance(error, RETRY_ERRORS) or attempt >= self.max_retries:
            return None
        return self.backoff(attempt)


def retry_after_s(value: str | None) -> float | None:
    """``Retry-After`` in seconds: delta-seconds, or an HTTP date."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


@dataclass(frozen=True, slots=True)
class Deadline:
    """A point on the monotonic clock (or none): what is left, and whether a wait fits."""

    at: float | None = None

    @classmethod
    def after(cls, seconds: float | None) -> Deadline:
        return cls(None if seconds is None else time.monotonic() + seconds)

    def remaining(self) -> float | None:
        return None if self.at is None else max(0.0, self.at - time.monotonic())

    @property
    def expired(self) -> bool:
        return self.at is not None and time.monotonic() >= self.at

    def allows(self, wait_s: float) -> bool:
        return self.at is None or time.monotonic() + wait_s < self.at

    def cap(self, timeout: httpx.Timeout) -> httpx.Timeout:
        """The timeout, shortened so that no part of a request outlives the deadline."""
        left = self.remaining()
        if left is None:
            return timeout
        parts = (timeout.connect, timeout.read, timeout.write, timeout.pool)
        connect, read, write, pool = (left if p is None else min(p, left) for p in parts)
        return httpx.Timeout(connect=connect, read=read, write=write, pool=pool)
