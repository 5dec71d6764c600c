"""Where a job stands in the queue, and how long it will likely wait."""

from __future__ import annotations

import math
import os
import socket
from datetime import datetime, timedelta

from sqlalchemy import Connection, and_, func, insert, or_, select, update

from imagegate.jobs.models import Job
from imagegate.jobs.states import Status
from imagegate.jobs.tables import jobs, workers

RECENT_SAMPLE = 20  # finished jobs in the rolling mean of generation times


def ahead_of(conn: Connection, job: Job) -> int:
    """Queued jobs that run before this one: higher priority, or same priority and older."""
    p, created = job.spec.priority, job.created_at
    before = or_(
        jobs.c.priority > p,
        and_(
            jobs.c.priority == p,
            or_(
                jobs.c.created_at < created, and_(jobs.c.created_at == created, jobs.c.id < job.id)
            ),
        ),
    )
    query = select(func.count()).where(
        jobs.c.status == Status.QUEUED.value,
        jobs.c.follows.is_(None),  # a follower takes no worker's time
        before,
    )
    return int(conn.execute(query).scalar_one())


def mean_generation_s(conn: Connection) -> float | None:
    recent = (
        select(jobs.c.generation_time_ms)
        .where(jobs.c.status == Status.COMPLETED.value)
        .order_by(jobs.c.finished_at.desc())
        .limit(RECENT_SAMPLE)
        .subquery()
    )
    mean_ms = conn.execute(select(func.avg(recent.c.generation_time_ms))).scalar()
    return None if mean_ms is None else float(mean_ms) / 1000


def active_workers(conn: Connection, now: datetime, stale_after_s: float) -> int:
    since = now - timedelta(seconds=stale_after_s)
    query = select(func.coalesce(func.sum(workers.c.concurrency), 0)).where(
        workers.c.last_seen >= since
    )
    return int(conn.execute(query).scalar_one())


def eta_s(position: int, mean_s: float | None, worker_count: int) -> float | None:
    """Seconds until the job is likely done: the rounds of work ahead of it, plus its own."""
    if mean_s is None or worker_count <= 0:
        return None
    return round(mean_s * (math.floor(position / worker_count) + 1), 1)


def worker_identity() -> tuple[str, str, int]:
    host, pid = socket.gethostname(), os.getpid()
    return f"{host}:{pid}", host, pid


def heartbeat(conn: Connection, concurrency: int, now: datetime) -> None:
    worker_id, host, pid = worker_identity()
    seen = conn.execute(
        update(workers)
        .where(workers.c.id == worker_id)
        .values(last_seen=now, concurrency=concurrency)
    ).rowcount
    if not seen:
        conn.execute(
            insert(workers).values(
                id=worker_id,
                host=host,
                pid=pid,
                concurrency=concurrency,
                started_at=now,
                last_seen=now,
            )
        )


def retire(conn: Connection) -> None:
    worker_id, _, _ = worker_identity()
    conn.execute(workers.delete().where(workers.c.id == worker_id))
