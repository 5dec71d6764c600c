"""The reads every poll makes (issue 13): what they send to the database, that a
connection the server dropped costs no error, and a queued job's place in a long queue.

A status poll is one statement on each database, run on the driver's cursor: no BEGIN
or ROLLBACK on SQLite's side, and on PostgreSQL no checkout ping and no transaction,
because the read engine is in autocommit. A pooled connection that PostgreSQL terminated
fails the next read, which is retried once on a new connection.

A place is counted exactly up to ``EXACT_UP_TO`` jobs ahead and estimated further back
(from the arrival rate of the first ones in line); what a waiting job's clients are shown
never rises, even when a job of a higher priority goes ahead of it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, bindparam, event, insert, select, text

from imagegate.jobs.database import create_db_engine, create_read_engine, upgrade
from imagegate.jobs.driver_read import DriverRead
from imagegate.jobs.models import GenerationMeta, ImageRecord, QueueInfo
from imagegate.jobs.queue import _AHEAD as queue_statement
from imagegate.jobs.queue import EXACT_UP_TO, PLACE_COLUMNS, Shown, read_ahead_of
from imagegate.jobs.states import Status
from imagegate.jobs.store import JobStore
from imagegate.jobs.tables import images, jobs
from imagegate.settings import Settings
from tests.helpers import spec

OWNER = "alice"


@pytest.fixture
def stores(settings: Settings) -> Iterator[tuple[JobStore, Engine]]:
    engine = create_db_engine(settings)
    upgrade(engine)
    reader = create_read_engine(settings, engine)
    yield JobStore(engine, reader=reader), reader
    reader.dispose()
    engine.dispose()


def _statements(engine: Engine) -> list[str]:
    """Every statement the engine's connections send, from now on (BEGIN and pings too)."""
    sent: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        sent.append(statement.split()[0].upper())

    event.listen(engine, "before_cursor_execute", record)

    def reset(dbapi_connection: Any, *_: Any) -> None:
        if _in_transaction(dbapi_connection):  # else the driver's rollback sends nothing
            sent.append("ROLLBACK")

    # The ROLLBACK at checkin, and the ping at checkout, go around that event.
    event.listen(engine.pool, "reset", reset)
    original = engine.dialect.do_ping

    def ping(dbapi_connection: Any) -> bool:
        sent.append("PING")
        return bool(original(dbapi_connection))

    engine.dialect.do_ping = ping  # type: ignore[method-assign]
    return sent


def _in_transaction(dbapi_connection: Any) -> bool:
    if hasattr(dbapi_connection, "in_transaction"):  # sqlite3
        return bool(dbapi_connection.in_transaction)
    from psycopg.pq import TransactionStatus

    return bool(dbapi_connection.info.transaction_status != TransactionStatus.IDLE)


def _driver_statements(engine: Engine) -> list[str]:
    """Every statement the driver itself sends on the engine's connections, from their next
    checkout on: what runs past SQLAlchemy's execution (``DriverRead``) too."""
    sent: list[str] = []

    def record(statement: str) -> None:
        sent.append(statement.split()[0].upper())

    def spy(dbapi_connection: Any, *_: Any) -> None:
        if hasattr(dbapi_connection, "set_trace_callback"):  # sqlite3: all it runs
            dbapi_connection.set_trace_callback(record)
            return
        import psycopg

        class Recorded(psycopg.Cursor[Any]):
            def execute(self, query: Any, *args: Any, **kwargs: Any) -> Any:
                record(str(query))
                return super().execute(query, *args, **kwargs)

        dbapi_connection.cursor_factory = Recorded

    event.listen(engine.pool, "checkout", spy)
    return sent


