"""What waits in the queue, per model: read at each scrape of ``/metrics``.

One grouped query over the queued jobs only. On PostgreSQL it is a range scan of the
queue index (``ix_jobs_queue`` leads with the status), so it costs what the queue holds,
not what the table has ever held.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, Select, func, select

from imagegate.jobs.rows import utc
from imagegate.jobs.states import Status
from imagegate.jobs.tables import jobs


@dataclass(frozen=True, slots=True)
class QueueStat:
    model: str
    depth: int
    oldest_age_s: float


def waiting_jobs_query() -> Select[Any]:
    """Queued jobs a worker could claim, by model. A follower (single-flight) takes its
    leader's result and no worker's time, so it is not counted."""
    return (
        select(jobs.c.model, func.count(), func.min(jobs.c.created_at))
        .where(jobs.c.status == Status.QUEUED.value, jobs.c.follows.is_(None))
        .group_by(jobs.c.model)
    )


def queue_stats(engine: Engine, default_model: str, now: datetime | None = None) -> list[QueueStat]:
    """Depth and oldest age by model. A job records its model when it runs, so a job not
    yet run counts for ``default_model``: the model this deployment serves. That model
    is always reported, at depth 0 when nothing waits, so its series never goes missing."""
    now = now or datetime.now(UTC)
    depth: dict[str, int] = {default_model: 0}
    oldest: dict[str, datetime] = {}
    with engine.connect() as conn:
        rows = conn.execute(waiting_jobs_query()).all()
    for model, count, created in rows:
        name = model or default_model
        depth[name] = depth.get(name, 0) + count
        first = utc(created)
        if first is not None and (name not in oldest or first < oldest[name]):
            oldest[name] = first
    return [
        QueueStat(name, count, max(0.0, (now - oldest[name]).total_seconds()) if count else 0.0)
        for name, count in sorted(depth.items())
    ]
