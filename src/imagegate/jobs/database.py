"""Engine creation and migrations, for SQLite (embedded) and PostgreSQL (scale-out)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    Table,
    create_engine,
    event,
    func,
    make_url,
    select,
)
from sqlalchemy.dialects.postgresql import insert as postgres_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.sql.elements import ColumnElement

from imagegate.settings import Settings

# An execution option: begin this transaction as a writer (SQLite's BEGIN IMMEDIATE), so
# a transaction that reads before it writes cannot deadlock on the lock upgrade.
WRITE = {"imagegate_write": True}
# Another: a read of one consistent statement (or of rows that commit together), which
# needs no transaction: SQLite emits no BEGIN for it.
READ = {"imagegate_read": True}


def create_db_engine(settings: Settings) -> Engine:
    url = settings.sqlalchemy_url
    if url.startswith("sqlite"):
        return _sqlite_engine(url)
    # A server that is down or unreachable fails a connection in seconds, not minutes.
    return create_engine(
        url,
        pool_size=10,
        max_overflow=20,
        pool_pre_ping=True,
        pool_timeout=10,
        connect_args={"connect_timeout": 5},
    )


def create_read_engine(settings: Settings, engine: Engine) -> Engine:
    """An engine for the reads every poll makes, which need no transaction.

    On SQLite, ``engine`` itself, beginning no transaction for them. On PostgreSQL, a pool
    of its own in autocommit and without the checkout's ping: a read there is one round
    trip, not four (ping, BEGIN, SELECT, ROLLBACK). A connection the server dropped
    fails its next read, which :func:`imagegate.jobs.lookup.read` tries once more on a
    new one."""
    if engine.dialect.name != "postgresql":
        return engine.execution_options(**READ)
    return create_engine(
        settings.sqlalchemy_url,
        isolation_level="AUTOCOMMIT",
        pool_reset_on_return=None,  # no transaction is ever left to roll back
        pool_size=10,
        max_overflow=20,
        pool_timeout=10,
        connect_args={"connect_timeout": 5},
    )


def _sqlite_engine(url: str) -> Engine:
    _owner_only(make_url(url).database)
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself, below
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        options = connection.get_execution_options()
        if options.get("imagegate_read", False):
            return  # one statement: SQLite's autocommit makes it consistent on its own
        writer = options.get("imagegate_write", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if writer else "BEGIN")

    return engine


def _owner_only(database: str | None) -> None:
    """Create a new SQLite file readable by its owner alone; SQLite gives its journal
    files the same mode."""
    if not database or database == ":memory:" or os.path.exists(database):
        return
    os.close(os.open(database, os.O_WRONLY | os.O_CREAT, 0o600))


MIGRATIONS = Path(__file__).parent.parent / "migrations" / "versions"


def head_revision() -> str:
    """The newest migration's revision: each file's name starts with its own, in order
    (tests/test_schema.py checks this is Alembic's head)."""
    return max(path.name.split("_", 1)[0] for path in MIGRATIONS.glob("[0-9]*_*.py"))


def at_revision(engine: Engine, revision: str) -> bool:
    try:
        with engine.connect() as connection:
            found = connection.exec_driver_sql("SELECT version_num FROM alembic_version")
            return bool(found.scalar() == revision)
    except DBAPIError:  # no schema yet (or no database: the upgrade will say so)
        return False


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision``. Safe to run from several processes at once.

    A schema already at the head is left alone without loading Alembic and its templates
    (10 MB resident in a process that would never use them again)."""
    if revision == "head" and at_revision(engine, head_revision()):
        return
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", "imagegate:migrations")
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            # Serialise concurrent start-ups; released when this transaction ends.
            connection.exec_driver_sql("SELECT pg_advisory_xact_lock(7262013)")
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def insert_or_ignore(conn: Connection, table: Table, values: dict[str, Any]) -> bool:
    """INSERT … ON CONFLICT DO NOTHING, on either database; True when a row was added."""
    dialect = sqlite_insert if conn.dialect.name == "sqlite" else postgres_insert
    statement = dialect(table).values(values).on_conflict_do_nothing()
    # SQLAlchemy keeps an INSERT's rowcount only when asked; psycopg's would read -1 (true).
    result = conn.execute(statement, execution_options={"preserve_rowcount": True})
    return bool(result.rowcount)


def lock_for_transaction(conn: Connection, name: str) -> None:
    """Serialise, across processes, the transactions that name the same lock (PostgreSQL's
    advisory lock, released at commit); SQLite's writers are serial already."""
    if conn.dialect.name == "postgresql":
        conn.execute(select(transaction_lock(name)))


def transaction_lock(name: str) -> ColumnElement[Any]:
    """PostgreSQL's advisory lock named ``name``, held until the transaction ends, as an
    expression to select: for a statement that takes the lock before its own work."""
    return func.pg_advisory_xact_lock(func.hashtext(name))
