"""Running claimed jobs: generate, encode, store, record; and every way that can end.

A :class:`Worker` runs in its own thread (never on the API's event loop). It claims a
batch of jobs under one lease token, renders them in one generator call, and records
each job's own outcome through the store's guarded transitions.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING

import structlog

from imagegate import metrics
from imagegate.errors import GenerationCanceled, GenerationError, GenerationTimeout
from imagegate.generators import GenerationRequest, Generator, StepInfo
from imagegate.jobs.models import Claim, ErrorInfo, GenerationMeta, ImageRecord, Job
from imagegate.jobs.retry import backoff_s
from imagegate.jobs.store import JobStore
from imagegate.logs import job_context
from imagegate.settings import Settings
from imagegate.storage import Storage
from imagegate.storage.blobs import BlobWriter
from imagegate.storage.encoding import Encoded, encode, encode_png, placeholder
from imagegate.storage.keys import preview_key
from imagegate.worker.leases import LeaseKeeper
from imagegate.worker.liveness import Heartbeat, Liveness
from imagegate.worker.output_gate import OUTPUT_BLOCKED, OutputGate, Screened

if TYPE_CHECKING:
    from PIL.Image import Image

log = structlog.get_logger(__name__)

PROGRESS_EVERY_S = 0.25


class Released(Exception):
    """The worker is shutting down past its grace period: give the jobs back."""


@dataclass
class WorkerContext:
    """What a worker loads once and shares across jobs (the arq pattern)."""

    settings: Settings
    store: JobStore
    storage: Storage
    generator: Generator
    leases: LeaseKeeper
    abort: threading.Event  # set when draining has run out of grace
    gate: OutputGate
    liveness: Liveness = field(default_factory=Liveness)


@dataclass(frozen=True)
class _Rendered:
    claims: Sequence[Claim]
    images: list[list[Image]]
    elapsed_ms: int
    canceled: frozenset[str]


class Worker:
    """Claims, generates, and hands each generated batch to a finishing thread (PNG
    encoding, storage, recording) while the model starts on the next batch. The hand-off
    waits until the next claim is made, so the claim does not compete with the encoding;
    at most one batch is finishing at a time, which bounds the memory held."""

    def __init__(self, context: WorkerContext, name: str = "worker") -> None:
        self.ctx = context
        self.name = name
        self._finisher = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{name}-finish")
        self._finishing: Future[None] | None = None
        self._generated: _Rendered | None = None
        self.heartbeat = context.liveness.register(name)
        self._running: Sequence[Claim] = ()  # claimed, and not yet generated
        self._finishing_jobs = 0

    @property
    def jobs_in_flight(self) -> int:
        """Jobs this worker holds: generating, generated, or being recorded. Read from
        other threads (the pod deletion cost): a hand-off may blur it for a moment."""
        generated = len(self._generated.claims) if self._generated else 0
        return len(self._running) + generated + self._finishing_jobs

    def run(self, stopping: threading.Event) -> None:
        """Claim and run jobs until ``stopping`` is set; sleeps when the queue is empty."""
        wakeup = self.ctx.store.wakeup
        try:
            while not stopping.is_set():
                self.heartbeat.beat()
                ticket = wakeup.ticket()
                if not self._pass():
                    wakeup.wait(ticket, self.ctx.settings.poll_interval_s)
        finally:
            self._safely(self.flush)
            self._finisher.shutdown()

    def _pass(self) -> bool:
        """One pass of the loop. An error here (the database restarting, say) is logged and
        waited out: a worker thread must not die, or its jobs would wait for a lease to
        expire and the process would stop working while looking alive."""
        try:
            return self.run_once()
        except Exception:
            log.exception("worker.pass_failed", worker=self.name)
            time.sleep(self.ctx.settings.poll_interval_s)
            return False

    def _safely(self, action: Callable[[], None]) -> None:
        try:
            action()
        except Exception:
            log.exception("worker.finish_failed", worker=self.name)

    def flush(self) -> None:
        """Finish what was generated: encode, store and record it, and wait for that."""
        self._hand_off()
        self._await_finishing()

    def run_once(self) -> bool:
        """Claim and generate one batch; False when nothing was runnable."""
        claims = self.ctx.store.claim(self.ctx.settings.lease_s)
        if claims:  # held before the hand-off below, which may wait on a slow finish
            self.ctx.leases.hold(claims[0].token)
        self._safely(self._hand_off)
        if not claims:
            return False
        self._running = claims
        try:
            claims += self._gather(claims[0])
            self._running = claims
            self._log_each(claims, "job.claimed")
            self._generated = self._generate(claims)
        finally:
            self._running = ()
            if self._generated is None:
                self.ctx.leases.drop(claims[0].token)
        return True

    def _gather(self, first: Claim) -> list[Claim]:
        """Dynamic batching: add queued jobs that can share the first one's forward pass,
        waiting up to the batch window for more to arrive, under the same lease."""
        settings, store = self.ctx.settings, self.ctx.store
        more: list[Claim] = []
        deadline = time.monotonic() + settings.batch_window_ms / 1000
        while 1 + len(more) < settings.max_batch:
            self.heartbeat.beat()
            ticket = store.wakeup.ticket()
            wanted = settings.max_batch - 1 - len(more)
            more += store.claim(settings.lease_s, wanted, like=first.job.spec, token=first.token)
            left = deadline - time.monotonic()
            if left <= 0:
                break
            if 1 + len(more) < settings.max_batch:
                store.wakeup.wait(ticket, left)
        return more

    def _hand_off(self) -> None:
        """Start finishing the last generated batch, once the one before it is done."""
        generated = self._generated
        if generated is not None:
            self._safely(self._await_finishing)
            self._finishing_jobs, self._generated = len(generated.claims), None
            self._finishing = self._finisher.submit(self._finish, generated)

    def _await_finishing(self) -> None:
        finishing, self._finishing = self._finishing, None
        if finishing is not None:
            finishing.result()

    def _generate(self, claims: Sequence[Claim]) -> _Rendered | None:
        """Run the model; on failure record each job's outcome and return None."""
        started = time.monotonic()
        tracker = _StepTracker(self.ctx, claims, started, self.heartbeat)
        try:
            images = self.ctx.generator.generate([_request(c.job) for c in claims], tracker)
        except Released:
            self._each(claims, self.ctx.store.release, "job.released")
        except GenerationCanceled:
            self._each(claims, self.ctx.store.finish_canceled, "job.canceled")
        except GenerationTimeout as timeout:
            error = ErrorInfo(timeout.code, timeout.message, timeout.retryable)
            self._each(claims, partial(self.ctx.store.fail, error=error), "job.timed_out")
        except Exception as exc:
            log.exception("generation.error", jobs=[c.job.id for c in claims])
            self._each(claims, partial(self._retry_or_fail, exc=exc))
        else:
            elapsed_ms = round((time.monotonic() - started) * 1000)
            metrics.BATCH_SIZE.labels(self.ctx.generator.model_name).observe(len(claims))
            self._log_each(claims, "job.generated", ms=elapsed_ms, batch=len(claims))
            return _Rendered(claims, images, elapsed_ms, frozenset(tracker.canceled))
        return None

    def _finish(self, rendered: _Rendered) -> None:
        try:
            for claim, images in zip(rendered.claims, rendered.images, strict=True):
                self.heartbeat.beat()
                with job_context(claim.job.id, claim.job.owner):
                    self._finish_one(claim, images, rendered)
        finally:
            self._finishing_jobs = 0
            self.ctx.leases.drop(rendered.claims[0].token)

    def _finish_one(self, claim: Claim, images: list[Image], rendered: _Rendered) -> None:
        if claim.job.id in rendered.canceled:
            self.ctx.store.finish_canceled(claim)
            log.info("job.canceled", worker=self.name)
        else:
            self._record_or_retry(claim, images, rendered)

    def _record_or_retry(self, claim: Claim, images: list[Image], rendered: _Rendered) -> None:
        try:
            self._record(claim, images, rendered.elapsed_ms, len(rendered.claims))
        except Exception as exc:
            log.exception("job.record_failed", worker=self.name)
            self._retry_or_fail(claim, exc)

    def _record(self, claim: Claim, images: list[Image], elapsed_ms: int, batch: int) -> None:
        job, model = claim.job, self.ctx.generator.model_name
        screened = self.ctx.gate.screen(job, images)
        self._count_moderation(screened)
        encoded = [_encode(job, i, image, model) for i, image in enumerate(images)]
        meta = GenerationMeta(job.spec.seed, model, elapsed_ms, batch)
        if screened.blocked:
            self._withhold(claim, [e.data for e in encoded], meta, screened)
            return
        stored = [
            self._store_image(job, i, data, image)
            for i, (data, image) in enumerate(zip(encoded, images, strict=True))
        ]
        log.debug("job.stored", images=len(stored), bytes=sum(i.size_bytes for i in stored))
        if self.ctx.store.complete(claim, stored, meta, screened.moderation):
            backend = self.ctx.settings.backend
            metrics.observe_completed(job, model, backend, elapsed_ms / 1000, datetime.now(UTC))
            log.info("job.completed", ms=elapsed_ms, worker=self.name)
            return
        # Our lease was taken over: another attempt owns the result. Our files may be the
        # same as another job's, so the sweeper deletes them if nothing refers to them.
        log.warning("job.lease_lost", worker=self.name)

    def _withhold(
        self, claim: Claim, pngs: list[bytes], meta: GenerationMeta, screened: Screened
    ) -> None:
        gate, store = self.ctx.gate, self.ctx.store
        gate.quarantine(claim.job, pngs)
        if gate.hold_for_review:
            store.hold_output(claim, meta, screened.moderation, screened.audit)
        else:
            store.fail(claim, OUTPUT_BLOCKED, screened.moderation, screened.audit, quarantined=True)
        log.warning("job.output_withheld", review=gate.hold_for_review)

    def _count_moderation(self, screened: Screened) -> None:
        if screened.moderation is None:  # output moderation is off
            return
        action = "allow"
        if screened.blocked:
            action = "review" if self.ctx.gate.hold_for_review else "block"
        metrics.OUTPUT_MODERATION.labels(action).inc()
        log.debug("job.moderated", action=action)

    def _store_image(self, job: Job, index: int, encoded: Encoded, image: Image) -> ImageRecord:
        writer = BlobWriter(self.ctx.storage, self.ctx.store.engine)
        key = writer.put(encoded.data, encoded.sha256, encoded.content_type)
        return ImageRecord(
            id=str(uuid.uuid4()),
            job_id=job.id,
            index=index,
            storage_key=key,
            width=image.width,
            height=image.height,
            size_bytes=len(encoded.data),
            content_type=encoded.content_type,
            sha256=encoded.sha256,
            placeholder=placeholder(image),
        )

    def _retry_or_fail(self, claim: Claim, exc: Exception) -> None:
        """A backend's own error keeps its code; only a retryable one is tried again."""
        error = _error_info(exc)
        attempts = claim.job.attempts
        if not error.retryable or attempts >= self.ctx.settings.max_retries:
            self.ctx.store.fail(claim, error)
            log.warning("job.failed", code=error.code, attempts=attempts)
            return
        delay = backoff_s(attempts, self.ctx.settings.retry_backoff_s)
        self.ctx.store.retry_later(claim, error, delay)
        log.warning("job.retry_later", code=error.code, attempts=attempts, delay_s=delay)

    def _each(
        self, claims: Sequence[Claim], action: Callable[[Claim], object], event: str = ""
    ) -> None:
        for claim in claims:
            with job_context(claim.job.id, claim.job.owner):
                action(claim)
                if event:
                    log.info(event, worker=self.name)

    def _log_each(self, claims: Sequence[Claim], event: str, **values: object) -> None:
        for claim in claims:
            with job_context(claim.job.id, claim.job.owner):
                log.info(event, worker=self.name, attempt=claim.job.attempts, **values)


