"""A tenant's images, newest first, with the job that made each (for a gallery)."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from sqlalchemy import Connection, and_, or_, select

from imagegate.errors import InvalidField
from imagegate.jobs.fairness import scoped_to
from imagegate.jobs.models import ImageRecord, Job
from imagegate.jobs.rows import image_from_row, job_from_row
from imagegate.jobs.states import Status
from imagegate.jobs.tables import images, jobs


def page(
    conn: Connection, owner: str, user: str | None, limit: int, cursor: str | None
) -> tuple[list[tuple[ImageRecord, Job]], str | None]:
    """Images of completed jobs, newest job first (then by index); and the next cursor."""
    query = (
        select(jobs, *(column.label(f"image_{column.name}") for column in images.c))
        .join(jobs, jobs.c.id == images.c.job_id)
        .where(*scoped_to(owner, user), jobs.c.status == Status.COMPLETED.value)
    )
    if cursor is not None:
        job_id, idx = _decode(cursor)
        job = conn.execute(select(jobs.c.created_at).where(jobs.c.id == job_id)).first()
        if job is None:
            raise InvalidField("cursor", "invalid_cursor", "The cursor is not valid.")
        query = query.where(
            or_(
                jobs.c.created_at < job.created_at,
                and_(jobs.c.created_at == job.created_at, jobs.c.id < job_id),
                and_(jobs.c.id == job_id, images.c.idx > idx),
            )
        )
    query = query.order_by(jobs.c.created_at.desc(), jobs.c.id.desc(), images.c.idx).limit(
        limit + 1
    )
    rows = conn.execute(query).mappings().all()
    found = [(_image(row), job_from_row(row)) for row in rows[:limit]]
    more = len(rows) > limit
    return found, _encode(found[-1][0]) if more and found else None


def _image(row: Any) -> ImageRecord:
    return image_from_row({column.name: row[f"image_{column.name}"] for column in images.c})


def _encode(image: ImageRecord) -> str:
    return base64.urlsafe_b64encode(f"{image.job_id}|{image.index}".encode()).decode().rstrip("=")


def _decode(cursor: str) -> tuple[str, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        job_id, idx = raw.rsplit("|", 1)
        return job_id, int(idx)
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise InvalidField("cursor", "invalid_cursor", "The cursor is not valid.") from exc
