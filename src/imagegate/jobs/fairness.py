"""Fair share among tenants, inside the claim's single statement; and tenant scoping.

The claim orders runnable jobs first by how much their tenant has been served lately,
relative to its weight: the jobs it has running plus those started within the fair-share
window, divided by ``tenants.weight``. A tenant with a burst of 500 jobs has been served
a lot, so another tenant's first jobs go ahead of the burst's rest; then the two share
the workers in proportion to their weights. Priority and age order jobs within a tenant
(and break ties). The window (``IMAGEGATE_FAIR_SHARE_WINDOW_S``) is the memory: with 0,
only running jobs count.

Ordering every queued job by its tenant's share is a sort of the whole queue (130 ms
with 100,000 queued on PostgreSQL). There the claim takes each waiting tenant's next jobs
from an index instead (:func:`waiting_tenants`, then a LATERAL search per tenant) and
orders only those; SQLite, which has no LATERAL, sorts the queue it holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    CTE,
    DateTime,
    Float,
    Join,
    Select,
    bindparam,
    cast,
    func,
    select,
    true,
    union_all,
)
from sqlalchemy.sql.elements import ColumnElement

from imagegate.jobs.states import Status
from imagegate.jobs.tables import jobs, tenants
from imagegate.jobs.written import written


@dataclass(frozen=True)
class FairShare:
    joined: Join  # jobs, with each tenant's recent service and weight
    order: ColumnElement[Any]  # the claim's first sort key: least served first
    served: CTE  # each tenant's recent service (owner, served)


SINCE = "served_since"  # the bound parameter: the start of the fair-share window


def fair_share() -> FairShare:
    """Built once: the window's start is the bound parameter ``served_since``."""
    since = bindparam(SINCE, type_=DateTime(timezone=True))
    # Two index searches (running jobs by status, recent ones by start time), never a scan
    # of the whole history, which a single OR of the two conditions turned into on SQLite.
    running, recent = jobs.alias("running"), jobs.alias("recent")
    generating = Status.GENERATING.value
    either = union_all(
        select(running.c.owner).where(running.c.status == generating),
        select(recent.c.owner).where(recent.c.started_at >= since, recent.c.status != generating),
    ).subquery("recently_served")
    # Materialised: counted once per claim, then joined to each queued job. As a plain
    # subquery, PostgreSQL may re-aggregate it for every queued row of a nested loop.
    served = (
        select(either.c.owner, func.count().label("served"))
        .group_by(either.c.owner)
        .cte("served")
        .prefix_with("MATERIALIZED", dialect="postgresql")
    )
    joined = jobs.outerjoin(served, served.c.owner == jobs.c.owner).outerjoin(
        tenants, tenants.c.id == jobs.c.owner
    )
    return FairShare(joined, share_of(served), served)


def share_of(served: CTE) -> ColumnElement[Any]:
    """A tenant's recent service over its weight (``served`` and ``tenants`` joined)."""
    return cast(func.coalesce(served.c.served, 0), Float) / func.coalesce(tenants.c.weight, 1.0)


def waiting_tenants() -> CTE:
    """The tenants with queued jobs, found by walking ``ix_jobs_queue_by_owner`` from one
    tenant to the next (a loose index scan: a search per tenant, not a read of every
    queued job); PostgreSQL only."""
    queued = jobs.c.status == Status.QUEUED.value
    first = select(jobs.c.owner).where(queued).order_by(jobs.c.owner).limit(written(1))
    found = first.cte("waiting_tenants", recursive=True)
    following = (
        select(jobs.c.owner)
        .where(queued, jobs.c.owner > found.c.owner)
        .order_by(jobs.c.owner)
        .limit(written(1))
        .scalar_subquery()
    )
    return found.union_all(select(following).where(found.c.owner.is_not(None)))


FAIR_SHARE = fair_share()


def scoped_to(owner: str | None, user: str | None) -> list[ColumnElement[bool]]:
    """The conditions that keep a query to one tenant's jobs (and one end user's)."""
    conditions = []
    if owner is not None:
        conditions.append(jobs.c.owner == owner)
    if user is not None:
        conditions.append(jobs.c.end_user == user)
    return conditions


def by_tenant(runnable: Select[Any], limit: int) -> Select[Any]:
    """``runnable`` (the claim's conditions, in queue order, locked), taken per waiting
    tenant and ordered by the tenants' shares: each tenant's next ``limit`` jobs come
    from the queue index, and only those are sorted (PostgreSQL)."""
    tenants_waiting = waiting_tenants()
    owner = tenants_waiting.c.owner
    head = (
        runnable.where(jobs.c.owner == owner)
        .add_columns(jobs.c.priority, jobs.c.created_at)
        .lateral("head")
    )
    served = FAIR_SHARE.served
    candidates = (
        tenants_waiting.join(head, true())
        .outerjoin(served, served.c.owner == owner)
        .outerjoin(tenants, tenants.c.id == owner)
    )
    return (
        select(head.c.id)
        .select_from(candidates)
        .where(owner.is_not(None))
        .order_by(share_of(served), head.c.priority.desc(), head.c.created_at, head.c.id)
        .limit(written(limit))  # not bound: jobs/written.py
    )