class _StepTracker:
    """The generator's per-step callback: progress, cancel, timeout and shutdown checks."""

    def __init__(
        self, ctx: WorkerContext, claims: Sequence[Claim], started: float, heartbeat: Heartbeat
    ) -> None:
        self.ctx, self.claims, self.heartbeat = ctx, claims, heartbeat
        self.deadline = started + ctx.settings.job_timeout_s
        self.canceled: set[str] = set()
        self._last_report = started  # a job shorter than one interval writes no progress

    def __call__(self, info: StepInfo) -> None:
        self.heartbeat.beat()
        if self.ctx.abort.is_set():
            raise Released
        now = time.monotonic()
        if now > self.deadline:
            raise GenerationTimeout(
                f"The job ran past the {self.ctx.settings.job_timeout_s:g} s job timeout."
            )
        due = now - self._last_report >= PROGRESS_EVERY_S and info.step < info.total
        if due or info.previews:
            self._last_report = now
            self._report(info)

    def _report(self, info: StepInfo) -> None:
        previews: Sequence[Image | None] = info.previews or [None] * len(self.claims)
        for claim, preview in zip(self.claims, previews, strict=True):
            # A second-order scheduler (or a batch split after running out of memory) can
            # count past the job's steps: previews are named within 1..steps, where the
            # output gate's clean-up looks when it withholds the images.
            step = max(1, min(info.step, claim.job.spec.steps))
            key = self._store_preview(claim.job.id, step, preview)
            if self.ctx.store.report_progress(claim, info.step, info.total, key, step):
                self.canceled.add(claim.job.id)
        if len(self.canceled) == len(self.claims):
            raise GenerationCanceled

    def _store_preview(self, job_id: str, step: int, preview: Image | None) -> str | None:
        """Previews pass the output gate too: a flagged one is simply not kept."""
        if preview is None:
            return None
        if not self.ctx.gate.passes(preview):
            metrics.OUTPUT_MODERATION.labels("preview_withheld").inc()
            return None
        key = preview_key(job_id, step)
        self.ctx.storage.put(key, encode_png(preview, {"job_id": job_id, "step": str(step)}))
        return key


