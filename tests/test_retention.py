"""Storage stays bounded (issue 10, part 5): the sweeper deletes what is past its time,
and a content-addressed file only when nothing refers to it. Jobs are made through the
real API; the sweeper runs against the same database and files, with its clock moved on.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, func, select, update

from imagegate.jobs import audit, blobs
from imagegate.jobs.audit import AuditEntry
from imagegate.jobs.database import WRITE, create_db_engine
from imagegate.jobs.rows import utc
from imagegate.jobs.tables import audit_log, cache_entries, idempotency_keys, images, job_events
from imagegate.jobs.tables import blobs as blobs_table
from imagegate.jobs.tables import jobs as jobs_table
from imagegate.retention import Policy, Sweeper
from imagegate.settings import Settings
from imagegate.storage import open_storage
from imagegate.storage.keys import job_prefix
from tests.conftest import SettingsFactory
from tests.helpers import eventually
from tests.soak import soak
from tests.test_cache import ADMIN, ADMIN_TOKEN, new_key
from tests.test_realtime import read_sse

ServerFactory = Callable[..., httpx.Client]
SEEDED = {"prompt": "a lighthouse at dusk", "seed": 7, "width": 64, "height": 64, "steps": 4}


@pytest.fixture
def quiet(make_settings: SettingsFactory) -> Settings:
    """A server whose own sweeper stays off: the tests sweep, with a clock of their own."""
    return make_settings(sweep_interval_s=0)


@pytest.fixture
def engine(quiet: Settings) -> Iterator[Engine]:
    made = create_db_engine(quiet)
    yield made
    made.dispose()


def sweeper(settings: Settings, engine: Engine, at: datetime, **policy: Any) -> Sweeper:
    return Sweeper(engine, open_storage(settings), Policy(**policy), clock=lambda: at)


def made(api: httpx.Client, body: dict[str, Any], **headers: str) -> dict[str, Any]:
    response = api.post("/v1/jobs", json=body, headers=headers)
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]

    def ended() -> dict[str, Any] | None:
        job: dict[str, Any] = api.get(f"/v1/jobs/{job_id}", headers=headers).json()
        return job if job["status"] in ("completed", "failed", "canceled") else None

    return eventually(ended)


def files(settings: Settings) -> set[str]:
    root = settings.data_dir / "images"
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def count(engine: Engine, table: Any, *where: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one())


def age(engine: Engine, job_id: str, by: timedelta) -> None:
    """Make the job look as if it had ended ``by`` ago."""
    with engine.execution_options(**WRITE).begin() as conn:
        ended = conn.execute(
            select(jobs_table.c.finished_at).where(jobs_table.c.id == job_id)
        ).scalar_one()
        conn.execute(
            update(jobs_table).where(jobs_table.c.id == job_id).values(finished_at=ended - by)
        )


def test_a_shared_file_goes_with_the_last_job_that_names_it(
    server_factory: ServerFactory, quiet: Settings, engine: Engine
) -> None:
    api = server_factory(quiet)
    first = made(api, SEEDED)
    hit = made(api, SEEDED)  # a cache hit: the same file, no copy
    again = made(api, SEEDED)
    assert hit["metadata"]["cache"] == again["metadata"]["cache"] == "hit"
    key = blob_of(engine, first["id"])
    assert blob_of(engine, again["id"]) == key == blob_of(engine, hit["id"])
    assert files(quiet) == {key}

    age(engine, first["id"], timedelta(days=100))
    swept = sweeper(quiet, engine, datetime.now(UTC)).sweep()
    assert (swept.jobs, swept.files) == (1, 0)  # two hits still name the file
    assert api.get(f"/v1/jobs/{first['id']}").status_code == 404
    assert files(quiet) == {key}
    assert api.get(hit["images"][0]["url"]).status_code == 200

    for job in (again, hit):
        age(engine, job["id"], timedelta(days=100))
    swept = sweeper(quiet, engine, datetime.now(UTC)).sweep()
    assert (swept.jobs, swept.files) == (2, 1)
    assert files(quiet) == set()
    assert count(engine, cache_entries) == 0  # the entry went with the job it answered with


def blob_of(engine: Engine, job_id: str) -> str:
    with engine.connect() as conn:
        key: str = conn.execute(
            select(images.c.storage_key).where(images.c.job_id == job_id)
        ).scalar_one()
    assert key.startswith("blobs/")
    return key


def test_a_tenant_keeps_its_jobs_as_long_as_its_own_retention_says(
    server_factory: ServerFactory, make_settings: SettingsFactory, engine: Engine
) -> None:
    settings = make_settings(sweep_interval_s=0, auth="required", admin_token=ADMIN_TOKEN)
    api = server_factory(settings)
    acme, brief = new_key(api, "acme"), new_key(api, "brief")
    put = api.put("/v1/admin/tenants/brief", json={"retention_days": 7}, headers=ADMIN)
    assert put.status_code == 200 and put.json()["retention_days"] == 7
    kept = made(api, {"prompt": "a harbour"}, **acme)
    gone = made(api, {"prompt": "a harbour"}, **brief)
    for job in (kept, gone):
        age(engine, job["id"], timedelta(days=10))
    swept = sweeper(settings, engine, datetime.now(UTC)).sweep()
    assert swept.jobs == 1
    assert api.get(f"/v1/jobs/{kept['id']}", headers=acme).status_code == 200
    assert api.get(f"/v1/jobs/{gone['id']}", headers=brief).status_code == 404
    refused = api.put("/v1/admin/tenants/brief", json={"retention_days": 0}, headers=ADMIN)
    assert (refused.status_code, refused.json()["field"]) == (422, "retention_days")


def test_old_events_go_but_the_final_one_and_a_late_stream_still_ends(
    server_factory: ServerFactory, quiet: Settings, engine: Engine
) -> None:
    api = server_factory(quiet)
    job = made(api, {"prompt": "a harbour"})
    assert count(engine, job_events, job_events.c.job_id == job["id"]) >= 3
    later = datetime.now(UTC) + timedelta(hours=25)
    assert sweeper(quiet, engine, later).sweep().events >= 2
    with engine.connect() as conn:
        left = list(conn.execute(select(job_events.c.type).where(job_events.c.job_id == job["id"])))
    assert [row.type for row in left] == ["completed"]
    streamed = read_sse(api, f"/v1/jobs/{job['id']}/events")
    assert [event.get("event") for event in streamed if "comment" not in event] == ["completed"]
    assert api.get(f"/v1/jobs/{job['id']}").json()["status"] == "completed"
    assert sweeper(quiet, engine, later).sweep().events == 0  # nothing swept twice


def test_a_stream_resumed_after_the_final_event_ends_at_once(
    server_factory: ServerFactory, quiet: Settings
) -> None:
    api = server_factory(quiet)
    job = made(api, {"prompt": "a harbour"})
    events = [e for e in read_sse(api, f"/v1/jobs/{job['id']}/events") if "event" in e]
    assert events[-1]["event"] == "completed"
    resumed = api.get(
        f"/v1/jobs/{job['id']}/events", headers={"Last-Event-ID": events[-1]["id"]}, timeout=5
    )  # before the fix, this stream stayed open with keep-alives until the timeout
    assert resumed.status_code == 200 and "event:" not in resumed.text


def test_previews_and_withheld_images_go_after_their_grace(
    server_factory: ServerFactory, make_settings: SettingsFactory, engine: Engine
) -> None:
    settings = make_settings(sweep_interval_s=0, preview_every=1, sketch_delay_ms=200)
    api = server_factory(settings)
    job = made(api, {"prompt": "a harbour", "steps": 4})
    previews = {f for f in files(settings) if f.startswith("previews/")}
    assert previews, "the sketch backend wrote previews"
    withheld = job_prefix("quarantine", job["id"]) + "0.png"
    open_storage(settings).put(withheld, b"held")  # as the output gate keeps one
    with engine.execution_options(**WRITE).begin() as conn:
        conn.execute(
            update(jobs_table).where(jobs_table.c.id == job["id"]).values(quarantined=True)
        )
    soon = datetime.now(UTC) + timedelta(minutes=30)
    assert sweeper(settings, engine, soon).sweep().previews == 0  # within the hour's grace
    later = datetime.now(UTC) + timedelta(minutes=61)
    swept = sweeper(settings, engine, later).sweep()
    assert (swept.previews, swept.quarantined) == (1, 0)
    assert not any(f.startswith("previews/") for f in files(settings))
    month = datetime.now(UTC) + timedelta(days=31)
    assert sweeper(settings, engine, month).sweep().quarantined == 1
    assert not any(f.startswith("quarantine/") for f in files(settings))
    assert api.get(f"/v1/jobs/{job['id']}").json()["status"] == "completed"  # the job stays


def test_expired_cache_entries_and_idempotency_keys_go(
    server_factory: ServerFactory, quiet: Settings, engine: Engine
) -> None:
    api = server_factory(quiet)
    made(api, SEEDED, **{"Idempotency-Key": "retry-1"})
    assert count(engine, cache_entries) == count(engine, idempotency_keys) == 1
    tomorrow = datetime.now(UTC) + timedelta(days=2)
    swept = sweeper(quiet, engine, tomorrow).sweep()
    assert (swept.cache_entries, swept.idempotency_keys) == (0, 1)  # a key lives 24 hours
    swept = sweeper(quiet, engine, datetime.now(UTC) + timedelta(days=31)).sweep()
    assert swept.cache_entries == 1 and count(engine, cache_entries) == 0


def test_an_orphaned_file_goes_after_the_grace_and_a_pending_one_stays(
    quiet: Settings, engine: Engine
) -> None:
    from imagegate.jobs.database import upgrade

    upgrade(engine)
    storage = open_storage(quiet)
    now = datetime.now(UTC)
    for key, written in (("blobs/aa/old.png", now - timedelta(hours=2)), ("blobs/bb/new.png", now)):
        with engine.execution_options(**WRITE).begin() as conn:
            blobs.pending(conn, key, 4, written)
        storage.put(key, b"data")
    swept = sweeper(quiet, engine, now).sweep()
    assert swept.orphan_files == 1
    assert files(quiet) == {"blobs/bb/new.png"}  # its job may record it any moment


def test_a_note_waits_for_the_keys_lock_and_a_second_note_refreshes_the_first(
    quiet: Settings, engine: Engine
) -> None:
    """The writer's note and the sweeper's check meet at the key's lock (on PostgreSQL the
    note takes it inside its one statement); noting a key again moves its time."""
    import threading

    from imagegate.jobs.database import lock_for_transaction, upgrade

    upgrade(engine)
    key, first = "blobs/cc/shared.png", datetime.now(UTC) - timedelta(hours=1)
    writer = engine.execution_options(**WRITE)
    with writer.begin() as conn:
        blobs.pending(conn, key, 4, first)
    noted = threading.Event()

    def note_again() -> None:
        with writer.begin() as conn:
            blobs.pending(conn, key, 8, first + timedelta(minutes=30))
        noted.set()

    with writer.begin() as sweeping:  # as the sweeper holds the key while it decides
        lock_for_transaction(sweeping, f"blob:{key}")
        thread = threading.Thread(target=note_again)
        thread.start()
        if engine.dialect.name == "postgresql":  # SQLite's writers wait on the database
            assert not noted.wait(0.5), "the note did not wait for the key's lock"
    thread.join(30)
    assert noted.is_set()
    with engine.connect() as conn:
        row = conn.execute(select(blobs_table.c.size_bytes, blobs_table.c.written_at)).one()
    assert row.size_bytes == 8 and utc(row.written_at) == first + timedelta(minutes=30)


def test_the_audit_record_outlives_the_job(
    server_factory: ServerFactory, quiet: Settings, engine: Engine
) -> None:
    api = server_factory(quiet)
    job = made(api, {"prompt": "a harbour"})
    entry = AuditEntry("local", "a harbour", "a harbour", "output", "block", ("sexual",))
    with engine.execution_options(
        **WRITE
    ).begin() as conn:  # as the output gate records a withheld image
        audit.record(conn, entry, datetime.now(UTC), job["id"])
    age(engine, job["id"], timedelta(days=100))
    assert sweeper(quiet, engine, datetime.now(UTC)).sweep().jobs == 1
    assert count(engine, audit_log, audit_log.c.job_id == job["id"]) == 1


def test_imagegate_gc_counts_then_deletes(
    server_factory: ServerFactory, quiet: Settings, engine: Engine
) -> None:
    api = server_factory(quiet)
    job = made(api, {"prompt": "a harbour"})
    age(engine, job["id"], timedelta(days=100))
    env = {
        "IMAGEGATE_DATABASE_URL": quiet.database_url,
        "IMAGEGATE_DATA_DIR": str(quiet.data_dir),
        "IMAGEGATE_SAFETY_SEMANTIC": "false",
    }
    cli = [sys.executable, "-m", "imagegate", "gc"]
    dry = subprocess.run([*cli, "--dry-run"], env=env, capture_output=True, text=True, timeout=120)
    assert dry.returncode == 0, dry.stderr
    assert "would delete" in dry.stdout and count(engine, jobs_table) == 1
    done = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert count(engine, jobs_table) == 0 and files(quiet) == set()
    assert "jobs" in done.stdout


@pytest.mark.slow
def test_rows_and_files_level_off_under_a_steady_load(database_url: str, tmp_path: Path) -> None:
    """Retention of 6 s, a sweep a second, 10 jobs a second for 36 s: what is kept stops
    growing once the first jobs expire (the full figures: bench/retention_soak.py)."""
    run = soak(database_url, tmp_path / "data", duration_s=36, retention_s=6)
    assert run.failed == 0 and run.submitted > 200
    for name in ("jobs", "images", "job_events", "files"):
        middle, last = run.levels(name)
        assert last <= 1.3 * middle + 10, (name, middle, last, run.samples)
    assert run.samples[-1]["jobs"] < run.submitted / 2  # most of them are gone already
