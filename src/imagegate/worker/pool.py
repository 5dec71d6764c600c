"""A process's workers: N threads sharing one loaded generator, one lease keeper, the
webhook sender and, on PostgreSQL, one LISTEN connection. Stopping drains: no new claims,
in-flight jobs finish within the grace period, and what still runs then goes back to the
queue.
"""

from __future__ import annotations

import threading
import time

import structlog

from imagegate.generators import Generator
from imagegate.jobs.store import JobStore
from imagegate.jobs.wakeup import PostgresListener, conninfo
from imagegate.settings import Settings
from imagegate.storage import Storage
from imagegate.webhooks.sender import WebhookSender
from imagegate.worker.leases import LeaseKeeper
from imagegate.worker.liveness import Health, Liveness, stall_limit_s
from imagegate.worker.output_gate import OutputGate
from imagegate.worker.runner import Worker, WorkerContext

log = structlog.get_logger(__name__)


class WorkerPool:
    def __init__(
        self,
        settings: Settings,
        store: JobStore,
        storage: Storage,
        generator: Generator,
        count: int,
        sender: WebhookSender | None = None,
        gate: OutputGate | None = None,
    ) -> None:
        self.settings = settings
        self.count = count
        self.leases = LeaseKeeper(store, settings.lease_s, concurrency=count)
        self.context = WorkerContext(
            settings,
            store,
            storage,
            generator,
            self.leases,
            abort=threading.Event(),
            gate=gate or OutputGate(None, storage),
            liveness=Liveness(stall_limit_s(settings)),
        )
        self.sender = sender
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._workers: list[Worker] = []
        self._listener = (
            PostgresListener(conninfo(store.engine), {"imagegate_jobs": store.wakeup.notify_any})
            if settings.is_postgres
            else None
        )

    def start(self) -> None:
        self.leases.start()
        if self._listener:
            self._listener.start()
        if self.sender:
            self.sender.start()
        for index in range(self.count):
            worker = Worker(self.context, name=f"worker-{index}")
            thread = threading.Thread(
                target=worker.run, args=(self._stopping,), name=worker.name, daemon=True
            )
            thread.start()
            self._threads.append(thread)
            self._workers.append(worker)
        log.info("workers.started", count=self.count, model=self.context.generator.model_name)

    @property
    def draining(self) -> bool:
        return self._stopping.is_set()

    def jobs_in_flight(self) -> int:
        return sum(worker.jobs_in_flight for worker in self._workers)

    def health(self) -> Health:
        """Alive unless a worker thread died or stalled (see :mod:`.liveness`). A draining
        pool is alive: its threads end as their jobs do, and a restart would only cut
        those jobs short."""
        if self.draining:
            return Health(True, "draining")
        ages = self.context.liveness.ages()
        dead = {t.name: ages.get(t.name, 0.0) for t in self._threads if not t.is_alive()}
        if dead:
            return Health(False, "dead", dead)
        stalled = self.context.liveness.stalled()
        if stalled:
            return Health(False, "stalled", stalled)
        return Health(True, "ok")

    def stop_claiming(self) -> None:
        """Workers finish what they run, and claim nothing more."""
        self._stopping.set()
        self.context.store.wakeup.notify()

    def stop(self, grace_s: float | None = None) -> None:
        """Drain: stop claiming, wait up to the grace period, then release what still runs."""
        grace = self.settings.drain_grace_s if grace_s is None else grace_s
        self._stopping.set()
        self.context.store.wakeup.notify()
        deadline = time.monotonic() + grace
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        self.context.abort.set()
        for thread in self._threads:
            thread.join(timeout=10)
        self.leases.stop()
        if self.sender:
            self.sender.stop()
        if self._listener:
            self._listener.stop()
        log.info("workers.stopped")
