"""The reads that every poll makes, as statements built once, and a glance at a job.

A status poll reads one job by id (scoped to its tenant, and to an end user for a browser
token), with its images joined in the same statement (on PostgreSQL a second statement
was a tenth of the poll's CPU, most of it in the driver). Building
``select(...).where(...)`` anew for each poll costs more than running it on SQLite (its
construction and cache key were half of ``JobStore.get``); these are built at import,
compiled once, and run on the driver's cursor (``jobs/driver_read.py``).

The original ``GET /status/{id}`` shows only the state, a failure's message and the first
image's link: :func:`glance` reads just those columns, not the ~60 of a whole job (on
SQLite, parsing its timestamps and JSON was most of the rest), in one statement.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, Select, and_, bindparam, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.elements import ColumnElement

from imagegate.jobs import queue
from imagegate.jobs.driver_read import DriverRead
from imagegate.jobs.models import ImageRecord
from imagegate.jobs.rows import image_from_row
from imagegate.jobs.states import Status
from imagegate.jobs.tables import images, jobs


def _by_id(
    owned: bool,
    by_user: bool,
    columns: tuple[ColumnElement[object], ...] = (),
    placed: bool = False,
) -> Select[*tuple[Any, ...]]:
    query: Select[*tuple[Any, ...]]
    if columns:  # a glance: with the first image, if any, in the same statement
        query = select(*columns).select_from(jobs.outerjoin(images, _FIRST))
    else:  # the whole job, a row per image (one, without image), in image order
        place = queue.PLACE_COLUMNS if placed else ()  # while queued, its place
        query = select(jobs, *_IMAGE_COLUMNS, *place)
        query = query.select_from(jobs.outerjoin(images, _OF_JOB)).order_by(images.c.idx)
    query = query.where(jobs.c.id == bindparam("id"))
    if owned:
        query = query.where(jobs.c.owner == bindparam("owner"))
    if by_user:
        query = query.where(jobs.c.end_user == bindparam("user"))
    return query


_OF_JOB = images.c.job_id == jobs.c.id
_FIRST = and_(_OF_JOB, images.c.idx == 0)
_IMAGE_PREFIX = "image_"
_IMAGE_COLUMNS = tuple(column.label(_IMAGE_PREFIX + column.key) for column in images.c)
_SHAPES = [(owned, by_user) for owned in (False, True) for by_user in (False, True)]
_JOB = {shape: DriverRead(_by_id(*shape)) for shape in _SHAPES}
_PLACED = {shape: DriverRead(_by_id(*shape, placed=True)) for shape in _SHAPES}
_GLANCED = (
    jobs.c.status,
    jobs.c.error_code,
    jobs.c.error_message,
    images.c.id,
    images.c.storage_key,
)
_GLANCE = {shape: DriverRead(_by_id(*shape, columns=_GLANCED)) for shape in _SHAPES}


T = TypeVar("T")


def read(engine: Engine, reading: Callable[[Connection], T]) -> T:
    """``reading`` on a connection of the read engine; once more on a new connection if
    the first was found dropped (the server restarted since it was pooled)."""
    try:
        with engine.connect() as conn:
            return reading(conn)
    except DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
    with engine.connect() as conn:
        return reading(conn)


@dataclass(frozen=True, slots=True)
class Glance:
    """What a status poll shows of a job."""

    status: Status
    error: str | None  # a failure's message
    first_image: tuple[str, str] | None  # a completed job's first image: (id, storage key)


def glance(engine: Engine, job_id: str, owner: str | None, user: str | None) -> Glance | None:
    """The job's state, its failure's message and its first image; None if it is not
    there (or not theirs). One statement, on the driver's cursor (``DriverRead``)."""
    values = {"id": job_id, "owner": owner, "user": user}
    row = _GLANCE[(owner is not None, user is not None)].first(engine, values)
    if row is None:
        return None
    status, code, message, image_id, image_key = row
    status = Status(status)
    # Only a completed job shows its image (one withheld for review has one in quarantine).
    first = (image_id, image_key) if status is Status.COMPLETED and image_id else None
    return Glance(status, (message or "") if code is not None else None, first)


def job_row(
    engine: Engine, job_id: str, owner: str | None, user: str | None, placed: bool = False
) -> tuple[dict[str, Any], list[ImageRecord]] | None:
    """The job's row and its images; with ``owner`` (and ``user``), only if it is theirs.
    One statement: the images joined, as a row each; with ``placed``, the row also holds
    ``queue.PLACE_COLUMNS``, the counts behind a queued job's place."""
    query = (_PLACED if placed else _JOB)[(owner is not None, user is not None)]
    rows = query.mappings(engine, {"id": job_id, "owner": owner, "user": user})
    if not rows:
        return None
    cut = len(_IMAGE_PREFIX)
    found = [
        image_from_row(
            {key[cut:]: value for key, value in row.items() if key.startswith(_IMAGE_PREFIX)}
        )
        for row in rows
        if row[_IMAGE_PREFIX + "id"] is not None
    ]
    return rows[0], found
