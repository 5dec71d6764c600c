"""SQL for the audit log: every blocked, flagged or reviewed request."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select

from imagegate.jobs.rows import utc
from imagegate.jobs.tables import audit_log


@dataclass(frozen=True, slots=True)
class AuditEntry:
    owner: str
    prompt: str
    normalized_prompt: str
    stage: str  # input, output or review
    action: str  # warn, review, block, approve, reject
    categories: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()
    client_ip: str | None = None
    job_id: str | None = None
    at: datetime | None = field(default=None, compare=False)


AUDITED = "imagegate_audited"  # Connection.info key: entries this transaction recorded


def record(conn: Connection, entry: AuditEntry, now: datetime, job_id: str | None = None) -> None:
    conn.info.setdefault(AUDITED, []).append(entry)
    conn.execute(
        insert(audit_log).values(
            at=now,
            owner=entry.owner,
            client_ip=entry.client_ip,
            job_id=job_id or entry.job_id,
            prompt=entry.prompt,
            normalized_prompt=entry.normalized_prompt,
            stage=entry.stage,
            action=entry.action,
            categories=list(entry.categories),
            reasons=list(entry.reasons),
        )
    )


def entries(
    conn: Connection,
    category: str | None = None,
    stage: str | None = None,
    action: str | None = None,
    limit: int = 100,
    owner: str | None = None,
) -> list[dict[str, Any]]:
    """Newest first. The category filter runs here, as JSON arrays differ per database."""
    query = select(audit_log).order_by(audit_log.c.id.desc())
    if owner is not None:
        query = query.where(audit_log.c.owner == owner)
    if stage:
        query = query.where(audit_log.c.stage == stage)
    if action:
        query = query.where(audit_log.c.action == action)
    found = []
    for row in conn.execute(query.limit(limit if category is None else 10 * limit)).mappings():
        if category is None or category in row["categories"]:
            found.append(dict(row) | {"at": utc(row["at"])})
        if len(found) == limit:
            break
    return found


def counts(conn: Connection) -> dict[str, dict[str, int]]:
    """Entries per category, and per action: the numbers a dashboard or alert needs."""
    by_category: Counter[str] = Counter()
    by_action: Counter[str] = Counter()
    for categories, action in conn.execute(select(audit_log.c.categories, audit_log.c.action)):
        by_action[action] += 1
        by_category.update(categories or ["uncategorised"])
    return {"by_category": dict(by_category), "by_action": dict(by_action)}
