"""The values behind each job change: column values, event payloads, fixed errors, and
the guards that name a lease. Pure functions; :mod:`imagegate.jobs.store` runs the SQL."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.sql.elements import ColumnElement

from imagegate.jobs.audit import AuditEntry
from imagegate.jobs.events import EventType
from imagegate.jobs.models import Claim, ErrorInfo, GenerationMeta, ImageRecord, JobSpec
from imagegate.jobs.states import Status
from imagegate.jobs.tables import jobs

CANCELED = ErrorInfo("canceled", "The job was canceled.")
NEWS = "imagegate_news"  # Connection.info key: jobs with new events in this transaction
EVENT_OF = {
    Status.PENDING_REVIEW: EventType.PENDING_REVIEW,
    Status.QUEUED: EventType.QUEUED,
    Status.GENERATING: EventType.STARTED,
    Status.COMPLETED: EventType.COMPLETED,
    Status.FAILED: EventType.FAILED,
    Status.CANCELED: EventType.CANCELED,
}
# How often a claiming store looks for jobs whose lease expired (a dead worker's).
RECOVERY_INTERVAL = timedelta(seconds=1)
REJECTED = ErrorInfo("rejected_by_review", "A reviewer rejected this job.")
OVERDUE = ErrorInfo("timeout", "The job ran far past the job timeout and was stopped.", True)
WORKER_LOST = ErrorInfo("worker_lost", "The worker running this job stopped answering.", True)


def held_by(claim: Claim) -> tuple[ColumnElement[bool], ...]:
    return (
        jobs.c.id == claim.job.id,
        jobs.c.lease_token == claim.token,
        jobs.c.status == Status.GENERATING.value,
    )


def compatible_with(spec: JobSpec) -> tuple[ColumnElement[bool], ...]:
    return (
        jobs.c.width == spec.width,
        jobs.c.height == spec.height,
        jobs.c.steps == spec.steps,
        jobs.c.guidance == spec.guidance,
    )


def unleased() -> dict[str, Any]:
    return {"lease_token": None, "lease_expires_at": None}


def error_values(error: ErrorInfo | None) -> dict[str, Any]:
    return {
        "error_code": error and error.code,
        "error_message": error and error.message,
        "error_retryable": error and error.retryable,
    }


def exhausted(attempts: int) -> ErrorInfo:
    return ErrorInfo(
        "retries_exhausted",
        f"The job's worker was lost on each of its {attempts} attempts; giving up.",
        retryable=True,
    )


# Run in the transaction that records a job, after its row is written (the job's id,
# now): caps and budget reservations, which refuse the job by raising.
Admit = Callable[[Connection, str, datetime], None]


@dataclass(frozen=True, slots=True)
class Intake:
    """What the intake checks decided about a new job, and whose it is."""

    held: bool = False  # the job waits for a reviewer (pending_review)
    moderation: dict[str, Any] | None = None
    audit: AuditEntry | None = None
    client_ip: str | None = None
    identity: dict[str, Any] = field(default_factory=dict)  # key_id, end_user, token_id, cost
    admit: Admit | None = None


def held_event(intake: Intake) -> dict[str, Any]:
    entry = intake.audit
    return {
        "categories": list(entry.categories) if entry else [],
        "reasons": list(entry.reasons) if entry else [],
    }


def row_of(conn: Connection, job_id: str) -> Any:
    return conn.execute(select(jobs).where(jobs.c.id == job_id)).mappings().one()


def error_event(error: ErrorInfo) -> dict[str, Any]:
    return {"code": error.code, "message": error.message, "retryable": error.retryable}


def completed_event(stored: Sequence[ImageRecord], meta: GenerationMeta) -> dict[str, Any]:
    return {
        "images": [
            {"id": im.id, "width": im.width, "height": im.height, "key": im.storage_key}
            for im in stored
        ],
        "metadata": {
            "seed": meta.seed,
            "model": meta.model,
            "generation_time_ms": meta.generation_time_ms,
            "batch_size": meta.batch_size,
        },
    }


def image_values(image: ImageRecord, now: datetime) -> dict[str, Any]:
    return {
        "id": image.id,
        "job_id": image.job_id,
        "idx": image.index,
        "storage_key": image.storage_key,
        "width": image.width,
        "height": image.height,
        "size_bytes": image.size_bytes,
        "created_at": now,
        "content_type": image.content_type,
        "sha256": image.sha256,
        "placeholder": image.placeholder,
    }
