"""Where a job stands in the queue, and how long it will likely wait."""

from __future__ import annotations

import math
import os
import socket
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from time import monotonic
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    FromClause,
    Select,
    bindparam,
    case,
    func,
    insert,
    literal_column,
    select,
    tuple_,
    update,
)
from sqlalchemy.sql.elements import ColumnElement

from imagegate.jobs.driver_read import DriverRead
from imagegate.jobs.models import Job, QueueInfo
from imagegate.jobs.rows import utc
from imagegate.jobs.states import Status
from imagegate.jobs.tables import jobs, workers
from imagegate.jobs.written import written

RECENT_SAMPLE = 20  # finished jobs in the rolling mean of generation times


EXACT_UP_TO = 100  # jobs ahead counted one by one; past that, the place is estimated
QUEUED: ColumnElement[str] = literal_column(f"'{Status.QUEUED.value}'")


def _ranges(
    queued: FromClause, priority: Any, created: Any, job_id: Any
) -> tuple[Select[Any], Select[Any]]:
    """The two ranges of the queue ahead of a job of ``priority`` that arrived at
    ``created`` as ``job_id``: the waiting jobs of a higher priority, and those of its own
    that are older. A follower takes no worker's time, so it is not waiting. Each is one
    range of ``ix_jobs_waiting`` (priority DESC, created_at, id, of the waiting jobs),
    walked no further than EXACT_UP_TO; one OR of the two is no range, and PostgreSQL
    walked all 100,000 queued jobs to find none ahead of the first."""
    # The status and the limits are written into the statement, not bound (jobs/written.py);
    # a generic plan can then also prove the partial index's condition (ix_jobs_waiting).
    waiting = (queued.c.status == QUEUED, queued.c.follows.is_(None))
    higher = select(queued.c.id).where(*waiting, queued.c.priority > priority)
    older = (
        select(queued.c.created_at)
        .where(
            *waiting,
            queued.c.priority == priority,
            tuple_(queued.c.created_at, queued.c.id) < tuple_(created, job_id),
        )
        .order_by(queued.c.created_at, queued.c.id)
    )
    return higher.limit(written(EXACT_UP_TO)), older.limit(written(EXACT_UP_TO))


# The reads behind a queued job's place and ETA, built once: a poll binds its values to a
# statement compiled once, rather than building and hashing a new one. In one statement
# (a poll's round trip): the higher ones, how many older ones there are, and when the
# first and the last of those arrived. Each count stays a subquery of its own, over its
# own range.
_HIGHER, _OLDER = (
    ranged.subquery()
    for ranged in _ranges(
        jobs,
        bindparam("priority"),
        bindparam("created", type_=jobs.c.created_at.type),
        bindparam("id", type_=jobs.c.id.type),
    )
)
_AHEAD = select(
    select(func.count()).select_from(_HIGHER).scalar_subquery(),
    func.count(),
    func.min(_OLDER.c.created_at),
    func.max(_OLDER.c.created_at),
).select_from(_OLDER)
_AHEAD_READ = DriverRead(_AHEAD)


def _placed() -> tuple[ColumnElement[Any], ...]:
    """The same four figures as columns of a statement that reads ``jobs`` (a queued job's
    own row, in ``lookup``): the ranges are correlated to that row, and are walked only
    while it is queued (NULL otherwise), so a poll of the job resource reads the job and
    its place in one round trip."""
    ahead = jobs.alias("ahead")
    ranges = _ranges(ahead, jobs.c.priority, jobs.c.created_at, jobs.c.id)
    higher, older = (ranged.correlate(jobs).subquery() for ranged in ranges)
    figures = {
        "higher": select(func.count()).select_from(higher),
        "older": select(func.count()).select_from(older),
        "first": ranges[1].limit(written(1)).correlate(jobs),  # the range's head: one entry
        "last": select(func.max(older.c.created_at)),
    }
    queued = jobs.c.status == QUEUED
    return tuple(
        case((queued, figure.scalar_subquery())).label(PLACE_PREFIX + name)
        for name, figure in figures.items()
    )


PLACE_PREFIX = "place_"
PLACE_COLUMNS = _placed()
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
    """Queued jobs that run before this one: higher priority, or the same and older.

    Exact up to ``EXACT_UP_TO`` of each. Further back, an estimate: the first
    ``EXACT_UP_TO`` of its priority arrived over some span of time, and jobs are taken to
    have kept arriving at that rate until this one did (and more than ``EXACT_UP_TO`` of a
    higher priority count as that many). As the jobs ahead are taken, the span's start
    moves up to this job's arrival and the estimate falls, as a rule;
    ``JobStore.queue_info`` keeps what a waiting client sees from ever rising."""
    return _place(job, conn.execute(_AHEAD, _ahead_values(job)).one())


def read_ahead_of(engine: Engine, job: Job) -> int:
    """``ahead_of`` for a poll: on the read engine, on the driver's cursor."""
    found = _AHEAD_READ.first(engine, _ahead_values(job))
    assert found is not None  # an aggregate: always one row
    return _place(job, found)


def place_in(job: Job, row: Mapping[str, Any]) -> int:
    """``ahead_of`` from the ``PLACE_COLUMNS`` of the job's own row."""
    return _place(job, [row[str(column.key)] for column in PLACE_COLUMNS])


def _ahead_values(job: Job) -> dict[str, Any]:
    return {"priority": job.spec.priority, "created": job.created_at, "id": job.id}


def _place(job: Job, counted: Sequence[Any]) -> int:
    higher, older, first, last = counted
    return int(higher) + _estimate(int(older), utc(first), utc(last), utc(job.created_at))


def _estimate(
    counted: int, first: datetime | None, last: datetime | None, arrived: datetime | None
) -> int:
    if counted < EXACT_UP_TO or first is None or last is None or arrived is None:
        return counted
    span_s = (last - first).total_seconds()
    if span_s <= 0:  # all arrived at once: nothing to say past the count
        return EXACT_UP_TO
    # The counted jobs arrived over counted - 1 intervals: so many more to this one.
    per_s = (counted - 1) / span_s
    return max(EXACT_UP_TO, round(per_s * (arrived - first).total_seconds()))


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


class Shown:
    """The place and ETA last shown for each waiting job, so that what its clients see
    never rises: a job that jumps the queue (a higher priority) or a slower recent mean
    does not send a waiting client backwards. Per process, and bounded: the least recent
    jobs are forgotten first."""

    LIMIT = 10_000

    def __init__(self) -> None:
        self._shown: OrderedDict[str, QueueInfo] = OrderedDict()
        self._lock = threading.Lock()

    def monotone(self, job_id: str, info: QueueInfo) -> QueueInfo:
        with self._lock:
            before = self._shown.pop(job_id, None)
            if before is not None:
                eta = info.eta_s
                if eta is not None and before.eta_s is not None:
                    eta = min(eta, before.eta_s)
                info = QueueInfo(min(info.position, before.position), eta)
            self._shown[job_id] = info
            if len(self._shown) > self.LIMIT:
                self._shown.popitem(last=False)
        return info


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
