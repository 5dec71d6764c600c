"""Typed results: the job, its images, a page of jobs or images, usage, a browser token.

Every model keeps fields it does not know (``extra="allow"``), so a newer server that adds
fields does not break an older SDK; fields an older server may lack have defaults.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, TypedDict

from pydantic import BaseModel, ConfigDict, Field

FINAL_STATUSES = frozenset({"completed", "failed", "canceled"})


class Model(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class Placeholder(Model):
    """A tiny stand-in to show (blurred) while the image loads."""

    thumbhash: str
    data_url: str


class Image(Model):
    id: str
    url: str = Field(description="A signed URL: anyone holding it can fetch the PNG.")
    width: int
    height: int
    content_type: str = "image/png"  # or image/webp, image/jpeg
    placeholder: Placeholder | None = None  # None for older images (and in events)


class Failure(Model):
    """Why a job failed."""

    code: str
    message: str
    retryable: bool = False


class Metadata(Model):
    seed: int
    model: str
    generation_time_ms: int
    batch_size: int = 1
    cache: str | None = None


class Progress(Model):
    step: int
    total: int


class Cost(Model):
    amount: float
    currency: str
    estimated: bool


class Job(Model):
    id: str
    status: str  # pending_review, queued, generating, completed, failed or canceled
    prompt: str = ""
    full_prompt: str = ""
    style: str | None = None
    negative_prompt: str | None = None
    width: int | None = None
    height: int | None = None
    steps: int | None = None
    guidance: float | None = None
    seed: int | None = None
    n: int = 1
    priority: int = 0
    attempts: int = 0
    error: Failure | None = None
    images: list[Image] = Field(default_factory=list)
    metadata: Metadata | None = None
    progress: Progress | None = None
    cancel_requested: bool = False
    queue_position: int | None = None
    eta_s: float | None = None
    webhook_url: str | None = None
    moderation: dict[str, Any] | None = None
    warnings: list[str] = Field(default_factory=list)
    review: dict[str, Any] | None = None
    user: str | None = None
    cost: Cost | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES


class JobPage(Model):
    data: list[Job]
    next_cursor: str | None = None


class GalleryImage(Image):
    """An image of the gallery (``GET /v1/images``), with what made it."""

    job_id: str
    prompt: str = ""
    style: str | None = None
    seed: int | None = None
    user: str | None = None
    created_at: datetime | None = None


class ImagePage(Model):
    data: list[GalleryImage]
    next_cursor: str | None = None


class UsageBucket(Model):
    """One bucket of ``GET /v1/usage``; ``key``, ``user``, ``model`` or ``status`` too when
    grouped by them."""

    start: datetime
    end: datetime
    jobs: int
    images: int
    cost: float
    currency: str
    generation_s: float = 0.0
    key: str | None = None
    user: str | None = None
    model: str | None = None
    status: str | None = None


class Usage(Model):
    data: list[UsageBucket]


class ClientToken(Model):
    """A browser token for one end user (``POST /v1/client-tokens``)."""

    token: str
    expires_at: datetime


class JobParams(TypedDict, total=False):
    """The fields of a job besides its prompt (see docs/api.md, ``POST /v1/jobs``)."""

    style: str
    negative_prompt: str
    width: int
    height: int
    steps: int
    guidance: float
    seed: int
    n: int
    priority: int
    webhook_url: str
    user: str
    template: str
    inputs: dict[str, Any]
    cache: Literal["default", "no-cache", "no-store"]
