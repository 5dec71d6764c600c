"""Wiring: build the store, storage, signer and workers from the settings, once.

The API, ``imagegate worker`` and the embedded ``imagegate generate`` all start from a
:class:`Runtime`, so the embedded and scale-out modes run the same code.
"""

from __future__ import annotations

import asyncio
import random
import threading
from typing import Any

import structlog
from sqlalchemy.exc import SQLAlchemyError

from imagegate import metrics
from imagegate.api.links import Links
from imagegate.generators import Generator, load_generator
from imagegate.generators.families import with_family_defaults
from imagegate.intake import IntakeDesk
from imagegate.jobs.database import create_db_engine, create_read_engine, upgrade
from imagegate.jobs.events import CHANNEL, EventHub
from imagegate.jobs.queue_stats import queue_stats
from imagegate.jobs.store import JobStore
from imagegate.jobs.wakeup import PostgresListener, conninfo
from imagegate.limits.gatekeeper import Gatekeeper
from imagegate.limits.ratelimit import RateLimiter
from imagegate.limits.streams import StreamSlots
from imagegate.retention import Sweeper, policy_of
from imagegate.settings import Settings
from imagegate.storage import Presigner, Storage, open_presigner, open_storage
from imagegate.storage.quarantine import Quarantine
from imagegate.storage.signing import UrlSigner
from imagegate.tenancy.auth import Authenticator
from imagegate.tenancy.keys import KeyStore
from imagegate.tenancy.tokens import TokenSigner
from imagegate.usage.ledger import Pricing
from imagegate.usage.prices import load_prices
from imagegate.usage.reports import UsageStore
from imagegate.webhooks.guard import WebhookGuard
from imagegate.webhooks.sender import WebhookSender
from imagegate.worker.deletion_cost import DeletionCostAnnotator, PodRef
from imagegate.worker.liveness import Health
from imagegate.worker.output_gate import ImageCheck, OutputGate
from imagegate.worker.pool import WorkerPool
from imagegate.worker.probes import ProbeServer

log = structlog.get_logger(__name__)


