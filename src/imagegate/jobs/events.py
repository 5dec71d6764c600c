"""Job events: an ordered log per job, written in the transaction of the change it records.

Every state change appends an event (``queued``, ``started``, ``progress``, ``completed``,
``failed``, ``canceled``), so a subscriber that comes late, or reconnects with
``Last-Event-ID``, reads what it missed from the table. Notifications only say "job X has
news": in one process through :class:`EventHub`, across processes through PostgreSQL
``NOTIFY imagegate_events, '<job id>'``.
"""

from __future__ import annotations

import asyncio
import threading
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, func, insert, select

from imagegate.jobs.rows import utc
from imagegate.jobs.tables import job_events

CHANNEL = "imagegate_events"
ANY_JOB = "*"


class EventType(StrEnum):
    PENDING_REVIEW = "pending_review"
    QUEUED = "queued"
    STARTED = "started"
    PROGRESS = "progress"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def is_terminal(self) -> bool:
        return self in (EventType.COMPLETED, EventType.FAILED, EventType.CANCELED)


@dataclass(frozen=True, slots=True)
class JobEvent:
    id: int
    job_id: str
    type: EventType
    data: dict[str, Any]
    created_at: datetime


def emit(
    conn: Connection,
    job_id: str,
    kind: EventType,
    data: dict[str, Any],
    now: datetime,
    also_notify: str | None = None,
) -> None:
    """Append an event inside the caller's transaction (and tell other processes on commit:
    on PostgreSQL, in the same statement, one round trip for both). ``also_notify`` names
    another channel to notify in that statement, with an empty payload (the workers')."""
    appended = insert(job_events).values(job_id=job_id, type=kind.value, data=data, created_at=now)
    if conn.dialect.name != "postgresql":
        conn.execute(appended)
        return
    written = appended.returning(job_events.c.job_id).cte("appended")
    notices = [func.pg_notify(CHANNEL, written.c.job_id)]
    if also_notify is not None:
        notices.append(func.pg_notify(also_notify, ""))
    conn.execute(select(*notices))


def read_since(conn: Connection, job_id: str, after_id: int = 0) -> list[JobEvent]:
    query = (
        select(job_events)
        .where(job_events.c.job_id == job_id, job_events.c.id > after_id)
        .order_by(job_events.c.id)
    )
    return [
        JobEvent(
            id=row["id"],
            job_id=row["job_id"],
            type=EventType(row["type"]),
            data=row["data"],
            created_at=utc(row["created_at"]) or row["created_at"],
        )
        for row in conn.execute(query).mappings()
    ]


class EventHub:
    """Wakes asyncio subscribers when a job has news; ``publish`` is safe from any thread."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiters: dict[str, set[asyncio.Event]] = defaultdict(set)
        self._lock = threading.Lock()

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def publish(self, job_id: str) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wake, job_id)

    def waiter(self, *job_ids: str) -> Waiter:
        """Register interest before reading, so nothing published meanwhile is missed."""
        return Waiter(self, job_ids)

    def _wake(self, job_id: str) -> None:
        with self._lock:
            targets = [*self._waiters.get(job_id, ()), *self._waiters.get(ANY_JOB, ())]
        for event in targets:
            event.set()

    def _add(self, job_ids: tuple[str, ...], event: asyncio.Event) -> None:
        with self._lock:
            for job_id in job_ids:
                self._waiters[job_id].add(event)

    def _remove(self, job_ids: tuple[str, ...], event: asyncio.Event) -> None:
        with self._lock:
            for job_id in job_ids:
                self._waiters[job_id].discard(event)
                if not self._waiters[job_id]:
                    del self._waiters[job_id]


class Waiter:
    def __init__(self, hub: EventHub, job_ids: tuple[str, ...]) -> None:
        self._hub, self.job_ids = hub, job_ids
        self._event = asyncio.Event()
        hub._add(job_ids, self._event)

    async def wait(self, timeout_s: float) -> bool:
        """True when woken, False on timeout; re-arms itself either way."""
        try:
            await asyncio.wait_for(self._event.wait(), timeout_s)
        except TimeoutError:
            return False
        self._event.clear()
        return True

    def close(self) -> None:
        self._hub._remove(self.job_ids, self._event)

    def __enter__(self) -> Waiter:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


Publisher = Callable[[str], None]
