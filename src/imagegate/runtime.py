"""Wiring: build the store, storage, signer and workers from the settings, once.

The API, ``imagegate worker`` and the embedded ``imagegate generate`` all start from a
:class:`Runtime`, so the embedded and scale-out modes run the same code.
"""

from __future__ import annotations

import threading

import structlog

from imagegate.generators import Generator, load_generator
from imagegate.jobs.database import create_db_engine, upgrade
from imagegate.jobs.store import JobStore
from imagegate.settings import Settings
from imagegate.storage import Storage, open_storage
from imagegate.storage.signing import UrlSigner
from imagegate.worker.pool import WorkerPool

log = structlog.get_logger(__name__)


class Runtime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine = create_db_engine(settings)
        if settings.auto_migrate:
            upgrade(self.engine)
        self.store = JobStore(
            self.engine,
            max_attempts=settings.max_retries,
            retry_backoff_s=settings.retry_backoff_s,
        )
        self.storage: Storage = open_storage(settings)
        self.signer = UrlSigner(settings.signing_key, settings.signed_url_ttl_s)
        self.generator: Generator | None = None
        self.pool: WorkerPool | None = None
        self.workers_wanted = 0
        self.load_error: str | None = None

    def start_workers(self, count: int, *, background: bool = False) -> None:
        """Load the model once, then start ``count`` worker threads that share it.

        In the background (``serve``), the API answers while the model loads, and
        ``/ready`` says false until the workers run.
        """
        self.workers_wanted = count
        if count <= 0:
            return
        if background:
            threading.Thread(target=self._load_and_start, args=(count,), daemon=True).start()
        else:
            self._load_and_start(count)

    def _load_and_start(self, count: int) -> None:
        generator = load_generator(self.settings)
        try:
            generator.load()
        except Exception as exc:
            self.load_error = f"{type(exc).__name__}: {exc}"
            log.error("backend.load_failed", backend=self.settings.backend, error=self.load_error)
            raise
        self.generator = generator
        self.pool = WorkerPool(self.settings, self.store, self.storage, generator)
        self.pool.start(count)

    @property
    def backend_ready(self) -> bool:
        """An API-only process (no workers) has no model to load, so it is ready at once."""
        return self.workers_wanted == 0 or self.pool is not None

    def close(self, grace_s: float | None = None) -> None:
        if self.pool is not None:
            self.pool.stop(grace_s)
        self.engine.dispose()