def _error_info(exc: Exception) -> ErrorInfo:
    """What the job's client is told. An unexpected exception's own text (paths, library
    internals) stays in the worker's log."""
    if isinstance(exc, GenerationError):
        return ErrorInfo(exc.code, exc.message, exc.retryable)
    return ErrorInfo("generation_failed", f"Generation failed ({type(exc).__name__}).", True)


def _request(job: Job) -> GenerationRequest:
    spec = job.spec
    return GenerationRequest(
        job_id=job.id,
        prompt=spec.full_prompt,
        negative_prompt=spec.negative_prompt,
        style=spec.style,
        width=spec.width,
        height=spec.height,
        steps=spec.steps,
        guidance=spec.guidance,
        seed=spec.seed,
        n=spec.n,
    )


def _encode(job: Job, index: int, image: Image, model: str) -> Encoded:
    """The image as served, in the job's format, with the generation parameters inside."""
    spec = job.spec
    return encode(
        image,
        spec.output_format,
        spec.output_compression,
        {
            "prompt": spec.full_prompt,
            "negative_prompt": spec.negative_prompt or "",
            "seed": str(spec.seed + index),
            "model": model,
            "size": f"{spec.width}x{spec.height}",
            "steps": str(spec.steps),
            "guidance": str(spec.guidance),
            "job_id": job.id,
        },
    )
