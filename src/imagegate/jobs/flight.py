"""Single-flight and cache answers, as the store's transitions see them: a hit completes a
new job with a cached job's images, a follower waits on its leader, and a leader's end
ends its followers in the same transaction. The SQL lives in :mod:`imagegate.cache.entries`;
these are the transitions, mixed into :class:`imagegate.jobs.store.JobStore`."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, update
from sqlalchemy.sql.elements import ColumnElement

from imagegate.cache import entries
from imagegate.jobs.changes import completed_event, error_event, error_values, row_of
from imagegate.jobs.events import EventType
from imagegate.jobs.models import ErrorInfo, ImageRecord, Job
from imagegate.jobs.queue import ahead_of
from imagegate.jobs.rows import generation_meta, image_from_row, job_from_row
from imagegate.jobs.states import Status
from imagegate.jobs.tables import jobs


class SingleFlight:
    """What the store provides to these transitions."""

    cache_ttl: timedelta
    _now: Callable[[], datetime]

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
        raise NotImplementedError

    def _emit(self, conn: Connection, job_id: str, kind: EventType, data: dict[str, Any]) -> None:
        raise NotImplementedError

    def _notify_workers(self, conn: Connection) -> None:
        raise NotImplementedError

    def _answer_from_cache(self, conn: Connection, job_id: str, hit: Any, now: datetime) -> None:
        """Complete a new job with a cached job's images (new rows, the same files)."""
        self._emit(conn, job_id, EventType.QUEUED, {"queue_position": 0})
        self._complete_like(conn, job_id, hit, now, "hit", from_=Status.QUEUED)
        entries.touch(conn, hit["cache_key"], job_id, now, self.cache_ttl)

    def _follow(self, conn: Connection, job: Job, leader: str) -> None:
        conn.execute(
            update(jobs).where(jobs.c.id == job.id).values(follows=leader, cache_status="collapsed")
        )
        leading = job_from_row(row_of(conn, leader))
        position = ahead_of(conn, leading) if leading.status is Status.QUEUED else 0
        self._emit(conn, job.id, EventType.QUEUED, {"queue_position": position})

    def _share_result(self, conn: Connection, leader: Any, target: Status) -> None:
        """A leader ended: its followers end the same way (a cancel hands the work to the
        oldest of them instead), and a completed result that was generated is cached."""
        now = self._now()
        if target is Status.CANCELED:
            if entries.promote(conn, leader["id"]) is not None:
                self._notify_workers(conn)
            return
        for follower in entries.followers(conn, leader["id"]):
            if target is Status.COMPLETED:
                self._complete_like(conn, follower, leader, now, "collapsed")
            else:
                error = ErrorInfo(
                    leader["error_code"], leader["error_message"], bool(leader["error_retryable"])
                )
                self._transition(
                    conn, follower, Status.FAILED, jobs.c.follows == leader["id"],
                    from_=Status.QUEUED, event=error_event(error), finished_at=now,
                    **error_values(error),
                )  # fmt: skip
        if target is Status.COMPLETED and leader["cache_store"]:
            entries.remember(conn, leader, now, self.cache_ttl)

    def _complete_like(
        self,
        conn: Connection,
        job_id: str,
        source: Any,
        now: datetime,
        how: str,
        from_: Status = Status.QUEUED,
    ) -> None:
        """Complete ``job_id`` with the images ``source`` made (never re-encoded, never
        copied: new rows naming the same stored files)."""
        meta = generation_meta(source)
        assert meta is not None, "a completed job has run"
        shared = [
            replace(image_from_row(im), id=str(uuid.uuid4()), job_id=job_id)
            for im in entries.image_rows(conn, source["id"])
        ]
        self._transition(
            conn, job_id, Status.COMPLETED, from_=from_, stored=shared,
            event=completed_event(shared, meta) | {"cache": how}, finished_at=now,
            model=meta.model, generation_time_ms=meta.generation_time_ms,
            batch_size=meta.batch_size, progress_step=source["steps"],
            progress_total=source["steps"], cache_status=how, **error_values(None),
        )  # fmt: skip
