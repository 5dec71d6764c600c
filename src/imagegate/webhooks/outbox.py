"""The webhook outbox: SQL for messages waiting to be delivered, and their attempts.

A message is added in the same transaction that ends its job (so it is never lost nor
sent for a change that rolled back), claimed by a sender under a lease like a job, and
retried on a schedule until it is delivered or the schedule runs out.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, insert, literal, select, update

from imagegate.jobs.rows import utc
from imagegate.jobs.tables import jobs, webhook_attempts, webhook_deliveries

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"


@dataclass(frozen=True, slots=True)
class Delivery:
    id: str
    job_id: str | None  # None: a message of no job (a budget alert), its payload set
    event_type: str
    url: str
    payload: dict[str, Any] | None
    attempts: int
    lease_token: str


def enqueue(conn: Connection, job_id: str, event_type: str, now: datetime) -> None:
    """Queue a message for the job's webhook, if it has one (one INSERT … SELECT)."""
    message = select(
        literal(f"msg_{uuid.uuid4().hex}"),
        jobs.c.id,
        literal(event_type),
        jobs.c.webhook_url,
        literal(PENDING),
        literal(0),
        literal(now, webhook_deliveries.c.next_attempt_at.type),
        literal(now, webhook_deliveries.c.created_at.type),
    ).where(jobs.c.id == job_id, jobs.c.webhook_url.is_not(None))
    columns = [
        "id",
        "job_id",
        "event_type",
        "url",
        "status",
        "attempts",
        "next_attempt_at",
        "created_at",
    ]
    conn.execute(insert(webhook_deliveries).from_select(columns, message))


def enqueue_message(
    conn: Connection,
    url: str,
    event_type: str,
    payload: dict[str, Any],
    tenant: str,
    now: datetime,
) -> None:
    """Queue a message that belongs to no job (a budget alert), its payload fixed now."""
    conn.execute(
        insert(webhook_deliveries).values(
            id=f"msg_{uuid.uuid4().hex}",
            job_id=None,
            tenant=tenant,
            event_type=event_type,
            url=url,
            payload=payload,
            status=PENDING,
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        )
    )


def due(conn: Connection, now: datetime, limit: int) -> list[tuple[str, str]]:
    """The oldest due messages, as (id, url): a sender picks among them, then claims."""
    rows = conn.execute(
        select(webhook_deliveries.c.id, webhook_deliveries.c.url)
        .where(webhook_deliveries.c.status == PENDING, webhook_deliveries.c.next_attempt_at <= now)
        .order_by(webhook_deliveries.c.next_attempt_at)
        .limit(limit)
    )
    return [(row.id, row.url) for row in rows]


def claim(conn: Connection, ids: list[str], now: datetime, lease_s: float) -> list[Delivery]:
    """Lease those of ``ids`` that are still due: another sender may have won some."""
    if not ids:
        return []
    token = str(uuid.uuid4())
    still_due = (
        select(webhook_deliveries.c.id)
        .where(
            webhook_deliveries.c.id.in_(ids),
            webhook_deliveries.c.status == PENDING,
            webhook_deliveries.c.next_attempt_at <= now,
        )
        .with_for_update(skip_locked=True)
        .cte("still_due")
        .prefix_with("MATERIALIZED", dialect="postgresql")
    )
    rows = conn.execute(
        update(webhook_deliveries)
        .where(webhook_deliveries.c.id == still_due.c.id)
        .values(
            lease_token=token,
            # While leased, the message is not due: a dead sender's message comes back later.
            next_attempt_at=now + timedelta(seconds=lease_s),
        )
        .returning(*webhook_deliveries.c)
    ).mappings()
    return [
        Delivery(
            r["id"], r["job_id"], r["event_type"], r["url"], r["payload"], r["attempts"], token
        )
        for r in rows
    ]


def record_attempt(
    conn: Connection,
    delivery: Delivery,
    payload: dict[str, Any],
    outcome: Attempt,
    next_attempt_at: datetime | None,
) -> None:
    """Log the attempt; the message is delivered, failed for good, or due again later."""
    number = delivery.attempts + 1
    held = (
        webhook_deliveries.c.id == delivery.id,
        webhook_deliveries.c.lease_token == delivery.lease_token,
    )
    if not conn.execute(select(webhook_deliveries.c.id).where(*held)).first():
        return  # our lease ran out and another sender owns the message now
    conn.execute(
        insert(webhook_attempts).values(
            delivery_id=delivery.id,
            attempt=number,
            at=outcome.at,
            status_code=outcome.status_code,
            error=outcome.error,
            duration_ms=outcome.duration_ms,
        )
    )
    if outcome.ok:
        status, finished = DELIVERED, outcome.at
    elif next_attempt_at is None:
        status, finished = FAILED, outcome.at
    else:
        status, finished = PENDING, None
    conn.execute(
        update(webhook_deliveries)
        .where(
            webhook_deliveries.c.id == delivery.id,
            webhook_deliveries.c.lease_token == delivery.lease_token,
        )
        .values(
            attempts=number,
            payload=payload,
            status=status,
            finished_at=finished,
            next_attempt_at=next_attempt_at or outcome.at,
            lease_token=None,
        )
    )


@dataclass(frozen=True, slots=True)
class Attempt:
    at: datetime
    duration_ms: int
    status_code: int | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def deliveries_of(
    conn: Connection, job_id: str | None, tenant: str | None = None
) -> list[dict[str, Any]]:
    """A job's messages (or, with ``job_id`` None, a tenant's budget alerts), each with
    its attempts, oldest first."""
    whose = (
        webhook_deliveries.c.job_id == job_id
        if job_id is not None
        else (webhook_deliveries.c.job_id.is_(None)) & (webhook_deliveries.c.tenant == tenant)
    )
    messages = conn.execute(
        select(webhook_deliveries).where(whose).order_by(webhook_deliveries.c.created_at)
    ).mappings()
    result = []
    for message in messages:
        attempts = conn.execute(
            select(webhook_attempts)
            .where(webhook_attempts.c.delivery_id == message["id"])
            .order_by(webhook_attempts.c.attempt)
        ).mappings()
        result.append(_describe(message, [dict(a) for a in attempts]))
    return result


def _describe(message: Any, attempts: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": message["id"],
        "event_type": message["event_type"],
        "url": message["url"],
        "status": message["status"],
        "attempts": [
            {
                "attempt": a["attempt"],
                "at": utc(a["at"]),
                "status_code": a["status_code"],
                "error": a["error"],
                "duration_ms": a["duration_ms"],
            }
            for a in attempts
        ],
        "next_attempt_at": utc(message["next_attempt_at"])
        if message["status"] == PENDING
        else None,
        "created_at": utc(message["created_at"]),
        "finished_at": utc(message["finished_at"]),
    }
