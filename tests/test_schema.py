"""The migrations build exactly the schema that the code's tables describe."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from imagegate.jobs.database import at_revision, create_db_engine, head_revision, upgrade
from imagegate.jobs.tables import metadata
from imagegate.settings import Settings


def test_the_migrated_schema_matches_the_tables(settings: Settings) -> None:
    engine = create_db_engine(settings)
    try:
        upgrade(engine)
        with engine.connect() as conn:
            differences: list[Any] = compare_metadata(MigrationContext.configure(conn), metadata)
            queue_indexes = (
                conn.exec_driver_sql(
                    "SELECT sql FROM sqlite_master WHERE name IN "
                    "('ix_jobs_queue', 'ix_jobs_queue_by_owner', 'ix_jobs_waiting')"
                )
                .scalars()
                .all()
                if not settings.is_postgres
                else []
            )
    finally:
        engine.dispose()
    if settings.is_postgres:
        assert differences == []
        return
    # SQLite reflects the queue indexes' "priority DESC" only approximately, so Alembic
    # sees them as dropped and added again; their real definitions are checked instead.
    changed = {(kind, index.name) for kind, index in differences}
    names = ("ix_jobs_queue", "ix_jobs_queue_by_owner", "ix_jobs_waiting")
    assert changed <= {(kind, name) for kind in ("remove_index", "add_index") for name in names}
    assert len(queue_indexes) == 3
    assert all("priority DESC" in sql for sql in queue_indexes)
    assert sum("WHERE status = 'queued' AND follows IS NULL" in sql for sql in queue_indexes) == 1


def test_the_head_found_without_alembic_is_alembics_own(settings: Settings) -> None:
    """A start-up skips Alembic when the schema is at the head it finds from the file names
    alone; that must be the head Alembic itself would upgrade to, and once a database is
    there, nothing of Alembic is loaded again."""
    config = Config()
    config.set_main_option("script_location", "imagegate:migrations")
    assert head_revision() == ScriptDirectory.from_config(config).get_current_head()
    engine = create_db_engine(settings)
    try:
        assert not at_revision(engine, head_revision())  # an empty database
        upgrade(engine, "0006")  # one migration behind: the next start-up must upgrade
        assert not at_revision(engine, head_revision())
        upgrade(engine)
        assert at_revision(engine, head_revision())
    finally:
        engine.dispose()
    started = subprocess.run(
        [sys.executable, "-c", ALEMBIC_LOADED, settings.sqlalchemy_url],
        capture_output=True,
        text=True,
        check=True,
    )
    assert started.stdout.split() == ["False"]


ALEMBIC_LOADED = """
import sys
from imagegate.jobs.database import create_db_engine, upgrade
from imagegate.settings import Settings
upgrade(create_db_engine(Settings(database_url=sys.argv[1])))
print("alembic" in sys.modules)
"""
