"""The SQL of content-addressed image files (``blobs/<sha256>.<ext>``).

Identical bytes are stored once, and any number of image rows (a job's own, a cache hit's,
a follower's) name the same file. A file is deleted only when no image row names it.

Writing and deleting meet at one lock per key: a writer takes it, notes the key in
``blobs`` (a *pending* write) and commits, then puts the bytes; the image rows that name
the key clear the note in the transaction that records them. The sweeper takes the same
lock, and deletes a file only if no image row names it and no recent write is pending.
So a job that is about to refer to a file again never loses it. A note that stays (a
worker died between the write and the record, or lost its lease) is an orphan: the
sweeper deletes it, and the file if nothing refers to it, once it is older than the
grace period.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Connection, Insert, delete, exists, insert, literal, select, update

from imagegate.jobs.database import lock_for_transaction, transaction_lock
from imagegate.jobs.tables import blobs, images


def _lock(conn: Connection, key: str) -> None:
    lock_for_transaction(conn, _lock_name(key))


def _lock_name(key: str) -> str:
    return f"blob:{key}"


def pending(conn: Connection, key: str, size: int, now: datetime) -> None:
    """Note a write about to happen (commit before putting the bytes). On PostgreSQL one
    statement takes the key's lock and upserts the note (it was three, a tenth of a
    job's finishing there)."""
    if conn.dialect.name == "postgresql":
        conn.execute(_locked_upsert(key, size, now))
        return
    # SQLite's writers are serial already: there is no lock to take.
    noted = conn.execute(
        update(blobs).where(blobs.c.storage_key == key).values(size_bytes=size, written_at=now)
    ).rowcount
    if not noted:
        conn.execute(insert(blobs).values(storage_key=key, size_bytes=size, written_at=now))


def _locked_upsert(key: str, size: int, now: datetime) -> Insert:
    """The key's lock (the one ``lock_for_transaction`` takes), then the note, in one
    PostgreSQL statement: the insert's rows come from the lock's CTE, so the lock is
    taken first."""
    from sqlalchemy.dialects.postgresql import insert as upsert

    locked = select(transaction_lock(_lock_name(key))).cte("locked")
    values = select(
        literal(key, blobs.c.storage_key.type),
        literal(size, blobs.c.size_bytes.type),
        literal(now, blobs.c.written_at.type),
    ).select_from(locked)
    noted = upsert(blobs).from_select(["storage_key", "size_bytes", "written_at"], values)
    return noted.on_conflict_do_update(
        index_elements=[blobs.c.storage_key],
        set_={"size_bytes": noted.excluded.size_bytes, "written_at": noted.excluded.written_at},
    )


def referred_to(conn: Connection, keys: Sequence[str]) -> None:
    """Image rows naming these keys were just recorded: their writes are no longer pending."""
    if keys:
        conn.execute(delete(blobs).where(blobs.c.storage_key.in_(list(keys))))


def unreferenced(conn: Connection, key: str, written_before: datetime) -> bool:
    """Whether the file may go now: no image row names it, and no write of it is pending
    since ``written_before``. Holds the key's lock until the caller's transaction ends, so
    delete the file before committing."""
    _lock(conn, key)
    if conn.execute(select(exists().where(images.c.storage_key == key))).scalar():
        return False
    recent = conn.execute(
        select(exists().where(blobs.c.storage_key == key, blobs.c.written_at >= written_before))
    ).scalar()
    if recent:
        return False
    conn.execute(delete(blobs).where(blobs.c.storage_key == key))
    return True


def orphans(conn: Connection, written_before: datetime, limit: int) -> list[str]:
    """Pending writes older than the grace period: their jobs never recorded them."""
    return list(
        conn.execute(
            select(blobs.c.storage_key)
            .where(blobs.c.written_at < written_before)
            .order_by(blobs.c.written_at)
            .limit(limit)
        ).scalars()
    )