def test_a_status_poll_is_one_statement(stores: tuple[JobStore, Engine]) -> None:
    store, reader = stores
    job = store.submit(spec(), OWNER)
    store.get(job.id, OWNER)  # the pool holds a connection now
    sent, driven = _statements(reader), _driver_statements(reader)
    assert store.glance(job.id, OWNER).status is Status.QUEUED
    assert store.get(job.id, OWNER).status is Status.QUEUED
    assert driven == ["SELECT", "SELECT"], driven  # the glance, then the job, on the driver
    assert sent == [], sent  # nothing more: no BEGIN, ROLLBACK or ping
    (claim,) = store.claim(lease_s=30)
    image = ImageRecord(str(uuid.uuid4()), job.id, 0, f"k/{job.id}/0", 64, 64, 10)
    second = ImageRecord(str(uuid.uuid4()), job.id, 1, f"k/{job.id}/1", 64, 64, 12)
    store.complete(claim, [second, image], GenerationMeta(1, "sketch-v1", 5))
    driven.clear()
    seen = store.glance(job.id, OWNER)
    assert (seen.status, seen.first_image) == (Status.COMPLETED, (image.id, image.storage_key))
    assert driven == ["SELECT"], driven  # the job and its first image, joined
    driven.clear()
    assert list(store.get(job.id, OWNER).images) == [image, second]  # in their order
    assert driven == ["SELECT"], driven  # the job and its images, joined
    waiting = store.submit(spec(), OWNER)
    store.queue_info(waiting, 60)  # reads the ETA's inputs (once a second)
    driven.clear(), sent.clear()
    place = store.queue_info(store.get(waiting.id, OWNER), 60)
    assert place is not None and place.position == 0
    assert driven == ["SELECT", "SELECT"] and sent == [], (driven, sent)  # the job, its place
    driven.clear()
    polled, place = store.poll(waiting.id, OWNER, None, 60)  # GET /v1/jobs/{id}
    assert (polled.status, place) == (Status.QUEUED, QueueInfo(0, None)), place
    assert driven == ["SELECT"] and sent == [], (driven, sent)  # the job with its place
    driven.clear()
    assert store.poll(job.id, OWNER, None, 60)[1] is None  # finished: no place
    assert driven == ["SELECT"], driven


def test_the_driver_reads_what_sqlalchemy_reads(stores: tuple[JobStore, Engine]) -> None:
    """Rows read on the driver's cursor equal ``Connection.execute``'s, value and type:
    timestamps, JSON, booleans, floats, and the aggregates of a place in the queue."""
    store, reader = stores
    done = store.submit(spec(), OWNER)
    (claim,) = store.claim(lease_s=30)
    image = ImageRecord(
        str(uuid.uuid4()), done.id, 0, "k/0", 64, 64, 10, placeholder={"thumbhash": "abc"}
    )
    store.complete(claim, [image], GenerationMeta(1, "sketch-v1", 5))
    store.submit(spec(), OWNER)
    last = store.submit(spec(), OWNER)
    whole_job = select(jobs).where(jobs.c.id == bindparam("id"))
    place = {"priority": 0, "created": last.created_at, "id": last.id}
    for statement, values in [
        (whole_job, {"id": done.id}),
        (select(images).where(images.c.job_id == bindparam("job")), {"job": done.id}),
        (queue_statement, place),
        (select(jobs.c.id, *PLACE_COLUMNS).where(jobs.c.id == bindparam("id")), {"id": last.id}),
    ]:
        with reader.connect() as conn:
            expected = [tuple(row) for row in conn.execute(statement, values)]
        found = DriverRead(statement).all(reader, values)
        assert found == expected
        assert [list(map(type, row)) for row in found] == [list(map(type, row)) for row in expected]
    assert found[0][2] == 1  # one older job ahead of the last, counted in its own row


@pytest.mark.postgres
def test_a_connection_the_server_dropped_is_replaced_without_an_error(
    stores: tuple[JobStore, Engine], settings: Settings
) -> None:
    if not settings.is_postgres:
        pytest.skip("PostgreSQL terminates connections; SQLite has none to drop")
    store, reader = stores
    job = store.submit(spec(), OWNER)
    with reader.connect() as conn:
        pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
    with store.engine.connect() as admin:
        assert admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar()
    assert store.get(job.id, OWNER).id == job.id  # the dead connection, then a new one
    with reader.connect() as conn:
        assert conn.execute(text("SELECT pg_backend_pid()")).scalar_one() != pid
    # The glance, on the driver's cursor, replaces its dropped connection the same way.
    pids = {}
    for _ in range(reader.pool.size()):  # type: ignore[attr-defined]
        with reader.connect() as conn:
            pids[conn.execute(text("SELECT pg_backend_pid()")).scalar_one()] = True
    with store.engine.connect() as admin:
        for pid in pids:
            admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    assert store.glance(job.id, OWNER).status is Status.QUEUED


