"""The one exception tree of ImageGate.

Each class carries a stable ``code`` (what clients branch on), an HTTP ``status`` (what the
API answers) and, as its docstring, the default message. The API maps the whole tree to
RFC 9457 problem+json in one place (:mod:`imagegate.api.problems`)::

    ImageGateError
    ├── InvalidRequest (422)
    │   ├── InvalidField (422)            a field's value is refused; names the field
    │   ├── MalformedBody (400)           the body is not JSON
    │   ├── UntrustedHost (400)           the Host header is not one of ours
    │   └── BodyTooLarge (413)
    ├── NotFound (404)
    │   ├── JobNotFound
    │   ├── ImageNotFound
    │   ├── KeyNotFound
    │   └── TenantNotFound
    ├── PromptRefused (400)               the safety pipeline blocked the prompt
    ├── Unauthorized (401)                no credential, or a bad, revoked or expired one
    ├── BudgetExceeded (402)              the job's estimated cost would pass a budget
    ├── Forbidden (403)                   the credential lacks the scope, or the object
    │   ├── BadSignature                  tampered or expired signed URL
    │   └── CrossOriginRefused            a page on a site not allowed sent the request
    ├── Conflict (409)
    │   └── IllegalTransition             the job's state does not allow this
    ├── RateLimited (429)                 a rate limit or concurrency cap; Retry-After
    │   └── QuotaExceeded                 a daily quota
    ├── ServiceUnavailable (503)          Retry-After
    │   ├── DatabaseUnavailable           the database is restarting or unreachable
    │   ├── StorageUnavailable            the image storage (S3) cannot be reached
    │   ├── ModelUnavailable              the model is missing; says how to fetch it
    │   ├── QueueFull                     the queue is at IMAGEGATE_MAX_QUEUE_DEPTH
    │   └── TooManyStreams                open event streams at IMAGEGATE_MAX_EVENT_STREAMS
    ├── WaitTimeout (504)                 a request waiting for its job outlived the timeout
    ├── RemoteError (502)                 another ImageGate refused a client's request
    └── GenerationError (500)             raised inside a worker; recorded on the job
        ├── GenerationCanceled
        ├── GenerationTimeout
        └── UpstreamError (502)           an image provider (the openai backend) failed
            ├── ContentPolicyViolation (400)  the provider refused the prompt's content
            ├── UpstreamRateLimited (429)     still rate limited after our retries
            ├── UpstreamUnavailable (502)     5xx or unreachable, after our retries
            └── UpstreamBadRequest (400)      the provider refused the request itself
"""

from __future__ import annotations

from typing import Any, ClassVar


class ImageGateError(Exception):
    """Something went wrong in ImageGate."""

    code: ClassVar[str] = "internal_error"
    status: ClassVar[int] = 500
    retryable: ClassVar[bool] = False
    retry_after_s: int | None = None  # sent as Retry-After

    def __init__(self, message: str | None = None, **extra: Any) -> None:
        self.message = message or (self.__doc__ or "").strip().splitlines()[0]
        self.extra = extra
        self.headers: dict[str, str] = {}  # more response headers (RateLimit, say)
        super().__init__(self.message)


class InvalidRequest(ImageGateError):
    """The request is not valid."""

    code = "invalid_request"
    status = 422


class InvalidField(InvalidRequest):
    """A field of the request has a value that is not accepted."""

    def __init__(self, field: str, code: str, message: str, **extra: Any) -> None:
        super().__init__(message, **extra)
        self.field = field
        self.code = code  # type: ignore[misc]  # the field's own stable code


class MalformedBody(InvalidRequest):
    """The request body is not valid JSON."""

    code = "malformed_json"
    status = 400


class UntrustedHost(InvalidRequest):
    """The request's Host is not one of this server's names."""

    code = "host_untrusted"
    status = 400


class BodyTooLarge(InvalidRequest):
    """The request body is larger than this server accepts."""

    code = "body_too_large"
    status = 413


class NotFound(ImageGateError):
    """No such resource."""

    code = "not_found"
    status = 404


