"""Wake idle workers when a job becomes runnable.

In one process a condition variable does it; across processes on PostgreSQL a listener
thread turns ``NOTIFY imagegate_jobs`` into the same local wake-up. Workers still poll
at ``poll_interval_s`` as a safety net, so a lost notification only costs latency.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import structlog
from sqlalchemy import Engine

CHANNEL = "imagegate_jobs"
log = structlog.get_logger(__name__)


class Wakeup:
    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._count = 0

    def ticket(self) -> int:
        """Take before looking for work; :meth:`wait` returns at once if anything came since."""
        with self._condition:
            return self._count

    def notify(self) -> None:
        with self._condition:
            self._count += 1
            self._condition.notify_all()

    def notify_any(self, _payload: str = "") -> None:
        """:meth:`notify`, in the shape of a notification handler."""
        self.notify()

    def wait(self, ticket: int, timeout: float) -> None:
        with self._condition:
            self._condition.wait_for(lambda: self._count != ticket, timeout)


class PostgresListener:
    """A daemon thread that LISTENs on some channels and calls a handler per notification
    (with its payload): how a process hears of changes made by other processes."""

    def __init__(self, conninfo: str, handlers: dict[str, Callable[[str], None]]) -> None:
        self._conninfo = conninfo
        self._handlers = handlers
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pg-listener", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        import psycopg  # PostgreSQL only: an embedded service never loads the driver

        while not self._stopping.is_set():
            try:
                self._listen()
            except psycopg.Error as exc:
                log.warning("listener.reconnect", error=str(exc))
                self._stopping.wait(1.0)

    def _listen(self) -> None:
        import psycopg

        with psycopg.connect(self._conninfo, autocommit=True) as connection:
            for channel in self._handlers:
                connection.execute(f"LISTEN {channel}")
            while not self._stopping.is_set():
                for note in connection.notifies(timeout=0.5):
                    self._handlers[note.channel](note.payload)


def conninfo(engine: Engine) -> str:
    """The plain libpq URL of a SQLAlchemy PostgreSQL engine."""
    return engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
