"""The SQL of the result cache and of single-flight. Called by the store, inside the
transaction that records a job or ends one.

- A **cache entry** maps a key to the completed job whose images answer it, until it
  expires (each hit pushes that back). A hit's job gets image rows of its own that name
  the same stored files: nothing is copied.
- A **leader** is the job in flight (queued or generating) that will store its result
  under a key; a **follower** is an identical job that arrived meanwhile. It waits in the
  queue unclaimed (``follows`` set) and ends in the transaction that ends its leader.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, func, insert, select, update

from imagegate.jobs.database import lock_for_transaction
from imagegate.jobs.states import Status
from imagegate.jobs.tables import cache_entries, images, jobs

IN_FLIGHT = (Status.QUEUED.value, Status.GENERATING.value)


def lock_key(conn: Connection, key: str) -> None:
    """Serialise the submissions of one key, so two identical requests cannot both become
    leaders."""
    lock_for_transaction(conn, f"cache:{key}")


def find_hit(conn: Connection, key: str, now: datetime) -> Any | None:
    """The completed job whose images answer ``key``, if its entry has not expired."""
    return (
        conn.execute(
            select(jobs)
            .join(cache_entries, cache_entries.c.job_id == jobs.c.id)
            .where(
                cache_entries.c.key == key,
                cache_entries.c.expires_at > now,
                jobs.c.status == Status.COMPLETED.value,
            )
        )
        .mappings()
        .first()
    )


def touch(conn: Connection, key: str, job_id: str, now: datetime, ttl: timedelta) -> None:
    """A hit: the entry now answers with the hit's own job (the same files), so it lives
    as long as the newest job that used it, whatever the older ones' retention."""
    conn.execute(
        update(cache_entries)
        .where(cache_entries.c.key == key)
        .values(job_id=job_id, last_hit_at=now, expires_at=now + ttl, hits=cache_entries.c.hits + 1)
    )


def remember(conn: Connection, job: Any, now: datetime, ttl: timedelta) -> None:
    """Keep a completed job's images under its key (replacing an expired entry's job)."""
    size = conn.execute(
        select(func.coalesce(func.sum(images.c.size_bytes), 0)).where(images.c.job_id == job["id"])
    ).scalar_one()
    values = {"job_id": job["id"], "created_at": now, "expires_at": now + ttl}
    values |= {"last_hit_at": None, "hits": 0, "size_bytes": int(size)}
    replaced = conn.execute(
        update(cache_entries).where(cache_entries.c.key == job["cache_key"]).values(values)
    ).rowcount
    if not replaced:
        conn.execute(insert(cache_entries).values(key=job["cache_key"], **values))


def image_rows(conn: Connection, job_id: str) -> list[Any]:
    return list(
        conn.execute(select(images).where(images.c.job_id == job_id).order_by(images.c.idx))
        .mappings()
        .all()
    )


def find_leader(conn: Connection, key: str, besides: str) -> str | None:
    """The job in flight that will store its result under ``key``."""
    leader: str | None = conn.execute(
        select(jobs.c.id)
        .where(
            jobs.c.cache_key == key,
            jobs.c.status.in_(IN_FLIGHT),
            jobs.c.follows.is_(None),
            jobs.c.cache_store.is_(True),
            jobs.c.id != besides,
        )
        .order_by(jobs.c.created_at)
        .limit(1)
    ).scalar()
    return leader


def followers(conn: Connection, leader: str) -> list[str]:
    """The leader's followers still waiting, oldest first."""
    return list(
        conn.execute(
            select(jobs.c.id)
            .where(jobs.c.follows == leader, jobs.c.status == Status.QUEUED.value)
            .order_by(jobs.c.created_at, jobs.c.id)
        ).scalars()
    )


def promote(conn: Connection, leader: str) -> str | None:
    """The leader ended without a result to share (canceled): its oldest follower runs
    instead, and the others follow that one. Returns the new leader."""
    waiting = followers(conn, leader)
    if not waiting:
        return None
    heir, *rest = waiting
    conn.execute(
        update(jobs)
        .where(jobs.c.id == heir)
        .values(follows=None, cache_store=True, cache_status="miss")
    )
    if rest:
        conn.execute(update(jobs).where(jobs.c.id.in_(rest)).values(follows=heir))
    return heir


def stats(conn: Connection, now: datetime) -> tuple[int, int]:
    """Live entries, and the bytes of their images."""
    row = conn.execute(
        select(func.count(), func.coalesce(func.sum(cache_entries.c.size_bytes), 0)).where(
            cache_entries.c.expires_at > now
        )
    ).one()
    return int(row[0]), int(row[1])
