"""Domain records of a job. Frozen dataclasses: the store makes them, nothing mutates them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from imagegate.jobs.states import Status

LOCAL_OWNER = "local"


@dataclass(frozen=True, slots=True)
class JobSpec:
    """What the caller asked for, with every default filled in and the seed chosen."""

    prompt: str
    full_prompt: str
    style: str | None
    negative_prompt: str | None
    width: int
    height: int
    steps: int
    guidance: float
    seed: int
    n: int = 1
    priority: int = 0
    output_format: str = "png"  # png, webp or jpeg
    output_compression: int | None = None  # webp and jpeg: 0-100; None: the encoder's default


@dataclass(frozen=True, slots=True)
class ImageRecord:
    id: str
    job_id: str
    index: int
    storage_key: str
    width: int
    height: int
    size_bytes: int
    content_type: str = "image/png"
    sha256: str | None = None  # None: stored before content addressing
    placeholder: dict[str, str] | None = None  # {"thumbhash", "data_url"}


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    code: str
    message: str
    retryable: bool = False


@dataclass(frozen=True, slots=True)
class GenerationMeta:
    seed: int
    model: str
    generation_time_ms: int
    batch_size: int = 1


@dataclass(frozen=True, slots=True)
class Progress:
    step: int
    total: int


@dataclass(frozen=True, slots=True)
class Job:
    id: str
    owner: str
    spec: JobSpec
    status: Status
    attempts: int
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: ErrorInfo | None = None
    meta: GenerationMeta | None = None
    progress: Progress | None = None
    cancel_requested: bool = False
    images: tuple[ImageRecord, ...] = field(default=())
    webhook_url: str | None = None
    moderation: dict[str, Any] | None = None
    review: Review | None = None
    key_id: str | None = None
    end_user: str | None = None
    cost: Cost | None = None
    cache: str | None = None  # hit, collapsed, miss or bypass (imagegate.cache)


@dataclass(frozen=True, slots=True)
class Cost:
    micros: int  # millionths of the currency's unit
    currency: str
    estimated: bool  # True until the job ends


@dataclass(frozen=True, slots=True)
class Review:
    decision: str  # approved or rejected
    by: str
    at: datetime


@dataclass(frozen=True, slots=True)
class QueueInfo:
    """Where a queued job stands: jobs ahead of it, and the likely wait in seconds."""

    position: int
    eta_s: float | None


@dataclass(frozen=True, slots=True)
class Claim:
    """A job a worker holds under a lease. ``token`` proves the lease in every later call."""

    job: Job
    token: str
