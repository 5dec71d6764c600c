"""The Python SDK of ImageGate: :class:`Client` and :class:`AsyncClient`, twins over httpx.

    from imagegate.sdk import Client

    with Client("http://127.0.0.1:8000", api_key="ig_sk_…") as client:
        job = client.generate("a lighthouse at dusk", style="watercolor", timeout=60)
        png = client.images.download(job.images[0])

It needs only httpx and pydantic, and imports nothing of the server. See docs/python-sdk.md.
"""

from __future__ import annotations

from imagegate.sdk import webhooks
from imagegate.sdk.async_client import AsyncClient
from imagegate.sdk.client import Client
from imagegate.sdk.errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    BudgetExceededError,
    ConflictError,
    ContentPolicyError,
    GenerationTimeoutError,
    IdempotencyKeyReusedError,
    ImageGateError,
    JobCanceledError,
    JobError,
    JobFailedError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    ServiceUnavailableError,
    ValidationError,
    WebhookVerificationError,
)
from imagegate.sdk.events import (
    CanceledEvent,
    CompletedEvent,
    Event,
    FailedEvent,
    PendingReviewEvent,
    ProgressEvent,
    QueuedEvent,
    StartedEvent,
)
from imagegate.sdk.models import (
    ClientToken,
    Cost,
    Failure,
    GalleryImage,
    Image,
    ImagePage,
    Job,
    JobPage,
    JobParams,
    Metadata,
    Placeholder,
    Progress,
    Usage,
    UsageBucket,
)
from imagegate.sdk.retries import RetryPolicy

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AsyncClient",
    "AuthenticationError",
    "BadRequestError",
    "BudgetExceededError",
    "CanceledEvent",
    "Client",
    "ClientToken",
    "CompletedEvent",
    "ConflictError",
    "ContentPolicyError",
    "Cost",
    "Event",
    "FailedEvent",
    "Failure",
    "GalleryImage",
    "GenerationTimeoutError",
    "IdempotencyKeyReusedError",
    "Image",
    "ImageGateError",
    "ImagePage",
    "Job",
    "JobCanceledError",
    "JobError",
    "JobFailedError",
    "JobPage",
    "JobParams",
    "Metadata",
    "NotFoundError",
    "PendingReviewEvent",
    "PermissionDeniedError",
    "Placeholder",
    "Progress",
    "ProgressEvent",
    "QueuedEvent",
    "RateLimitError",
    "RetryPolicy",
    "ServerError",
    "ServiceUnavailableError",
    "StartedEvent",
    "Usage",
    "UsageBucket",
    "ValidationError",
    "WebhookVerificationError",
    "webhooks",
]