def _queue_of(store: JobStore, count: int, start: datetime, every: timedelta) -> None:
    """``count`` queued jobs, arriving one every ``every`` from ``start`` (bulk, by SQL)."""
    rows = [
        {
            "id": str(uuid.uuid4()), "owner": OWNER, "status": "queued", "prompt": "p",
            "full_prompt": "p", "width": 64, "height": 64, "steps": 2, "guidance": 7.5,
            "seed": index, "n": 1, "priority": 0, "attempts": 0,
            "created_at": start + index * every, "run_after": start + index * every,
        }
        for index in range(count)
    ]  # fmt: skip
    with store.engine.begin() as conn:
        conn.execute(insert(jobs), rows)


def test_a_place_far_back_is_estimated_from_the_arrival_rate(
    stores: tuple[JobStore, Engine],
) -> None:
    store, _ = stores
    start = datetime.now(UTC) - timedelta(seconds=3 * EXACT_UP_TO)  # up to now
    _queue_of(store, 3 * EXACT_UP_TO, start, timedelta(seconds=1))
    far = store.submit(spec(), OWNER)  # behind all of them: 3,000 ahead
    near = store.get(_nth_queued(store, 10))
    assert store.queue_info(near, 60).position == 10  # exact
    assert abs(store.queue_info(far, 60).position - 3 * EXACT_UP_TO) <= 0.05 * 3 * EXACT_UP_TO
    # Arrivals at an even rate: exact to the job, though only the first EXACT_UP_TO were read.
    even = store.get(_nth_queued(store, 2 * EXACT_UP_TO + EXACT_UP_TO // 2))
    assert store.queue_info(even, 60).position == 2 * EXACT_UP_TO + EXACT_UP_TO // 2


def test_a_poll_reads_the_place_that_queue_info_reads(stores: tuple[JobStore, Engine]) -> None:
    """The place a poll reads with the job (its row's correlated counts) is the one
    ``queue_info`` reads by itself: exact near the front, estimated further back, behind a
    job of a higher priority, and for a job of that priority."""
    store, reader = stores
    start = datetime.now(UTC) - timedelta(seconds=3 * EXACT_UP_TO)
    _queue_of(store, 3 * EXACT_UP_TO, start, timedelta(seconds=1))
    urgent = store.submit(spec(priority=9), OWNER)
    late = store.submit(spec(), OWNER)
    front, middle = _nth_queued(store, 5), _nth_queued(store, 2 * EXACT_UP_TO + 7)
    for job_id in (front, middle, urgent.id, late.id):
        job = store.get(job_id)
        polled = store.poll(job_id, None, None, 60)[1]
        assert polled is not None and polled.position == read_ahead_of(reader, job), job_id
    assert store.poll(urgent.id, None, None, 60)[1] == QueueInfo(0, None)
    assert store.poll(front, OWNER, None, 60)[1] == QueueInfo(6, None)  # behind urgent too
    assert abs(read_ahead_of(reader, late) - 3 * EXACT_UP_TO - 1) <= 0.05 * 3 * EXACT_UP_TO


def _nth_queued(store: JobStore, index: int) -> str:
    with store.engine.connect() as conn:
        return str(
            conn.execute(
                text(
                    "SELECT id FROM jobs WHERE status = 'queued' "
                    "ORDER BY created_at, id LIMIT 1 OFFSET :n"
                ),
                {"n": index},
            ).scalar_one()
        )


def test_what_a_waiting_client_is_shown_never_rises(stores: tuple[JobStore, Engine]) -> None:
    store, _ = stores
    first, second = store.submit(spec(), OWNER), store.submit(spec(), OWNER)
    assert store.queue_info(second, 60).position == 1
    store.submit(spec(priority=9), OWNER)  # goes ahead of both
    assert store.queue_info(first, 60).position == 1  # first asked now: the truth
    assert store.queue_info(second, 60).position == 1  # shown 1 before: never 2
    shown = Shown()
    assert shown.monotone("j", QueueInfo(5, 50.0)) == QueueInfo(5, 50.0)
    assert shown.monotone("j", QueueInfo(6, 40.0)) == QueueInfo(5, 40.0)
    assert shown.monotone("j", QueueInfo(4, 60.0)) == QueueInfo(4, 40.0)