class JobNotFound(NotFound):
    """No job has this id."""

    code = "job_not_found"


class ImageNotFound(NotFound):
    """No image has this id."""

    code = "image_not_found"


class KeyNotFound(NotFound):
    """No API key has this id."""

    code = "key_not_found"


class TenantNotFound(NotFound):
    """No tenant has this name."""

    code = "tenant_not_found"


class PromptRefused(ImageGateError):
    """The prompt was refused by the content policy."""

    code = "content_policy_violation"
    status = 400


class Unauthorized(ImageGateError):
    """This needs a valid credential (Authorization: Bearer …)."""

    code = "unauthorized"
    status = 401


class BudgetExceeded(ImageGateError):
    """The job's estimated cost would pass the budget for this period."""

    code = "budget_exceeded"
    status = 402


class Forbidden(ImageGateError):
    """You may not access this resource."""

    code = "forbidden"
    status = 403


class BadSignature(Forbidden):
    """The signed URL is invalid or has expired."""

    code = "invalid_signature"


class CrossOriginRefused(Forbidden):
    """A page on another site may not send this request."""

    code = "origin_forbidden"


class Conflict(ImageGateError):
    """The request conflicts with the resource's current state."""

    code = "conflict"
    status = 409


class IllegalTransition(Conflict):
    """The job's current state does not allow this."""

    code = "illegal_transition"


class RateLimited(ImageGateError):
    """Too many requests: a rate limit was reached."""

    code = "rate_limited"
    status = 429

    def __init__(self, message: str | None = None, retry_after_s: int = 1, **extra: Any):
        super().__init__(message, **extra)
        self.retry_after_s = max(1, retry_after_s)


class QuotaExceeded(RateLimited):
    """The daily quota is used up."""

    code = "quota_exceeded"


class ServiceUnavailable(ImageGateError):
    """The service is not ready."""

    code = "service_unavailable"
    status = 503
    retry_after_s = 5


class QueueFull(ServiceUnavailable):
    """The queue is full; try again shortly."""

    code = "queue_full"


class TooManyStreams(ServiceUnavailable):
    """This server follows as many event streams as it may; try again shortly."""

    code = "too_many_streams"
    retry_after_s = 2


class DatabaseUnavailable(ServiceUnavailable):
    """The database is unavailable for a moment; try again shortly."""

    code = "database_unavailable"
    retry_after_s = 2


class StorageUnavailable(ServiceUnavailable):
    """The image storage cannot be reached; try again shortly."""

    code = "storage_unavailable"


class ModelUnavailable(ServiceUnavailable):
    """The generator's model is not available here."""

    code = "model_unavailable"


class WaitTimeout(ImageGateError):
    """The job did not finish within the time this request waits for it."""

    code = "wait_timeout"
    status = 504


class RemoteError(ImageGateError):
    """The ImageGate server refused the request."""

    code = "remote_error"
    status = 502


class GenerationError(ImageGateError):
    """The image could not be generated."""

    code = "generation_failed"
    retryable = True


class GenerationCanceled(GenerationError):
    """The job was canceled."""

    code = "canceled"
    retryable = False


class GenerationTimeout(GenerationError):
    """The job ran longer than the job timeout allows."""

    code = "timeout"
    retryable = True


class UpstreamError(GenerationError):
    """The image provider gave an answer that could not be used."""

    code = "upstream_error"
    status = 502


class ContentPolicyViolation(UpstreamError):
    """The image provider refused the prompt under its content policy."""

    code = "content_policy_violation"
    status = 400
    retryable = False


class UpstreamRateLimited(UpstreamError):
    """The image provider is still rate limiting us after every retry."""

    code = "rate_limited"
    status = 429


class UpstreamUnavailable(UpstreamError):
    """The image provider is unavailable."""

    code = "upstream_unavailable"
    status = 502


class UpstreamBadRequest(UpstreamError):
    """The image provider refused the request as invalid."""

    code = "upstream_bad_request"
    status = 400
    retryable = False
