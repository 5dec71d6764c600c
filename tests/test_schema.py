"""The migrations build exactly the schema that the code's tables describe."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from imagegate.jobs.database import create_db_engine, upgrade
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
                    "('ix_jobs_queue', 'ix_jobs_queue_by_owner')"
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
    names = ("ix_jobs_queue", "ix_jobs_queue_by_owner")
    assert changed <= {(kind, name) for kind in ("remove_index", "add_index") for name in names}
    assert len(queue_indexes) == 2
    assert all("priority DESC" in sql for sql in queue_indexes)
