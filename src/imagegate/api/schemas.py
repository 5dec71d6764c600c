"""The API's pydantic schemas, mapped explicitly to and from the domain records."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from imagegate.api.links import Links
from imagegate.errors import InvalidField
from imagegate.jobs.models import Job, QueueInfo
from imagegate.jobs.specs import JobRequest
from imagegate.jobs.states import Status
from imagegate.usage.prices import from_micros


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class JobCreate(_Strict):
    prompt: str = Field(default="", description="What to draw, up to 2,000 characters.")
    template: str | None = Field(default=None, description="A template from GET /v1/templates.")
    inputs: dict[str, Any] | None = Field(default=None, description="The template's inputs.")
    style: str | None = Field(default=None, description="A style name from GET /v1/styles.")
    negative_prompt: str | None = None
    width: int | None = Field(default=None, description="Pixels, a multiple of 8.")
    height: int | None = Field(default=None, description="Pixels, a multiple of 8.")
    steps: int | None = None
    guidance: float | None = None
    seed: int | None = Field(default=None, description="Chosen and recorded when omitted.")
    n: int = Field(default=1, description="Images to generate, 1 to 4.")
    priority: int = Field(default=0, description="Higher runs first; -100 to 100.")
    output_format: Literal["png", "webp", "jpeg"] | None = Field(
        default=None, description="png (the default, lossless), webp or jpeg."
    )
    output_compression: int | None = Field(
        default=None,
        description="webp and jpeg only: the encoder's quality, 0 to 100 (default 100), as "
        "in OpenAI's Images API.",
    )
    webhook_url: str | None = Field(
        default=None,
        max_length=2000,
        description="Gets a signed POST (Standard Webhooks) when the job ends.",
    )
    user: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Your app's own id of the end user, for per-user limits and history.",
    )
    cache: str | None = Field(
        default=None,
        description="default, no-cache (generate afresh, then cache) or no-store (generate "
        "afresh, keep nothing), as the Cache-Control header also says. Only seeded requests "
        "are cached.",
    )

    def to_request(self) -> JobRequest:
        if "prompt" not in self.model_fields_set and self.template is None:
            raise InvalidField("prompt", "missing_field", "Give a prompt, or a template.")
        fields = self.model_dump(exclude={"webhook_url", "template", "inputs", "user", "cache"})
        return JobRequest(**fields)


class ErrorOut(BaseModel):
    code: str
    message: str
    retryable: bool = False


class PlaceholderOut(BaseModel):
    thumbhash: str = Field(description="The image's ThumbHash (evanw's format), base64.")
    data_url: str = Field(description="A tiny PNG of the image, to show blurred meanwhile.")


class ImageOut(BaseModel):
    id: str
    url: str
    width: int
    height: int
    content_type: str = Field(default="image/png", description="image/png, webp or jpeg.")
    placeholder: PlaceholderOut | None = Field(
        default=None, description="Shown until the image loads (None for older images)."
    )


class MetadataOut(BaseModel):
    seed: int
    model: str
    generation_time_ms: int = Field(description="How long making the images took.")
    batch_size: int
    cache: str | None = Field(
        default=None,
        description="hit (answered from the cache), collapsed (took the result of an "
        "identical job in flight), miss (generated, then cached) or bypass (generated; not "
        "cacheable: no seed, or the request said no-cache or no-store).",
    )


class ProgressOut(BaseModel):
    step: int
    total: int


class CostOut(BaseModel):
    amount: float
    currency: str
    estimated: bool = Field(description="True until the job ends and its actual cost is known.")


class JobOut(BaseModel):
    id: str
    status: Status
    prompt: str
    full_prompt: str
    style: str | None
    negative_prompt: str | None
    width: int
    height: int
    steps: int
    guidance: float
    seed: int
    n: int
    priority: int
    output_format: str = "png"
    output_compression: int | None = None
    attempts: int
    error: ErrorOut | None
    images: list[ImageOut]
    metadata: MetadataOut | None
    progress: ProgressOut | None
    cancel_requested: bool
    queue_position: int | None = Field(description="Queued jobs ahead of this one.")
    eta_s: float | None = Field(description="Likely seconds until done, while queued.")
    webhook_url: str | None
    moderation: dict[str, Any] | None = Field(description="Every safety check's outcome.")
    warnings: list[str] = Field(default_factory=list, description="Safety warnings, on submit.")
    review: dict[str, Any] | None = None
    user: str | None = Field(default=None, description="The end user the job is for.")
    cost: CostOut | None = None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def of(cls, job: Job, links: Links, queue: QueueInfo | None = None) -> JobOut:
        spec = job.spec
        return cls(
            id=job.id,
            status=job.status,
            prompt=spec.prompt,
            full_prompt=spec.full_prompt,
            style=spec.style,
            negative_prompt=spec.negative_prompt,
            width=spec.width,
            height=spec.height,
            steps=spec.steps,
            guidance=spec.guidance,
            seed=spec.seed,
            n=spec.n,
            priority=spec.priority,
            output_format=spec.output_format,
            output_compression=spec.output_compression,
            attempts=job.attempts,
            error=ErrorOut(**asdict(job.error)) if job.error else None,
            images=[
                ImageOut(
                    id=im.id,
                    url=links.image(im),
                    width=im.width,
                    height=im.height,
                    content_type=im.content_type,
                    placeholder=PlaceholderOut(**im.placeholder) if im.placeholder else None,
                )
                for im in job.images
            ],
            metadata=MetadataOut(**asdict(job.meta), cache=job.cache) if job.meta else None,
            progress=ProgressOut(**asdict(job.progress)) if job.progress else None,
            cancel_requested=job.cancel_requested,
            queue_position=queue.position if queue else None,
            eta_s=queue.eta_s if queue else None,
            webhook_url=job.webhook_url,
            moderation=job.moderation,
            review=asdict(job.review) if job.review else None,
            user=job.end_user,
            cost=_cost(job),
            created_at=job.created_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
        )


def _cost(job: Job) -> CostOut | None:
    cost = job.cost
    if cost is None:
        return None
    return CostOut(
        amount=from_micros(cost.micros), currency=cost.currency, estimated=cost.estimated
    )


class JobPage(BaseModel):
    data: list[JobOut]
    next_cursor: str | None


class StyleOut(BaseModel):
    name: str
    description: str
    suffix: str


class LegacyGenerateIn(_Strict):
    prompt: str
    style: str | None = None


class LegacyGenerateOut(BaseModel):
    job_id: str
    status: Status
    check_url: str


class LegacyStatusOut(BaseModel):
    id: str
    status: Status
    result_url: str | None
    error: str | None
