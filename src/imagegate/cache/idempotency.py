"""``Idempotency-Key`` (draft-ietf-httpapi-idempotency-key-header) on the routes that
create jobs: a retried request gets the job its first attempt made, never a second one.

Keys belong to a tenant and last 24 hours. The first request's fingerprint (the route and
its canonical body) is kept with the key: the same key with another body is refused with
422 ``idempotency_key_reused``. A retry that arrives while the first request is still
being recorded waits for it (the same lock as the store's write) and gets its job.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, delete, insert, select

from imagegate.errors import InvalidField
from imagegate.jobs.database import lock_for_transaction
from imagegate.jobs.rows import utc
from imagegate.jobs.tables import idempotency_keys

TTL = timedelta(hours=24)
MAX_KEY_CHARS = 255


@dataclass(frozen=True, slots=True)
class IdempotencyRequest:
    key: str
    fingerprint: str


class Replay(Exception):  # not an error: how the answer leaves the transaction
    """This request's key was used before, with the same body: its job is the answer. Raised
    inside the submission's transaction, so nothing of the retried request is kept."""

    def __init__(self, job_id: str) -> None:
        super().__init__(job_id)
        self.job_id = job_id


def request_of(key: str | None, route: str, body: Any) -> IdempotencyRequest | None:
    """The key and the request's fingerprint; None without a key."""
    if key is None:
        return None
    if not key or len(key) > MAX_KEY_CHARS or not key.isprintable():
        raise InvalidField(
            "Idempotency-Key",
            "invalid_idempotency_key",
            f"The Idempotency-Key must be 1 to {MAX_KEY_CHARS} printable characters.",
        )
    canonical = json.dumps([route, body], sort_keys=True, separators=(",", ":"), default=str)
    return IdempotencyRequest(key, hashlib.sha256(canonical.encode()).hexdigest())


def lock(conn: Connection, tenant: str, key: str) -> None:
    """Serialise the requests of one key, so a retry waits for the first to be recorded."""
    lock_for_transaction(conn, f"idempotency:{tenant}:{key}")


def check(conn: Connection, tenant: str, asked: IdempotencyRequest, now: datetime) -> None:
    """Raise :class:`Replay` when the key names an earlier job of the same request, and
    refuse a reuse with another request; a key past its 24 hours is forgotten."""
    row = (
        conn.execute(
            select(idempotency_keys).where(
                idempotency_keys.c.tenant == tenant, idempotency_keys.c.key == asked.key
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        return
    if (utc(row["expires_at"]) or now) <= now:
        conn.execute(
            delete(idempotency_keys).where(
                idempotency_keys.c.tenant == tenant, idempotency_keys.c.key == asked.key
            )
        )
        return
    if row["request_hash"] != asked.fingerprint:
        raise InvalidField(
            "Idempotency-Key",
            "idempotency_key_reused",
            "This Idempotency-Key was used with a different request in the last 24 hours.",
        )
    raise Replay(row["job_id"])


def record(
    conn: Connection, tenant: str, asked: IdempotencyRequest, job_id: str, now: datetime
) -> None:
    conn.execute(
        insert(idempotency_keys).values(
            tenant=tenant,
            key=asked.key,
            request_hash=asked.fingerprint,
            job_id=job_id,
            created_at=now,
            expires_at=now + TTL,
        )
    )
