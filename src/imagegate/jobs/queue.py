"""Where a job stands in the queue, and how long it will likely wait."""

from __future__ import annotations

import math
import os
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta
from time import monotonic

from sqlalchemy import Connection, and_, bindparam, func, insert, or_, select, update

from imagegate.jobs.models import Job
from imagegate.jobs.states import Status
from imagegate.jobs.tables import jobs, workers

RECENT_SAMPLE = 20  # finished jobs in the rolling mean of generation times


# The reads behind a queued job's place and ETA, built once: a poll binds its values and
# SQLAlchemy reuses the compiled statement, rather than building and hashing a new one.
_AHEAD_OF = select(func.count()).where(
    jobs.c.status == Status.QUEUED.value,
    jobs.c.follows.is_(None),  # a follower takes no worker's time
    or_(  # higher priority, or the same and older (the claim's order)
        jobs.c.priority > bindparam("priority"),
        and_(
            jobs.c.priority == bindparam("priority"),
            or_(
                jobs.c.created_at < bindparam("created"),
                and_(jobs.c.created_at == bindparam("created"), jobs.c.id < bindparam("id")),
            ),
        ),
    ),
)
_RECENT = (
    select(jobs.c.generation_time_ms)
    .where(jobs.c.status == Status.COMPLETED.value)
    .order_by(jobs.c.finished_at.desc())
    .limit(RECENT_SAMPLE)
    .subquery()
)
_MEAN_GENERATION_MS = select(func.avg(_RECENT.c.generation_time_ms))
_ACTIVE_CONCURRENCY = select(func.coalesce(func.sum(workers.c.concurrency), 0)).where(
    workers.c.last_seen >= bindparam("since")
)


def ahead_of(conn: Connection, job: Job) -> int:
    """Queued jobs that run before this one: higher priority, or same priority and older."""
    values = {"priority": job.spec.priority, "created": job.created_at, "id": job.id}
    return int(conn.execute(_AHEAD_OF, values).scalar_one())


def mean_generation_s(conn: Connection) -> float | None:
    mean_ms = conn.execute(_MEAN_GENERATION_MS).scalar()
    return None if mean_ms is None else float(mean_ms) / 1000


def active_workers(conn: Connection, now: datetime, stale_after_s: float) -> int:
    since = now - timedelta(seconds=stale_after_s)
    return int(conn.execute(_ACTIVE_CONCURRENCY, {"since": since}).scalar_one())


@dataclass(frozen=True, slots=True)
class Pace:
    """How fast the queue moves: the recent mean generation time and the workers' slots.
    It changes slowly, so one process reads it at most once per ``PACE_TTL_S`` for all
    its polls; an ETA is an estimate made from it."""

    mean_s: float | None
    workers: int
    read_at: float  # time.monotonic()


PACE_TTL_S = 1.0


def pace(conn: Connection, now: datetime, stale_after_s: float) -> Pace:
    return Pace(mean_generation_s(conn), active_workers(conn, now, stale_after_s), monotonic())


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
