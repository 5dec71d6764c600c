"""The claim's one statement: lock the next runnable jobs (fairly among tenants, then by
priority, then by age) and lease them, returning their rows.

Built once for each batch size and kept, its moment, lease and token bound at each claim
(only a batch's gathering, which adds its first job's shape, builds one each time):
building it (the fair-share search, the CTE) and its cache key was a third of a claim's
CPU on PostgreSQL, about 1.5 ms.

On PostgreSQL the claim is also its own transaction: :func:`announced_claim` adds each job's
``started`` event, its NOTIFY and the commit's ``synchronous_commit = off`` to the same
statement, which runs in autocommit. One round trip, where BEGIN, the setting, the
claim, the events and COMMIT took five; under load each round trip is also a wait for
the interpreter's lock, and a claim took 5.4 ms (median) of a worker's turn.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import Select, Update, bindparam, func, insert, literal, select, update

from imagegate.jobs import events, fairness
from imagegate.jobs.changes import compatible_with
from imagegate.jobs.events import EventType
from imagegate.jobs.fairness import FAIR_SHARE, SINCE
from imagegate.jobs.models import JobSpec
from imagegate.jobs.states import Status
from imagegate.jobs.tables import job_events, jobs
from imagegate.jobs.written import written

NOW, TOKEN, UNTIL = "claim_now", "claim_token", "claim_until"


def claim_statement(limit: int, like: JobSpec | None, fair: bool) -> Update:
    """SQLite's claim, run in the store's write transaction with its events beside it."""
    if like is None:
        return _kept(limit, False, fair)
    return _built(limit, like, False, fair)


def announced_claim(limit: int, like: JobSpec | None, fair: bool) -> Select[Any]:
    """PostgreSQL's claim as one autocommitted statement (the module's docstring)."""
    if like is None:
        return _announced(limit, fair)
    return _announcing(_built(limit, like, True, fair))


def claim_values(
    now: datetime, token: str, lease_s: float, window: timedelta | None
) -> dict[str, Any]:
    """The bound parameters of a claim made at ``now``."""
    values: dict[str, Any] = {NOW: now, TOKEN: token, UNTIL: now + timedelta(seconds=lease_s)}
    if window is not None:
        values[SINCE] = now - window
    return values


@cache
def _kept(limit: int, postgres: bool, fair: bool) -> Update:
    return _built(limit, None, postgres, fair)


def _built(limit: int, like: JobSpec | None, postgres: bool, fair: bool) -> Update:
    runnable: Select[Any] = (
        select(jobs.c.id)
        .where(
            jobs.c.status == Status.QUEUED.value,
            jobs.c.run_after <= bindparam(NOW, type_=jobs.c.run_after.type),
            jobs.c.follows.is_(None),  # a follower takes its leader's result
        )
        .order_by(jobs.c.priority.desc(), jobs.c.created_at, jobs.c.id)
        .limit(written(limit))  # not bound: jobs/written.py
        .with_for_update(skip_locked=True, of=jobs)
    )
    if like is not None:
        runnable = runnable.where(*compatible_with(like))
    if fair and postgres:
        runnable = fairness.by_tenant(runnable, limit)
    elif fair:
        runnable = (
            runnable.select_from(FAIR_SHARE.joined)
            .order_by(None)
            .order_by(FAIR_SHARE.order, jobs.c.priority.desc(), jobs.c.created_at, jobs.c.id)
        )
    # A materialised CTE, so PostgreSQL locks and limits once; as a plain IN (subquery)
    # the planner may re-run the LIMIT per row and claim more than asked.
    chosen = runnable.cte("chosen").prefix_with("MATERIALIZED", dialect="postgresql")
    return (
        update(jobs)
        .where(jobs.c.id == chosen.c.id)
        .values(
            status=Status.GENERATING.value,
            lease_token=bindparam(TOKEN),
            lease_expires_at=bindparam(UNTIL, type_=jobs.c.lease_expires_at.type),
            attempts=jobs.c.attempts + 1,
            started_at=bindparam(NOW, type_=jobs.c.started_at.type),
            progress_step=None,
            progress_total=None,
        )
        .returning(*jobs.c)
    )


@cache
def _announced(limit: int, fair: bool) -> Select[Any]:
    return _announcing(_kept(limit, True, fair))


def _announcing(claim: Update) -> Select[Any]:
    """The claimed rows, once each has its ``started`` event (``{"attempt": n}``, as the
    store's other events are written) and its notification, and the commit is set not to
    wait for the WAL flush: a claim lost in a database crash only runs its job again."""
    claimed = claim.cte("claimed")
    started = select(
        claimed.c.id,
        literal(EventType.STARTED.value),
        func.json_build_object("attempt", claimed.c.attempts),
        bindparam(NOW, type_=job_events.c.created_at.type),
    )
    appended = (
        insert(job_events)
        .from_select(["job_id", "type", "data", "created_at"], started)
        .returning(job_events.c.job_id)
        .cte("appended")
    )
    notified = select(func.count(func.pg_notify(events.CHANNEL, appended.c.job_id)))
    nondurable = select(func.set_config("synchronous_commit", "off", True))
    return select(claimed).where(
        notified.scalar_subquery() >= 0, nondurable.scalar_subquery().is_not(None)
    )
