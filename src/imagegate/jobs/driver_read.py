"""A prebuilt read run on the driver's own cursor: for the one statement every status
poll makes (``lookup.glance``).

SQLAlchemy still does its part: it compiles the statement (once per dialect), pools the
connection, tells a dropped connection from other errors, and wraps the driver's
exceptions in its own, so an outage is the same ``OperationalError`` (a 503) as anywhere
else. What is skipped is the execution context and the result's wrapping around one
``cursor.execute``: on SQLite a glance took 60 µs of CPU through ``Connection.execute``
and takes 12 µs here, where the bare ``sqlite3`` call takes 4.

So only for a statement whose parameters and columns need no conversion either way
(strings and integers, as the driver takes and gives them: no timestamps, no JSON), which
is checked when it is first compiled for a dialect, and that needs no transaction: on
SQLite the driver begins none for a SELECT, and on PostgreSQL the read engine is in
autocommit.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, Select
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.compiler import SQLCompiler


class DriverRead:
    def __init__(self, statement: Select[Any]) -> None:
        self.statement = statement
        self._compiled: dict[str, SQLCompiler] = {}  # by dialect

    def first(self, engine: Engine, values: dict[str, Any]) -> tuple[Any, ...] | None:
        """The first row, or None; once more on a new connection if the pooled one was
        found dropped (the server restarted since), as ``lookup.read`` does."""
        try:
            return self._first(engine, values)
        except DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
        return self._first(engine, values)

    def _first(self, engine: Engine, values: dict[str, Any]) -> tuple[Any, ...] | None:
        compiled = self._compiled_for(engine.dialect)
        params = compiled.construct_params(values)
        order = compiled.positiontup
        args: Any = tuple(params[name] for name in order) if order is not None else params
        connection, cursor = None, None
        try:
            connection = engine.raw_connection()  # the driver's error, if it cannot connect
            cursor = connection.cursor()
            cursor.execute(compiled.string, args)
            row = cursor.fetchone()
            cursor.close()
        except engine.dialect.loaded_dbapi.Error as exc:
            raw = connection.dbapi_connection if connection is not None else None
            dropped = engine.dialect.is_disconnect(exc, raw, cursor)
            if dropped and connection is not None:
                connection.invalidate(exc)
            raise DBAPIError.instance(
                compiled.string,
                args,
                exc,
                engine.dialect.loaded_dbapi.Error,
                connection_invalidated=dropped,
                dialect=engine.dialect,
            ) from exc
        finally:
            if connection is not None:
                connection.close()  # back to the pool (or, invalidated, discarded)
        return None if row is None else tuple(row)

    def _compiled_for(self, dialect: Dialect) -> SQLCompiler:
        found = self._compiled.get(dialect.name)
        if found is None:
            compiled = self.statement.compile(dialect=dialect)
            assert isinstance(compiled, SQLCompiler)
            _check_unconverted(self.statement, compiled, dialect)
            found = self._compiled[dialect.name] = compiled
        return found


def _converts(impl: Any, dialect: Dialect) -> bool:
    try:
        return impl.result_processor(dialect, None) is not None
    except TypeError:  # it would choose by the driver's own type code: a conversion
        return True


def _check_unconverted(statement: Select[Any], compiled: SQLCompiler, dialect: Dialect) -> None:
    """Refuses a statement that SQLAlchemy would convert values of, on the way in or out."""
    for bind in compiled.binds.values():
        if bind.type.dialect_impl(dialect).bind_processor(dialect) is not None:
            raise TypeError(f"{bind.key} needs converting for {dialect.name}")
    for column in statement.selected_columns:
        if _converts(column.type.dialect_impl(dialect), dialect):
            raise TypeError(f"{column.key} needs converting for {dialect.name}")
