"""Wake idle workers when a job becomes runnable.

In one process a condition variable does it; across processes on PostgreSQL a listener
thread turns ``NOTIFY imagegate_jobs`` into the same local wake-up. Workers still poll
at ``poll_interval_s`` as a safety net, so a lost notification only costs latency.
"""

from __future__ import annotations

import threading

import psycopg
import structlog

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

    def wait(self, ticket: int, timeout: float) -> None:
        with self._condition:
            self._condition.wait_for(lambda: self._count != ticket, timeout)


class PostgresListener:
    """A daemon thread that LISTENs on the jobs channel and wakes local workers."""

    def __init__(self, conninfo: str, wakeup: Wakeup) -> None:
        self._conninfo = conninfo
        self._wakeup = wakeup
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pg-listener", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self._listen()
            except psycopg.Error as exc:
                log.warning("listener.reconnect", error=str(exc))
                self._stopping.wait(1.0)

    def _listen(self) -> None:
        with psycopg.connect(self._conninfo, autocommit=True) as connection:
            connection.execute(f"LISTEN {CHANNEL}")
            while not self._stopping.is_set():
                for _ in connection.notifies(timeout=0.5, stop_after=1):
                    self._wakeup.notify()
