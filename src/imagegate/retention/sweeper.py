"""The sweeper: deletes what is past its time, a small batch of each kind per pass.

- **Ended jobs** after ``IMAGEGATE_RETENTION_DAYS`` (a tenant's own ``retention_days``
  where it has one), with everything that hangs off them (image rows, events, cache
  entries, idempotency records, webhook deliveries). Their usage rows and audit records
  stay: they are the bill and the evidence.
- **Image files** when no image row names them any more: files are content addressed and
  shared (a cache hit and its source, two jobs that drew the same pixels), so deleting a
  job deletes a file only when it was the last to refer to it (:mod:`imagegate.jobs.blobs`).
- **Cache entries** and **idempotency keys** past their expiry.
- **Events** of jobs that ended ``IMAGEGATE_EVENTS_RETENTION_HOURS`` ago, all but the
  final one: a late subscriber still reads how the job ended, and the job resource keeps
  its final state.
- **Previews** ``IMAGEGATE_PREVIEW_RETENTION_MINUTES`` after their job ended.
- **Quarantined images** after ``IMAGEGATE_QUARANTINE_RETENTION_DAYS``, while the audit
  record of why they were withheld stays.

Each step is its own short transaction, so a pass never holds locks for long, and any
number of processes may sweep at once: what one deletes, another finds gone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import Connection, Engine, delete, func, select, update

from imagegate.jobs import blobs
from imagegate.jobs.database import WRITE
from imagegate.jobs.events import EventType
from imagegate.jobs.states import FINAL
from imagegate.jobs.tables import (
    cache_entries,
    idempotency_keys,
    images,
    job_events,
    jobs,
    tenants,
)
from imagegate.storage import Storage
from imagegate.storage.keys import job_prefix

if TYPE_CHECKING:
    from imagegate.settings import Settings

log = structlog.get_logger(__name__)

ENDED = [status.value for status in FINAL]
TERMINAL_EVENTS = [kind.value for kind in EventType if kind.is_terminal]


@dataclass(frozen=True, slots=True)
class Policy:
    retention: timedelta = timedelta(days=90)
    events: timedelta = timedelta(hours=24)
    previews: timedelta = timedelta(minutes=60)
    quarantine: timedelta = timedelta(days=30)
    blob_grace: timedelta = timedelta(hours=1)  # a written file's job has this long to record it
    batch: int = 200


@dataclass(slots=True)
class Swept:
    """What one pass deleted: rows, and files or folders. A dry run counts the rows that a
    full sweep would delete now (files are only known as they are deleted)."""

    jobs: int = 0
    files: int = 0
    orphan_files: int = 0
    cache_entries: int = 0
    idempotency_keys: int = 0
    events: int = 0
    previews: int = 0
    quarantined: int = 0

    @property
    def total(self) -> int:
        return sum(self.as_dict().values())

    def add(self, other: Swept) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class Sweeper:
    def __init__(
        self,
        engine: Engine,
        storage: Storage,
        policy: Policy,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.engine = engine
        self._writer = engine.execution_options(**WRITE)
        self.storage = storage
        self.policy = policy
        self.clock = clock

    def sweep(self, *, dry_run: bool = False) -> Swept:
        """One pass: at most a batch of each kind."""
        now = self.clock()
        if dry_run:
            return self._count(now)
        swept = Swept()
        swept.cache_entries = self._expire(cache_entries, cache_entries.c.key, now)
        swept.idempotency_keys = self._expire(
            idempotency_keys, idempotency_keys.c.tenant + ":" + idempotency_keys.c.key, now
        )
        swept.events = self._sweep_events(now)
        swept.previews = self._sweep_area("previews", jobs.c.previews_kept, self.policy.previews)
        swept.quarantined = self._sweep_area(
            "quarantine", jobs.c.quarantined, self.policy.quarantine
        )
        swept.jobs, swept.files = self._sweep_jobs(now)
        swept.orphan_files = self._sweep_orphans(now)
        if swept.total:
            log.info("retention.swept", **swept.as_dict())
        return swept

    def sweep_all(self, *, dry_run: bool = False, max_passes: int = 10_000) -> Swept:
        """Pass after pass until nothing is left (``imagegate gc``)."""
        if dry_run:
            return self.sweep(dry_run=True)
        swept = Swept()
        for _ in range(max_passes):
            step = self.sweep()
            swept.add(step)
            if not step.total:
                break
        return swept

    # -- each kind -------------------------------------------------------------------------

    def _expire(self, table: Any, key: Any, now: datetime) -> int:
        with self._writer.begin() as conn:
            expired = select(key).where(table.c.expires_at < now).limit(self.policy.batch)
            ids = list(conn.execute(expired).scalars())
            if ids:
                conn.execute(delete(table).where(key.in_(ids)))
            return len(ids)

    def _sweep_events(self, now: datetime) -> int:
        """Every event but the last of jobs that ended long enough ago."""
        cutoff = now - self.policy.events
        with self._writer.begin() as conn:
            ids = self._ended(conn, jobs.c.events_swept.is_(False), cutoff)
            if not ids:
                return 0
            deleted = conn.execute(
                delete(job_events).where(
                    job_events.c.job_id.in_(ids), job_events.c.type.not_in(TERMINAL_EVENTS)
                )
            ).rowcount
            conn.execute(update(jobs).where(jobs.c.id.in_(ids)).values(events_swept=True))
            return int(deleted)

    def _sweep_area(self, area: str, flag: Any, keep: timedelta) -> int:
        """A job's own folder of previews or withheld images, once it has been kept long
        enough after the job ended. The files go first: if the flag's update is lost, the
        next pass finds an empty folder."""
        cutoff = self.clock() - keep
        with self.engine.connect() as conn:
            ids = self._ended(conn, flag.is_(True), cutoff)
        for job_id in ids:
            self.storage.delete_prefix(job_prefix(area, job_id))
        if ids:
            with self._writer.begin() as conn:
                conn.execute(update(jobs).where(jobs.c.id.in_(ids)).values({flag.name: False}))
        return len(ids)

    def _sweep_jobs(self, now: datetime) -> tuple[int, int]:
        """Ended jobs past their tenant's retention, then the files only they named."""
        with self._writer.begin() as conn:
            ids = self._expired_jobs(conn, now)
            if not ids:
                return 0, 0
            keys = set(
                conn.execute(select(images.c.storage_key).where(images.c.job_id.in_(ids))).scalars()
            )
            flagged = list(
                conn.execute(
                    select(jobs.c.id, jobs.c.previews_kept, jobs.c.quarantined).where(
                        jobs.c.id.in_(ids)
                    )
                ).all()
            )
            conn.execute(delete(jobs).where(jobs.c.id.in_(ids)))
        for job_id, previews, quarantined in flagged:
            if previews:
                self.storage.delete_prefix(job_prefix("previews", job_id))
            if quarantined:
                self.storage.delete_prefix(job_prefix("quarantine", job_id))
        return len(ids), sum(self._delete_if_unreferenced(key, now) for key in sorted(keys))

    def _sweep_orphans(self, now: datetime) -> int:
        """Files written for a job that never recorded them (it died, or lost its lease)."""
        with self.engine.connect() as conn:
            keys = blobs.orphans(conn, now - self.policy.blob_grace, self.policy.batch)
        return sum(self._delete_if_unreferenced(key, now) for key in keys)

    def _delete_if_unreferenced(self, key: str, now: datetime) -> bool:
        """Delete the file inside the transaction that found it unreferenced, holding the
        key's lock, so no writer can be storing it again meanwhile."""
        with self._writer.begin() as conn:
            if not blobs.unreferenced(conn, key, now - self.policy.blob_grace):
                return False
            self.storage.delete(key)
            return True

    # -- queries ---------------------------------------------------------------------------

    def _ended(self, conn: Connection, pending: Any, cutoff: datetime) -> list[str]:
        query = (
            select(jobs.c.id)
            .where(pending, jobs.c.finished_at < cutoff, jobs.c.status.in_(ENDED))
            .order_by(jobs.c.finished_at)
            .limit(self.policy.batch)
        )
        return list(conn.execute(query).scalars())

    def _expired_jobs(self, conn: Connection, now: datetime, limit: int | None = -1) -> list[str]:
        """The default retention for most tenants, and each tenant's own where it is set:
        a batch of them (``limit=None``: all)."""
        limit = self.policy.batch if limit == -1 else limit
        own = dict(
            conn.execute(
                select(tenants.c.id, tenants.c.retention_days).where(
                    tenants.c.retention_days.is_not(None)
                )
            ).all()
        )
        found: list[str] = []
        rules: list[tuple[Any, timedelta]] = [
            (jobs.c.owner.not_in(list(own)) if own else None, self.policy.retention)
        ]
        rules += [(jobs.c.owner == tenant, timedelta(days=days)) for tenant, days in own.items()]
        for owner, keep in rules:
            query = select(jobs.c.id).where(
                jobs.c.finished_at < now - keep, jobs.c.status.in_(ENDED)
            )
            if owner is not None:
                query = query.where(owner)
            if limit is not None:
                room = limit - len(found)
                if room <= 0:
                    break
                query = query.order_by(jobs.c.finished_at).limit(room)
            found += conn.execute(query).scalars()
        return found

    def _count(self, now: datetime) -> Swept:
        """What a full sweep would delete now, counted, nothing deleted."""
        counted = Swept()
        with self.engine.connect() as conn:

            def count(*where: Any, table: Any = jobs) -> int:
                query = select(func.count()).select_from(table).where(*where)
                return int(conn.execute(query).scalar_one())

            counted.cache_entries = count(cache_entries.c.expires_at < now, table=cache_entries)
            counted.idempotency_keys = count(
                idempotency_keys.c.expires_at < now, table=idempotency_keys
            )
            ended = jobs.c.status.in_(ENDED)
            counted.events = count(
                job_events.c.type.not_in(TERMINAL_EVENTS),
                job_events.c.job_id.in_(
                    select(jobs.c.id).where(
                        jobs.c.events_swept.is_(False),
                        jobs.c.finished_at < now - self.policy.events,
                        ended,
                    )
                ),
                table=job_events,
            )
            counted.previews = count(
                jobs.c.previews_kept.is_(True),
                jobs.c.finished_at < now - self.policy.previews,
                ended,
            )
            counted.quarantined = count(
                jobs.c.quarantined.is_(True),
                jobs.c.finished_at < now - self.policy.quarantine,
                ended,
            )
            counted.jobs = len(self._expired_jobs(conn, now, limit=None))
        return counted


def policy_of(settings: Settings) -> Policy:
    return Policy(
        retention=timedelta(days=settings.retention_days),
        events=timedelta(hours=settings.events_retention_hours),
        previews=timedelta(minutes=settings.preview_retention_minutes),
        quarantine=timedelta(days=settings.quarantine_retention_days),
        # Longer than any job takes from writing its files to recording them.
        blob_grace=timedelta(seconds=max(3600.0, 4 * settings.job_timeout_s)),
        batch=settings.sweep_batch,
    )
