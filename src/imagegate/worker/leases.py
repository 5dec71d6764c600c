"""Keeps the leases of the jobs this process works on alive, from one background thread."""

from __future__ import annotations

import threading

import structlog
from sqlalchemy.exc import SQLAlchemyError

from imagegate.jobs.store import JobStore

log = structlog.get_logger(__name__)


class LeaseKeeper:
    def __init__(self, store: JobStore, lease_s: float, concurrency: int = 1) -> None:
        self._store = store
        self._lease_s = lease_s
        self._concurrency = concurrency
        self._tokens: set[str] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lease-keeper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)
        try:
            self._store.retire_worker()
        except SQLAlchemyError as exc:
            log.warning("worker.retire_failed", error=str(exc))

    def hold(self, token: str) -> None:
        with self._lock:
            self._tokens.add(token)

    def drop(self, token: str) -> None:
        with self._lock:
            self._tokens.discard(token)

    def _run(self) -> None:
        # Renew at a third of the lease, so two missed renewals still leave time.
        self._heartbeat()
        while not self._stopping.wait(self._lease_s / 3):
            with self._lock:
                tokens = list(self._tokens)
            for token in tokens:
                self._renew(token)
            self._heartbeat()
            self._maintain()

    def _maintain(self) -> None:
        try:
            self._store.maintain()
        except SQLAlchemyError as exc:
            log.warning("store.maintain_failed", error=str(exc))

    def _heartbeat(self) -> None:
        """Tell the registry this process's workers are alive (for queue ETAs)."""
        try:
            self._store.heartbeat_worker(self._concurrency)
        except SQLAlchemyError as exc:
            log.warning("worker.heartbeat_failed", error=str(exc))

    def _renew(self, token: str) -> None:
        try:
            self._store.renew(token, self._lease_s)
        except SQLAlchemyError as exc:
            log.warning("lease.renew_failed", error=str(exc))
