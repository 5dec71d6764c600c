"""Prebuilt reads run on the driver's own cursor: the statements every poll makes (the
glance, the job and its images in ``jobs/lookup.py``, the place in ``jobs/queue.py``).

SQLAlchemy still does its part: it compiles the statement (once per dialect), pools the
connection, converts parameters and columns with each type's own processors
(``TypeEngine.bind_processor`` and ``result_processor``, chosen by the type the driver
reports, as ``Connection.execute`` chooses them: a SQLite timestamp's parsing, a JSON
column's loading), tells a dropped connection from other errors, and wraps the driver's
exceptions in its own, so an outage is the same ``OperationalError`` (a 503) as
anywhere else. What is skipped is the execution context and the result's wrapping
around one ``cursor.execute``: on SQLite a glance took 60 µs of CPU through
``Connection.execute`` and takes 12 µs here, where the bare ``sqlite3`` call takes 4.
``tests/test_reads.py`` checks that the rows equal ``Connection.execute``'s, in value and
in type, on both databases.

Only for reads of one statement that need no transaction: on SQLite the driver begins
none for a SELECT, and on PostgreSQL the read engine is in autocommit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, Select
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.compiler import SQLCompiler

Processor = Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class _Compiled:
    compiled: SQLCompiler
    binds: tuple[tuple[str, Processor], ...]  # the parameters SQLAlchemy converts


class DriverRead:
    def __init__(self, statement: Select[Any]) -> None:
        self.statement = statement
        self.keys = tuple(str(column.key) for column in statement.selected_columns)
        self._compiled: dict[str, _Compiled] = {}  # by dialect
        self._results: dict[str, _Results] = {}  # by dialect, from the first rows' types

    def first(self, engine: Engine, values: dict[str, Any]) -> tuple[Any, ...] | None:
        rows = self.all(engine, values)
        return rows[0] if rows else None

    def first_mapping(self, engine: Engine, values: dict[str, Any]) -> dict[str, Any] | None:
        row = self.first(engine, values)
        return None if row is None else dict(zip(self.keys, row, strict=True))

    def mappings(self, engine: Engine, values: dict[str, Any]) -> list[dict[str, Any]]:
        return [dict(zip(self.keys, row, strict=True)) for row in self.all(engine, values)]

    def all(self, engine: Engine, values: dict[str, Any]) -> list[tuple[Any, ...]]:
        """The rows, with the values ``Connection.execute`` would give; once more on a new
        connection if the pooled one was found dropped (the server restarted since it was
        pooled), as ``lookup.read`` does."""
        try:
            return self._all(engine, values)
        except DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
        return self._all(engine, values)

    def _all(self, engine: Engine, values: dict[str, Any]) -> list[tuple[Any, ...]]:
        compiled = self._compiled_for(engine.dialect)
        params = compiled.compiled.construct_params(values)
        for name, convert in compiled.binds:
            params[name] = convert(params[name])
        order = compiled.compiled.positiontup
        args: Any = tuple(params[name] for name in order) if order is not None else params
        connection, cursor = None, None
        try:
            connection = engine.raw_connection()  # the driver's error, if it cannot connect
            cursor = connection.cursor()
            cursor.execute(compiled.compiled.string, args)
            rows = cursor.fetchall()
            results = self._results.get(engine.dialect.name)
            if results is None:
                results = self._results_for(engine.dialect, cursor.description or ())
            cursor.close()
        except engine.dialect.loaded_dbapi.Error as exc:
            raw = connection.dbapi_connection if connection is not None else None
            dropped = engine.dialect.is_disconnect(exc, raw, cursor)
            if dropped and connection is not None:
                connection.invalidate(exc)
            raise DBAPIError.instance(
                compiled.compiled.string,
                args,
                exc,
                engine.dialect.loaded_dbapi.Error,
                connection_invalidated=dropped,
                dialect=engine.dialect,
            ) from exc
        finally:
            if connection is not None:
                connection.close()  # back to the pool (or, invalidated, discarded)
        return results.convert(rows)

    def _compiled_for(self, dialect: Dialect) -> _Compiled:
        found = self._compiled.get(dialect.name)
        if found is None:
            compiled = self.statement.compile(dialect=dialect)
            assert isinstance(compiled, SQLCompiler)
            binds = []
            for name, bind in compiled.binds.items():
                convert = bind.type.dialect_impl(dialect).bind_processor(dialect)
                if convert is not None:
                    binds.append((name, convert))
            found = self._compiled[dialect.name] = _Compiled(compiled, tuple(binds))
        return found

    def _results_for(self, dialect: Dialect, description: Sequence[Any]) -> _Results:
        """Each column's result processor, as SQLAlchemy picks it: by the column's type and
        the type the driver says it sent (the cursor's description). Picked once: a
        statement's columns keep their types (sqlite3 reports none; PostgreSQL's are fixed
        by the statement), and building psycopg's description of some 70 columns on every
        read cost a twentieth of a poll."""
        columns = self.statement.selected_columns
        processors = [
            column.type.dialect_impl(dialect).result_processor(dialect, sent[1])
            for column, sent in zip(columns, description, strict=True)
        ]
        converted = tuple((i, p) for i, p in enumerate(processors) if p is not None)
        found = self._results[dialect.name] = _Results(converted)
        return found


@dataclass(frozen=True, slots=True)
class _Results:
    converted: tuple[tuple[int, Processor], ...]  # the columns SQLAlchemy converts

    def convert(self, rows: Sequence[Any]) -> list[tuple[Any, ...]]:
        if not self.converted:
            return [tuple(row) for row in rows]
        found = []
        for row in rows:
            values = list(row)
            for index, convert in self.converted:
                values[index] = convert(values[index])
            found.append(tuple(values))
        return found