class Runtime:
    def __init__(self, settings: Settings) -> None:
        settings = with_family_defaults(settings)
        self.settings = settings
        self.engine = create_db_engine(settings)
        self.reader = create_read_engine(settings, self.engine)
        if settings.auto_migrate:
            upgrade(self.engine)
        self.pricing = Pricing(
            load_prices(settings.prices_file),
            settings.model_name,
            settings.failed_job_cost_fraction,
        )
        self.store = JobStore(
            self.engine,
            max_attempts=settings.max_retries,
            retry_backoff_s=settings.retry_backoff_s,
            job_timeout_s=settings.job_timeout_s,
            pricing=self.pricing,
            fair_share_window_s=settings.fair_share_window_s if settings.fair_share else None,
            cache_ttl_s=settings.cache_ttl_days * 86400,
            reader=self.reader,
        )
        self.keys = KeyStore(self.engine, cache_s=settings.key_cache_s)
        self.tokens = TokenSigner(settings.signing_key)
        self.auth = Authenticator(settings, self.keys, self.tokens)
        self.limiter = RateLimiter(settings.redis_url)
        self.gate = Gatekeeper(settings, self.keys, self.limiter, self.pricing)
        self.usage = UsageStore(self.engine)
        self.storage: Storage = open_storage(settings)
        self.presigner: Presigner | None = open_presigner(settings, self.storage)
        self.quarantine = Quarantine(self.storage)
        previous = [k.get_secret_value().encode() for k in settings.secret_key_previous]
        self.signer = UrlSigner(settings.signing_key, settings.signed_url_ttl_s, previous)
        self.intake = IntakeDesk(settings, self.store)
        self.hub = EventHub()
        self.streams = StreamSlots(settings.max_event_streams)  # SSE and WebSockets
        self.store.publishers.append(self.hub.publish)
        self.guard = WebhookGuard(settings.webhook_allow_private, settings.webhook_allow_networks)
        self._listener: PostgresListener | None = None
        self.generator: Generator | None = None
        self.pool: WorkerPool | None = None
        self.workers_wanted = 0
        self.safety_state = "ok" if not settings.safety_enabled else "loading"
        self.load_error: str | None = None
        self._stopping = threading.Event()
        self._annotator: DeletionCostAnnotator | None = None
        self._probes: ProbeServer | None = None

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
        """Everything a worker needs (model, output moderation) loads before any claim; a
        failure is kept for ``/ready`` and raised, never left as a silent "loading"."""
        try:
            generator = load_generator(self.settings)
            generator.load()
            check = self._output_check()
        except Exception as exc:
            self.load_error = f"{type(exc).__name__}: {exc}"
            log.error("backend.load_failed", backend=self.settings.backend, error=self.load_error)
            raise
        self.generator = generator
        sender = WebhookSender(
            self.engine,
            self.guard,
            self.settings.webhook_secrets,
            self.settings.webhook_retry_schedule_s,
            self.settings.webhook_timeout_s,
            render=self.render_job,
            concurrency=self.settings.webhook_concurrency,
        )
        hold = self.settings.output_flagged == "review"
        gate = OutputGate(check, self.storage, hold_for_review=hold)
        self.pool = WorkerPool(
            self.settings, self.store, self.storage, generator, count, sender, gate
        )
        self.pool.start()
        if self.settings.pod_deletion_cost:
            self._annotate_pod(self.pool)

    def _annotate_pod(self, pool: WorkerPool) -> None:
        """A pod that cannot be annotated still works: only its scale-down is less choosy."""
        try:
            pod = PodRef.from_settings(self.settings)
        except (ValueError, OSError) as exc:
            log.error("deletion_cost.disabled", error=f"{type(exc).__name__}: {exc}")
            return
        self._annotator = DeletionCostAnnotator(pod, pool.jobs_in_flight)
        self._annotator.start()

    def _output_check(self) -> ImageCheck | None:
        """NudeNet, loaded now, so a worker never serves an image it could not check."""
        if not self.settings.output_moderation:
            return None
        from imagegate.safety.output import OutputModerator, shared_detector

        shared_detector()
        return OutputModerator(thresholds=self.settings.nudenet_thresholds).check

    def start_upkeep(self) -> None:
        """Recover the jobs of dead workers and fail stuck ones from the API process too.

        Workers do this as they claim and renew, but with every worker gone (scaled to
        zero, or crashed) a job whose lease ran out would stay ``generating``, out of the
        queue that a worker autoscaler watches. Started when this process runs no worker.
        """
        threading.Thread(target=self._upkeep, name="upkeep", daemon=True).start()

    def _upkeep(self) -> None:
        while not self._stopping.wait(self.settings.poll_interval_s):
            try:
                self.store.maintain()
            except Exception:  # the database may be away for a while: try again later
                log.exception("upkeep.failed")

    def sweeper(self) -> Sweeper:
        return Sweeper(self.engine, self.storage, policy_of(self.settings))

    def start_sweeper(self) -> None:
        """Delete what is past its time, a batch of each kind every
        ``IMAGEGATE_SWEEP_INTERVAL_S`` (jittered, so replicas don't sweep in step). Every
        API and worker process sweeps: one is enough, more is harmless."""
        interval = self.settings.sweep_interval_s
        if interval <= 0:
            return
        threading.Thread(target=self._sweep, args=(interval,), name="sweeper", daemon=True).start()

    def _sweep(self, interval: float) -> None:
        sweeper = self.sweeper()
        while not self._stopping.wait(interval * random.uniform(0.5, 1.5)):
            try:
                while sweeper.sweep().total and not self._stopping.is_set():
                    pass  # a backlog: go on while there is more
            except Exception:  # the database or the storage may be away: try again later
                log.exception("retention.sweep_failed")

    def start_safety(self) -> None:
        """Load the prompt-safety models in the background; ``/ready`` waits for them."""
        threading.Thread(target=self._warm_safety, name="safety-warm-up", daemon=True).start()

    def _warm_safety(self) -> None:
        try:
            self.intake.warm_up()
        except Exception as exc:
            self.safety_state = f"{type(exc).__name__}: {exc}"
            log.error("safety.load_failed", error=self.safety_state)
            return
        self.safety_state = "ok"

    def start_events(self, loop: asyncio.AbstractEventLoop) -> None:
        """Let asyncio subscribers on ``loop`` hear of job events, from any process."""
        self.hub.bind(loop)
        if self.settings.is_postgres:
            self._listener = PostgresListener(conninfo(self.engine), {CHANNEL: self.hub.publish})
            self._listener.start()

    @property
    def links(self) -> Links:
        """Links for use outside a request (webhook payloads): the public URL, or our own."""
        base = self.settings.public_url or f"http://{self.settings.host}:{self.settings.port}"
        return Links(base, self.signer, self.presigner)

    def render_job(self, job_id: str) -> dict[str, Any]:
        """The job resource as the API shows it, for webhook payloads."""
        from imagegate.api.schemas import JobOut

        job = self.store.get(job_id)
        return JobOut.of(job, self.links).model_dump(mode="json")

    def metrics(self) -> bytes:
        """The Prometheus exposition; without the database's figures while it is away."""
        try:
            figures = metrics.DatabaseFigures(
                self.store.status_counts(),
                self.store.cache_stats(),
                queue_stats(self.engine, self.settings.model_name),
            )
        except SQLAlchemyError as exc:
            log.warning("metrics.database_unavailable", error=type(exc).__name__)
            figures = None
        return metrics.exposition(figures)

    def start_probes(self, host: str, port: int) -> int:
        """Serve ``/metrics``, ``/healthz`` and ``/readyz`` for this process's workers
        (:mod:`imagegate.worker.probes`); returns the port bound."""
        self._probes = ProbeServer(self, host, port)
        self._probes.start()
        return self._probes.port

    def liveness(self) -> Health:
        if self.pool is None:
            return Health(False, "failed" if self.load_error else "starting")
        return self.pool.health()

    def readiness(self) -> Health:
        """Ready once the model is loaded and the workers claim; not while draining."""
        if self.pool is None:
            return Health(False, "failed" if self.load_error else "loading")
        if self.pool.draining:
            return Health(False, "draining")
        return Health(True, "ok")

    @property
    def backend_ready(self) -> bool:
        """An API-only process (no workers) has no model to load, so it is ready at once."""
        return self.workers_wanted == 0 or self.pool is not None

    def close(self, grace_s: float | None = None) -> None:
        self._stopping.set()
        if self._annotator is not None:
            self._annotator.stop()
        if self.pool is not None:
            self.pool.stop(grace_s)
        if self._probes is not None:
            self._probes.stop()
        if self._listener is not None:
            self._listener.stop()
        close = getattr(self.generator, "close", None)
        if callable(close):
            close()
        self.engine.dispose()
        self.reader.dispose()
