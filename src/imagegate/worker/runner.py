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
from dataclasses import dataclass
from functools import partial

import structlog
from PIL.Image import Image

from imagegate.errors import GenerationCanceled, GenerationError, GenerationTimeout
from imagegate.generators import GenerationRequest, Generator, StepInfo
from imagegate.jobs.models import Claim, ErrorInfo, GenerationMeta, ImageRecord, Job
from imagegate.jobs.retry import backoff_s
from imagegate.jobs.store import JobStore
from imagegate.settings import Settings
from imagegate.storage import Storage
from imagegate.storage.keys import image_key, preview_key
from imagegate.storage.png import encode_png
from imagegate.worker.leases import LeaseKeeper
from imagegate.worker.output_gate import OUTPUT_BLOCKED, OutputGate, Screened

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

    def run(self, stopping: threading.Event) -> None:
        """Claim and run jobs until ``stopping`` is set; sleeps when the queue is empty."""
        wakeup = self.ctx.store.wakeup
        try:
            while not stopping.is_set():
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
        try:
            claims += self._gather(claims[0])
            self._generated = self._generate(claims)
        finally:
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
        generated, self._generated = self._generated, None
        if generated is not None:
            self._safely(self._await_finishing)
            self._finishing = self._finisher.submit(self._finish, generated)

    def _await_finishing(self) -> None:
        finishing, self._finishing = self._finishing, None
        if finishing is not None:
            finishing.result()

    def _generate(self, claims: Sequence[Claim]) -> _Rendered | None:
        """Run the model; on failure record each job's outcome and return None."""
        started = time.monotonic()
        tracker = _StepTracker(self.ctx, claims, started)
        try:
            images = self.ctx.generator.generate([_request(c.job) for c in claims], tracker)
        except Released:
            self._each(claims, self.ctx.store.release)
        except GenerationCanceled:
            self._each(claims, self.ctx.store.finish_canceled)
        except GenerationTimeout as timeout:
            error = ErrorInfo(timeout.code, timeout.message, timeout.retryable)
            self._each(claims, partial(self.ctx.store.fail, error=error))
        except Exception as exc:
            log.exception("generation.error", jobs=[c.job.id for c in claims])
            self._each(claims, partial(self._retry_or_fail, exc=exc))
        else:
            elapsed_ms = round((time.monotonic() - started) * 1000)
            return _Rendered(claims, images, elapsed_ms, frozenset(tracker.canceled))
        return None

    def _finish(self, rendered: _Rendered) -> None:
        try:
            for claim, images in zip(rendered.claims, rendered.images, strict=True):
                if claim.job.id in rendered.canceled:
                    self.ctx.store.finish_canceled(claim)
                else:
                    self._record_or_retry(claim, images, rendered)
        finally:
            self.ctx.leases.drop(rendered.claims[0].token)

    def _record_or_retry(self, claim: Claim, images: list[Image], rendered: _Rendered) -> None:
        try:
            self._record(claim, images, rendered.elapsed_ms, len(rendered.claims))
        except Exception as exc:
            log.exception("job.record_failed", job=claim.job.id)
            self._retry_or_fail(claim, exc)

    def _record(self, claim: Claim, images: list[Image], elapsed_ms: int, batch: int) -> None:
        job, model = claim.job, self.ctx.generator.model_name
        screened = self.ctx.gate.screen(job, images)
        pngs = [_png(job, i, image, model) for i, image in enumerate(images)]
        meta = GenerationMeta(job.spec.seed, model, elapsed_ms, batch)
        if screened.blocked:
            self._withhold(claim, pngs, meta, screened)
            return
        stored = [
            self._store_image(job, i, png, image)
            for i, (png, image) in enumerate(zip(pngs, images, strict=True))
        ]
        if self.ctx.store.complete(claim, stored, meta, screened.moderation):
            log.info("job.completed", job=job.id, ms=elapsed_ms, worker=self.name)
            return
        # Our lease was taken over: another attempt owns the result, so drop our files.
        log.warning("job.lease_lost", job=job.id, worker=self.name)
        for image in stored:
            self.ctx.storage.delete(image.storage_key)

    def _withhold(
        self, claim: Claim, pngs: list[bytes], meta: GenerationMeta, screened: Screened
    ) -> None:
        gate, store = self.ctx.gate, self.ctx.store
        gate.quarantine(claim.job, pngs)
        if gate.hold_for_review:
            store.hold_output(claim, meta, screened.moderation, screened.audit)
        else:
            store.fail(claim, OUTPUT_BLOCKED, screened.moderation, screened.audit)
        log.warning("job.output_withheld", job=claim.job.id, review=gate.hold_for_review)

    def _store_image(self, job: Job, index: int, png: bytes, image: Image) -> ImageRecord:
        image_id = str(uuid.uuid4())
        key = image_key(job.id, image_id)
        self.ctx.storage.put(key, png)
        return ImageRecord(image_id, job.id, index, key, image.width, image.height, len(png))

    def _retry_or_fail(self, claim: Claim, exc: Exception) -> None:
        """A backend's own error keeps its code; only a retryable one is tried again."""
        error = _error_info(exc)
        attempts = claim.job.attempts
        if not error.retryable or attempts >= self.ctx.settings.max_retries:
            self.ctx.store.fail(claim, error)
            return
        delay = backoff_s(attempts, self.ctx.settings.retry_backoff_s)
        self.ctx.store.retry_later(claim, error, delay)

    @staticmethod
    def _each(claims: Sequence[Claim], action: Callable[[Claim], object]) -> None:
        for claim in claims:
            action(claim)


class _StepTracker:
    """The generator's per-step callback: progress, cancel, timeout and shutdown checks."""

    def __init__(self, ctx: WorkerContext, claims: Sequence[Claim], started: float) -> None:
        self.ctx, self.claims = ctx, claims
        self.deadline = started + ctx.settings.job_timeout_s
        self.canceled: set[str] = set()
        self._last_report = started  # a job shorter than one interval writes no progress

    def __call__(self, info: StepInfo) -> None:
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
        if preview is None or not self.ctx.gate.passes(preview):
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


def _png(job: Job, index: int, image: Image, model: str) -> bytes:
    """The PNG as served, with the generation parameters in its text chunks."""
    spec = job.spec
    return encode_png(
        image,
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
