"""The job store, which is also the queue.

Every state change is one guarded UPDATE whose WHERE clause names the states the change
may start from (:func:`imagegate.jobs.states.sources_of`) and, for a worker's changes, the
lease token it holds. A change that matches no row did not happen: a worker whose lease
was taken over cannot record a result, and a finished job cannot be finished again.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from time import monotonic
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    and_,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.sql.elements import ColumnElement

from imagegate import metrics
from imagegate.cache import entries, idempotency
from imagegate.cache.idempotency import IdempotencyRequest
from imagegate.cache.keys import NOT_CACHEABLE, CacheRequest
from imagegate.errors import IllegalTransition, JobNotFound
from imagegate.jobs import audit, blobs, claiming, events, gallery, lookup, queue
from imagegate.jobs.audit import AuditEntry
from imagegate.jobs.changes import (
    CANCELED,
    EVENT_OF,
    NEWS,
    OVERDUE,
    RECOVERY_INTERVAL,
    REJECTED,
    WORKER_LOST,
    Intake,
    completed_event,
    error_event,
    error_values,
    exhausted,
    held_by,
    held_event,
    image_values,
    row_of,
    unleased,
)
from imagegate.jobs.database import READ, WRITE
from imagegate.jobs.events import EventType
from imagegate.jobs.fairness import scoped_to
from imagegate.jobs.flight import SingleFlight
from imagegate.jobs.lookup import Glance
from imagegate.jobs.models import (
    Claim,
    ErrorInfo,
    GenerationMeta,
    ImageRecord,
    Job,
    JobSpec,
    QueueInfo,
)
from imagegate.jobs.queue import ahead_of
from imagegate.jobs.retry import backoff_s
from imagegate.jobs.rows import (
    decode_cursor,
    encode_cursor,
    generation_meta,
    image_from_row,
    job_from_row,
)
from imagegate.jobs.rows import spec_values as _spec_values
from imagegate.jobs.states import Status, sources_of
from imagegate.jobs.tables import images, jobs
from imagegate.jobs.wakeup import CHANNEL, Wakeup
from imagegate.usage import alerts, ledger
from imagegate.usage.ledger import Pricing
from imagegate.webhooks import outbox

Clock = Callable[[], datetime]


def _plausible_id(value: str) -> bool:
    """Ids are UUID strings; anything else (a NUL, say, which PostgreSQL refuses to even
    compare) cannot name a job or an image."""
    return len(value) <= 36 and "\x00" not in value


def _utcnow() -> datetime:
    return datetime.now(UTC)


class JobStore(SingleFlight):
    def __init__(
        self,
        engine: Engine,
        *,
        max_attempts: int = 3,
        retry_backoff_s: float = 0.0,
        job_timeout_s: float | None = None,
        wakeup: Wakeup | None = None,
        clock: Clock = _utcnow,
        pricing: Pricing | None = None,
        fair_share_window_s: float | None = 60.0,
        cache_ttl_s: float = 30 * 86400,
        reader: Engine | None = None,
    ) -> None:
        self.engine = engine
        self.reader = reader or engine.execution_options(**READ)  # polls' reads (lookup.py)
        self.cache_ttl = timedelta(seconds=cache_ttl_s)
        self.max_attempts = max_attempts
        self.retry_backoff_s = retry_backoff_s
        self.job_timeout_s = job_timeout_s
        self.wakeup = wakeup or Wakeup()
        self._now = clock
        self._next_recovery = clock()
        self.publishers: list[events.Publisher] = []
        self._writer = engine.execution_options(**WRITE)
        self._postgres = engine.dialect.name == "postgresql"
        self._pace: queue.Pace | None = None  # the ETA's inputs, read at most once a second
        self._shown = queue.Shown()  # what each waiting job's clients were last told
        self.pricing = pricing  # None: no costs are recorded (tests of the bare queue)
        # None: first come, first served (by priority, then age) whoever the tenant.
        self.fair_share_window = (
            None if fair_share_window_s is None else timedelta(seconds=fair_share_window_s)
        )

    # -- reading -------------------------------------------------------------------------

    def get(self, job_id: str, owner: str | None = None, user: str | None = None) -> Job:
        """The job; with ``owner`` (and ``user``), only if it is theirs: else a 404."""
        return self._read(job_id, owner, user, placed=False)[0]

    def poll(
        self, job_id: str, owner: str | None, user: str | None, stale_after_s: float
    ) -> tuple[Job, QueueInfo | None]:
        """The job as ``get`` reads it and, while it is queued, its ``queue_info``: in one
        statement, the job's row carrying the counts behind its place."""
        job, row = self._read(job_id, owner, user, placed=True)
        if job.status is not Status.QUEUED:
            return job, None
        return job, self._placed(job, queue.place_in(job, row), stale_after_s)

    def _read(
        self, job_id: str, owner: str | None, user: str | None, placed: bool
    ) -> tuple[Job, dict[str, Any]]:
        if not _plausible_id(job_id):
            raise JobNotFound(job_id=job_id)
        found = lookup.job_row(self.reader, job_id, owner, user, placed)
        if found is None:
            raise JobNotFound(job_id=job_id)
        row, stored = found
        done = row["status"] == Status.COMPLETED.value  # only a completed job shows images
        return job_from_row(row, stored if done else []), row

    def glance(self, job_id: str, owner: str | None = None, user: str | None = None) -> Glance:
        """What a status poll shows of the job (:func:`lookup.glance`); a 404 as ``get``."""
        if not _plausible_id(job_id):
            raise JobNotFound(job_id=job_id)
        found = lookup.glance(self.reader, job_id, owner, user)
        if found is None:
            raise JobNotFound(job_id=job_id)
        return found

    def list_jobs(
        self,
        owner: str,
        status: Status | None = None,
        limit: int = 20,
        cursor: str | None = None,
        user: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
    ) -> tuple[list[Job], str | None]:
        """Newest first; returns the page and the cursor of the next page (None at the end)."""
        query = select(jobs).where(*scoped_to(owner, user))
        if status is not None:
            query = query.where(jobs.c.status == status.value)
        if created_after is not None:
            query = query.where(jobs.c.created_at > created_after)
        if created_before is not None:
            query = query.where(jobs.c.created_at < created_before)
        if cursor is not None:
            moment, job_id = decode_cursor(cursor)
            query = query.where(
                or_(
                    jobs.c.created_at < moment,
                    and_(jobs.c.created_at == moment, jobs.c.id < job_id),
                )
            )
        query = query.order_by(jobs.c.created_at.desc(), jobs.c.id.desc()).limit(limit + 1)
        with self.engine.connect() as conn:
            page = self._with_images(conn, conn.execute(query).mappings().all())
        more = len(page) > limit
        page = page[:limit]
        return page, encode_cursor(page[-1]) if more else None

    def gallery(
        self, owner: str, user: str | None = None, limit: int = 20, cursor: str | None = None
    ) -> tuple[list[tuple[ImageRecord, Job]], str | None]:
        """A tenant's (or an end user's) images with their jobs, newest first."""
        with self.engine.connect() as conn:
            return gallery.page(conn, owner, user, limit, cursor)

    def get_image(self, image_id: str) -> ImageRecord | None:
        if not _plausible_id(image_id):
            return None
        with self.engine.connect() as conn:
            row = conn.execute(select(images).where(images.c.id == image_id)).mappings().first()
        return image_from_row(row) if row else None

    def queue_info(self, job: Job, stale_after_s: float) -> QueueInfo:
        """Jobs ahead of a queued job, and an ETA from recent generation times."""
        return self._placed(job, queue.read_ahead_of(self.reader, job), stale_after_s)

    def _placed(self, job: Job, position: int, stale_after_s: float) -> QueueInfo:
        pace = self._pace
        if pace is None or monotonic() - pace.read_at > queue.PACE_TTL_S:
            now = self._now()
            pace = lookup.read(self.reader, lambda conn: queue.pace(conn, now, stale_after_s))
            self._pace = pace
        info = QueueInfo(position, queue.eta_s(position, pace.mean_s, pace.workers))
        return self._shown.monotone(job.id, info)

    def heartbeat_worker(self, concurrency: int) -> None:
        self._pace = None
        with self._write(durable=False) as conn:
            queue.heartbeat(conn, concurrency, self._now())

    def retire_worker(self) -> None:
        with self._write() as conn:
            queue.retire(conn)

    def review(
        self,
        job_id: str,
        approve: bool,
        reviewer: str,
        entry: AuditEntry,
        released: Sequence[ImageRecord] | None = None,
    ) -> Job:
        """A reviewer's decision on a held job. A job held before it ran is approved into
        the queue; one held after it ran (``released``: its images, out of quarantine) is
        approved as completed. Either is rejected as failed."""
        now = self._now()
        decided = {"reviewed_by": reviewer, "reviewed_at": now}
        ran = jobs.c.model.is_not(None)  # held for its output, not its prompt
        guards: tuple[ColumnElement[bool], ...] = ()
        if approve and released is not None:
            target, event = Status.COMPLETED, {}
            values: dict[str, Any] = {"review_decision": "approved", "finished_at": now}
            guards = (ran,)
        elif approve:
            target, event = Status.QUEUED, {"queue_position": None}
            values = {"review_decision": "approved"}
            guards = (~ran,)
        else:
            target, event = Status.FAILED, error_event(REJECTED)
            values = {"review_decision": "rejected", "finished_at": now, **error_values(REJECTED)}
        with self._write() as conn:
            if target is Status.COMPLETED:
                row = conn.execute(select(jobs).where(jobs.c.id == job_id)).mappings().first()
                meta = generation_meta(row) if row is not None else None
                if meta is not None:  # else it never ran, and the guard refuses it below
                    event = completed_event(released or (), meta)
            if not self._transition(
                conn, job_id, target, *guards, from_=Status.PENDING_REVIEW, event=event,
                stored=released or (), **decided, **values,
            ):  # fmt: skip
                self._refuse(conn, job_id, None, "The job is not waiting for this review.")
            audit.record(conn, entry, now, job_id)
            self._notify_workers(conn)
            decided_job = self._with_images(conn, [row_of(conn, job_id)])[0]
        self.wakeup.notify()
        return decided_job  # as decided: a worker may claim it the moment this commits

    def status_counts(self) -> dict[str, int]:
        """Jobs per status (every status, zeros included)."""
        query = select(jobs.c.status, func.count()).group_by(jobs.c.status)
        with self.engine.connect() as conn:
            counted: dict[str, int] = dict(conn.execute(query).all())
        return {s.value: counted.get(s.value, 0) for s in Status}

    def pending_review(self, limit: int = 50, owner: str | None = None) -> list[Job]:
        """The review queue, oldest first (one tenant's, with ``owner``)."""
        query = (
            select(jobs)
            .where(jobs.c.status == Status.PENDING_REVIEW.value, *scoped_to(owner, None))
            .order_by(jobs.c.created_at, jobs.c.id)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return self._with_images(conn, conn.execute(query).mappings().all())

    def record_audit(self, entry: AuditEntry) -> None:
        with self._write() as conn:
            audit.record(conn, entry, self._now())

    def audit_entries(self, **filters: Any) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return audit.entries(conn, **filters)

    def audit_counts(self) -> dict[str, dict[str, int]]:
        with self.engine.connect() as conn:
            return audit.counts(conn)

    def webhook_deliveries(self, job_id: str) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return outbox.deliveries_of(conn, job_id)

    def alert_deliveries(self, tenant: str) -> list[dict[str, Any]]:
        """A tenant's budget alerts, as sent through the outbox, with every attempt."""
        with self.engine.connect() as conn:
            return outbox.deliveries_of(conn, None, tenant)

    def cache_stats(self) -> tuple[int, int]:
        """The cache's live entries, and the bytes of their images."""
        with self.engine.connect() as conn:
            return entries.stats(conn, self._now())

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(select(1))

    # -- the client's changes --------------------------------------------------------------

    def submit(
        self,
        spec: JobSpec,
        owner: str,
        webhook_url: str | None = None,
        intake: Intake | None = None,
        cache: CacheRequest = NOT_CACHEABLE,
        idempotent: IdempotencyRequest | None = None,
    ) -> Job:
        """Record a job: queued, or held for review when the intake says so (with its
        moderation outcome, and its audit entry, in the same transaction).

        A cacheable request is answered from the cache when it can be (the job is
        completed at once), or follows an identical job in flight. With ``idempotent``, a
        key used before for the same request raises :class:`idempotency.Replay` and
        records nothing.
        """
        now, intake = self._now(), intake or Intake()
        status = Status.PENDING_REVIEW if intake.held else Status.QUEUED
        values = (
            _spec_values(spec)
            | intake.identity
            | {
                "webhook_url": webhook_url,
                "moderation": intake.moderation,
                "client_ip": intake.client_ip,
                "id": str(uuid.uuid4()),
                "owner": owner,
                "status": status.value,
                "attempts": 0,
                "created_at": now,
                "run_after": now,
                "cancel_requested": False,
                "cache_key": cache.key,
                "cache_store": cache.key is not None and cache.mode.stores,
                "cache_status": cache.status_if_generated,
            }
        )
        shared_key = cache.key if cache.mode.looks_up and not intake.held else None
        with self._write() as conn:
            hit = self._look_up(conn, owner, cache.key, shared_key, idempotent, now)
            row = conn.execute(insert(jobs).values(values).returning(*jobs.c)).mappings().one()
            job = job_from_row(row)
            if idempotent is not None:
                idempotency.record(conn, owner, idempotent, job.id, now)
            if intake.audit is not None:
                audit.record(conn, intake.audit, now, job.id)
            if hit is not None:  # nothing to run, reserve or cap: it is done
                self._answer_from_cache(conn, job.id, hit, now)
                return self._with_images(conn, [row_of(conn, job.id)])[0]
            if intake.admit is not None:  # caps and budget reservations: may refuse it
                intake.admit(conn, job.id, now)
            waiting = self._place(conn, job, intake, shared_key)
            if waiting is not None:  # held for review, or following a leader
                return waiting
        self.wakeup.notify()
        return job

    def _look_up(
        self,
        conn: Connection,
        owner: str,
        key: str | None,
        shared_key: str | None,
        idempotent: IdempotencyRequest | None,
        now: datetime,
    ) -> Any | None:
        """Before a job is recorded: an idempotent replay (raised), then a cache hit."""
        if idempotent is not None:
            idempotency.lock(conn, owner, idempotent.key)
            idempotency.check(conn, owner, idempotent, now)
        if key is not None:
            entries.lock_key(conn, key)
        return entries.find_hit(conn, shared_key, now) if shared_key else None

    def _place(
        self, conn: Connection, job: Job, intake: Intake, shared_key: str | None
    ) -> Job | None:
        """Hold the new job for review, make it follow its leader, or queue it (None)."""
        if intake.held:
            self._emit(conn, job.id, EventType.PENDING_REVIEW, held_event(intake))
            return job
        leader = entries.find_leader(conn, shared_key, job.id) if shared_key else None
        if leader is not None:
            self._follow(conn, job, leader)
            return job_from_row(row_of(conn, job.id))
        place = {"queue_position": ahead_of(conn, job)}
        self._emit(conn, job.id, EventType.QUEUED, place, also_notify=CHANNEL)  # and the workers
        return None

    def cancel(self, job_id: str, owner: str | None = None, user: str | None = None) -> Job:
        """Queued or held: canceled now. Generating: flagged; the worker stops at its next
        step."""
        self.get(job_id, owner, user)  # a 404 for ids that cannot exist, or not theirs
        mine = scoped_to(owner, user)
        waiting = jobs.c.status.in_([Status.QUEUED.value, Status.PENDING_REVIEW.value])
        with self._write() as conn:
            done = self._transition(
                conn,
                job_id,
                Status.CANCELED,
                *mine,
                waiting,
                event={},
                finished_at=self._now(),
                **error_values(CANCELED),
            )
            if not done:
                flagged = conn.execute(
                    update(jobs)
                    .where(jobs.c.id == job_id, jobs.c.status == Status.GENERATING.value, *mine)
                    .values(cancel_requested=True)
                ).rowcount
                if not flagged:
                    self._refuse(conn, job_id, owner, "The job has already finished.")
        return self.get(job_id)

    # -- the worker's changes --------------------------------------------------------------

    def claim(
        self,
        lease_s: float,
        limit: int = 1,
        like: JobSpec | None = None,
        token: str | None = None,
    ) -> list[Claim]:
        """Lease up to ``limit`` runnable jobs: fairly among tenants (:mod:`.fairness`),
        then by priority, then by age.

        ``like`` restricts the claim to jobs that can share a forward pass with that spec
        (same size, steps and guidance), and ``token`` adds them to a lease already held:
        how a worker gathers a batch.
        """
        now, token = self._now(), token or str(uuid.uuid4())
        fair = self.fair_share_window is not None
        values = claiming.claim_values(now, token, lease_s, self.fair_share_window)
        if self._postgres:
            claimed = self._claim_postgres(limit, like, fair, values, now)
        else:
            statement = claiming.claim_statement(limit, like, fair)
            with self._write(durable=False) as conn:
                if now >= self._next_recovery:
                    self._maintain(conn, now)
                rows = conn.execute(statement, values).mappings()
                claimed = [Claim(job_from_row(row), token) for row in rows]
                for claim in claimed:
                    started = {"attempt": claim.job.attempts}
                    self._emit(conn, claim.job.id, EventType.STARTED, started)
        return sorted(claimed, key=lambda c: (-c.job.spec.priority, c.job.created_at, c.job.id))

    def _claim_postgres(
        self, limit: int, like: JobSpec | None, fair: bool, values: dict[str, Any], now: datetime
    ) -> list[Claim]:
        """The claim, its events and their notifications in one autocommitted statement
        (claiming.py); the lease recovery, when due, in a transaction of its own first."""
        if now >= self._next_recovery:
            with self._write(durable=False) as conn:
                self._maintain(conn, now)
        statement = claiming.announced_claim(limit, like, fair)
        with self._writer.connect() as conn:
            rows = conn.execution_options(isolation_level="AUTOCOMMIT").execute(statement, values)
            claimed = [Claim(job_from_row(row), values[claiming.TOKEN]) for row in rows.mappings()]
        self._publish([claim.job.id for claim in claimed])
        return claimed

    def renew(self, token: str, lease_s: float) -> set[str]:
        """Extend the lease of every job held under ``token``; returns the ids still held."""
        now = self._now()
        with self._write(durable=False) as conn:
            rows = conn.execute(
                update(jobs)
                .where(jobs.c.lease_token == token, jobs.c.status == Status.GENERATING.value)
                .values(lease_expires_at=now + timedelta(seconds=lease_s))
                .returning(jobs.c.id)
            )
            return {row.id for row in rows}

    def report_progress(
        self,
        claim: Claim,
        step: int,
        total: int,
        preview_key: str | None = None,
        preview_step: int | None = None,
    ) -> bool:
        """Record progress (and a preview's storage key); True when the job should stop:
        the client asked to cancel it, or this worker no longer holds it."""
        with self._write(durable=False) as conn:
            row = conn.execute(
                update(jobs)
                .where(*held_by(claim))
                .values(
                    progress_step=step,
                    progress_total=total,
                    **({"previews_kept": True} if preview_key else {}),
                )
                .returning(jobs.c.cancel_requested)
            ).first()
            if row is not None:
                data = {"step": step, "total": total, "preview": preview_key}
                if preview_key is not None and preview_step not in (None, step):
                    data["preview_step"] = preview_step  # the preview's own name
                self._emit(conn, claim.job.id, EventType.PROGRESS, data)
        return row is None or bool(row.cancel_requested)

    def complete(
        self,
        claim: Claim,
        stored: Sequence[ImageRecord],
        meta: GenerationMeta,
        moderation: dict[str, Any] | None = None,
    ) -> bool:
        """Record the result and end the lease in one transaction. False: the lease was lost."""
        self._pace = None  # a new generation time: this process's next ETA reads it
        now = self._now()
        checked: dict[str, Any] = {"moderation": moderation} if moderation else {}
        with self._write() as conn:
            done = self._transition(
                conn,
                claim.job.id,
                Status.COMPLETED,
                *held_by(claim),
                finished_at=now,
                model=meta.model,
                generation_time_ms=meta.generation_time_ms,
                batch_size=meta.batch_size,
                progress_step=claim.job.spec.steps,
                progress_total=claim.job.spec.steps,
                cost_micros=self.pricing.completed(claim.job.spec, meta) if self.pricing else None,
                event=completed_event(stored, meta),
                stored=stored,
                **checked,
                **error_values(None),
            )
        return done

    def hold_output(
        self,
        claim: Claim,
        meta: GenerationMeta,
        moderation: dict[str, Any] | None,
        entry: AuditEntry | None = None,
    ) -> bool:
        """The job ran but its images were withheld: it waits for a reviewer, unleased,
        with no error from an earlier attempt and no earlier review decision. A cancel
        asked for meanwhile wins."""
        with self._write() as conn:
            if self._cancel_if_asked(conn, claim.job.id, *held_by(claim)):
                return True
            held = self._transition(
                conn,
                claim.job.id,
                Status.PENDING_REVIEW,
                *held_by(claim),
                event={"stage": "output"},
                model=meta.model,
                generation_time_ms=meta.generation_time_ms,
                batch_size=meta.batch_size,
                moderation=moderation,
                quarantined=True,
                review_decision=None,
                reviewed_by=None,
                reviewed_at=None,
                **error_values(None),
                **unleased(),
            )
            if held and entry:  # audited in the same transaction: never one without the other
                audit.record(conn, entry, self._now(), claim.job.id)
            return held

    def fail(
        self,
        claim: Claim,
        error: ErrorInfo,
        moderation: dict[str, Any] | None = None,
        entry: AuditEntry | None = None,
        *,
        quarantined: bool = False,
    ) -> bool:
        """End the job as failed; ``entry`` is audited in the same transaction.
        ``quarantined``: its images were withheld, and the sweeper deletes them in time."""
        return self._finish(claim, Status.FAILED, error, moderation, entry, quarantined)

    def finish_canceled(self, claim: Claim) -> bool:
        return self._finish(claim, Status.CANCELED, CANCELED)

    def retry_later(self, claim: Claim, error: ErrorInfo, delay_s: float) -> bool:
        """Give the job back to the queue after a transient error, runnable after a delay."""
        return self._requeue(claim, delay_s, attempts=jobs.c.attempts, **error_values(error))

    def release(self, claim: Claim) -> bool:
        """Give the job back untouched (the worker is shutting down): no attempt is used."""
        return self._requeue(claim, 0.0, attempts=jobs.c.attempts - 1)

    # -- internals ---------------------------------------------------------------------------

    def _finish(
        self,
        claim: Claim,
        target: Status,
        error: ErrorInfo,
        moderation: dict[str, Any] | None = None,
        entry: AuditEntry | None = None,
        quarantined: bool = False,
    ) -> bool:
        checked: dict[str, Any] = {"moderation": moderation} if moderation else {}
        if quarantined:
            checked["quarantined"] = True
        with self._write() as conn:
            done = self._transition(
                conn,
                claim.job.id,
                target,
                *held_by(claim),
                event=error_event(error) if target is Status.FAILED else {},
                finished_at=self._now(),
                **checked,
                **error_values(error),
            )
            if done and entry:
                audit.record(conn, entry, self._now(), claim.job.id)
            return done

    def _requeue(self, claim: Claim, delay_s: float, **values: Any) -> bool:
        run_after = self._now() + timedelta(seconds=delay_s)
        with self._write() as conn:
            if self._cancel_if_asked(conn, claim.job.id, *held_by(claim)):
                return True
            done = self._transition(
                conn,
                claim.job.id,
                Status.QUEUED,
                *held_by(claim),
                event={"queue_position": None, "retry_at": run_after.isoformat()},
                run_after=run_after,
                **unleased(),
                **values,
            )
            self._notify_workers(conn)
        self.wakeup.notify()
        return done

    def _cancel_if_asked(self, conn: Connection, job_id: str, *guards: ColumnElement[bool]) -> bool:
        """A job going back to the queue whose client asked to cancel it ends canceled."""
        return self._transition(
            conn,
            job_id,
            Status.CANCELED,
            *guards,
            jobs.c.cancel_requested.is_(True),
            event={},
            finished_at=self._now(),
            **unleased(),
            **error_values(CANCELED),
        )

    def maintain(self) -> None:
        """Recover jobs of dead workers and fail stuck ones. Claims do this as they go; the
        lease keeper calls it too, so it happens even when nobody is claiming."""
        now = self._now()
        if now >= self._next_recovery:
            with self._write(durable=False) as conn:
                self._maintain(conn, now)

    def _maintain(self, conn: Connection, now: datetime) -> None:
        self._next_recovery = now + RECOVERY_INTERVAL
        self._recover_expired(conn, now)
        self._fail_overdue(conn, now)

    def _fail_overdue(self, conn: Connection, now: datetime) -> None:
        """A job still generating well past the job timeout is stuck inside one step (the
        worker checks the timeout between steps): fail it, so the client hears of it. The
        worker's own late result is then refused by the guarded UPDATE."""
        if self.job_timeout_s is None:
            return
        cutoff = now - timedelta(seconds=self.job_timeout_s * 1.5)
        overdue = conn.execute(
            select(jobs.c.id)
            .where(jobs.c.status == Status.GENERATING.value, jobs.c.started_at < cutoff)
            .order_by(jobs.c.id)
            .with_for_update(skip_locked=True)
        ).scalars()
        for job_id in list(overdue):
            self._transition(
                conn,
                job_id,
                Status.FAILED,
                jobs.c.started_at < cutoff,
                event=error_event(OVERDUE),
                finished_at=now,
                **unleased(),
                **error_values(OVERDUE),
            )

    def _recover_expired(self, conn: Connection, now: datetime) -> None:
        """Jobs whose worker stopped renewing its lease: run again after a backoff, or fail
        when out of attempts. Rare, so one guarded UPDATE per job is cheap enough."""
        expired = conn.execute(
            select(jobs.c.id, jobs.c.attempts)
            .where(jobs.c.status == Status.GENERATING.value, jobs.c.lease_expires_at < now)
            .with_for_update(skip_locked=True)
        ).all()
        for job_id, attempts in expired:
            still_expired = jobs.c.lease_expires_at < now
            if self._cancel_if_asked(conn, job_id, still_expired):
                continue
            if attempts >= self.max_attempts:
                error = exhausted(attempts)
                self._transition(
                    conn,
                    job_id,
                    Status.FAILED,
                    still_expired,
                    event=error_event(error),
                    finished_at=now,
                    **unleased(),
                    **error_values(error),
                )
                continue
            delay = timedelta(seconds=backoff_s(attempts, self.retry_backoff_s))
            retry_at = now + delay
            self._transition(
                conn,
                job_id,
                Status.QUEUED,
                still_expired,
                run_after=retry_at,
                event={"queue_position": None, "retry_at": retry_at.isoformat()},
                **unleased(),
                **error_values(WORKER_LOST),
            )

    def _transition(
        self,
        conn: Connection,
        job_id: str,
        target: Status,
        *guards: ColumnElement[bool],
        event: dict[str, Any],
        from_: Status | None = None,
        stored: Sequence[ImageRecord] = (),
        **values: Any,
    ) -> bool:
        """The one guarded UPDATE behind every state change. When it happens, the job's
        ``stored`` images are recorded and the change's event appended; for a final state,
        the job's webhook is put in the outbox, its cost settled, its followers ended (or
        one of them promoted), and a fresh result kept in the cache: all in the same
        transaction."""
        sources = [from_.value] if from_ else [s.value for s in sources_of(target)]
        # A final change returns the job's row: what its cost is settled from.
        ended = (
            conn.execute(
                update(jobs)
                .where(jobs.c.id == job_id, jobs.c.status.in_(sources), *guards)
                .values(status=target.value, **values)
                .returning(*jobs.c)
            )
            .mappings()
            .first()
        )
        if ended is None:
            return False
        if stored:
            conn.execute(insert(images), [image_values(image, self._now()) for image in stored])
            blobs.referred_to(conn, [image.storage_key for image in stored])
        self._emit(conn, job_id, EVENT_OF[target], event)
        if target.is_final:
            outbox.enqueue(conn, job_id, f"job.{target.value}", self._now())
            if self.pricing is not None:
                ledger.settle_job(conn, ended, target, self.pricing, self._now())
            # A hit was answered in the transaction that made it: nobody can follow it.
            if ended["cache_key"] and ended["follows"] is None and ended["cache_status"] != "hit":
                self._share_result(conn, ended, target)
        return True

    def _emit(
        self,
        conn: Connection,
        job_id: str,
        kind: EventType,
        data: dict[str, Any],
        also_notify: str | None = None,
    ) -> None:
        events.emit(conn, job_id, kind, data, self._now(), also_notify)
        conn.info.setdefault(NEWS, []).append(job_id)

    def events_since(self, job_id: str, after_id: int = 0) -> list[events.JobEvent]:
        with self.engine.connect() as conn:
            return events.read_since(conn, job_id, after_id)

    def _refuse(self, conn: Connection, job_id: str, owner: str | None, why: str) -> None:
        query = select(jobs.c.status).where(jobs.c.id == job_id)
        if owner is not None:
            query = query.where(jobs.c.owner == owner)
        status = conn.execute(query).scalar()
        if status is None:
            raise JobNotFound(job_id=job_id)
        raise IllegalTransition(why, job_status=status)

    def _with_images(self, conn: Connection, rows: Sequence[Any]) -> list[Job]:
        # Only a completed job has images, so polls of unfinished jobs skip the query.
        ids = [row["id"] for row in rows if row["status"] == Status.COMPLETED.value]
        by_job: dict[str, list[ImageRecord]] = {row["id"]: [] for row in rows}
        if ids:
            query = select(images).where(images.c.job_id.in_(ids)).order_by(images.c.idx)
            for row in conn.execute(query).mappings():
                by_job[row["job_id"]].append(image_from_row(row))
        return [job_from_row(row, by_job[row["id"]]) for row in rows]

    @contextmanager
    def _write(self, durable: bool = True) -> Iterator[Connection]:
        """A write transaction; the jobs it emitted events for are published after commit.

        ``durable=False`` lets PostgreSQL skip the WAL flush at commit, for changes whose
        loss in a database crash is harmless because delivery is at least once: a lost
        claim or lease renewal means the job simply runs again.
        """
        with self._writer.begin() as conn:
            if not durable and self._postgres:
                conn.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
            try:
                yield conn
            finally:
                news = conn.info.pop(NEWS, [])
                audited: list[AuditEntry] = conn.info.pop(audit.AUDITED, [])
                settled = conn.info.pop(ledger.SETTLED, [])
                alerted = conn.info.pop(alerts.ALERTED, [])
        for entry in audited:
            if entry.stage != "budget":  # a budget alert is no safety decision
                metrics.count_decision(entry.stage, entry.action, entry.categories)
        for ended in settled:
            metrics.count_settled(*ended)
        for tenant, threshold in alerted:
            metrics.BUDGET_ALERTS.labels(tenant, f"{threshold:g}").inc()
        self._publish(news)

    def _publish(self, job_ids: Sequence[str]) -> None:
        """Tell this process's subscribers (the event streams) that these jobs have news."""
        for job_id in dict.fromkeys(job_ids):
            for publish in self.publishers:
                publish(job_id)

    def _notify_workers(self, conn: Connection) -> None:
        if self._postgres:
            conn.execute(text("SELECT pg_notify(:channel, '')"), {"channel": CHANNEL})
