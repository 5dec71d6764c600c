"""What the SDK raises: one tree, typed from the problem ``code`` the server sends.

Every error carries ``status`` (the HTTP status, or None when no answer came), ``code``
(the server's stable code, what to branch on), ``field`` (the field at fault, if any),
``detail`` (the human sentence) and ``problem`` (the whole RFC 9457 body)::

    ImageGateError
    ├── APIConnectionError            no answer, after every retry (network, DNS, reset)
    │   └── APITimeoutError           a request ran out of time; also a TimeoutError
    ├── APIStatusError                the server refused (a problem+json 4xx or 5xx)
    │   ├── BadRequestError           400, 413, and 4xx codes not named below
    │   │   ├── ValidationError       422: a field's value is refused (``field``)
    │   │   │   └── IdempotencyKeyReusedError   the key came with another body
    │   │   └── ContentPolicyError    content_policy_violation (``field``: "prompt")
    │   ├── AuthenticationError       401 unauthorized
    │   ├── BudgetExceededError       402 budget_exceeded
    │   ├── PermissionDeniedError     403 forbidden, invalid_signature, origin_forbidden
    │   ├── NotFoundError             404, also for another tenant's object
    │   ├── ConflictError             409 illegal_transition (canceling a finished job)
    │   ├── RateLimitError            429 rate_limited, quota_exceeded (``retry_after``)
    │   ├── ServiceUnavailableError   503 queue_full, database_unavailable, … (``retry_after``)
    │   └── ServerError               other 5xx
    ├── JobError                      a followed job ended without images (``job``)
    │   ├── JobFailedError            it failed: ``code`` and ``retryable`` from the job
    │   └── JobCanceledError          it was canceled
    ├── GenerationTimeoutError        generate()'s deadline passed; the job was canceled
    │                                 on the server; also a TimeoutError
    └── WebhookVerificationError      a webhook's signature or timestamp does not verify
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx

from imagegate.sdk.retries import retry_after_s

if TYPE_CHECKING:
    from imagegate.sdk.models import Job


class ImageGateError(Exception):
    """Something went wrong talking to ImageGate."""

    def __init__(
        self,
        detail: str,
        *,
        status: int | None = None,
        code: str = "error",
        field: str | None = None,
        problem: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status
        self.code = code
        self.field = field
        self.problem = problem or {}

    def __str__(self) -> str:
        return self.detail

    def __repr__(self) -> str:
        where = f", field={self.field!r}" if self.field else ""
        name = type(self).__name__
        return f"{name}({self.detail!r}, status={self.status}, code={self.code!r}{where})"


class APIConnectionError(ImageGateError):
    """The server could not be reached."""


class APITimeoutError(APIConnectionError, TimeoutError):
    """The request timed out."""


class APIStatusError(ImageGateError):
    """The server refused the request; the response is kept as ``response``."""

    def __init__(self, detail: str, *, response: httpx.Response, **fields: Any) -> None:
        super().__init__(detail, status=response.status_code, **fields)
        self.response = response
        self.headers = response.headers


class BadRequestError(APIStatusError):
    """The request is not valid."""


class ValidationError(BadRequestError):
    """A field of the request has a value the server does not accept."""


class IdempotencyKeyReusedError(ValidationError):
    """This Idempotency-Key was used with another request body."""


class ContentPolicyError(BadRequestError):
    """The prompt was refused by the content policy."""

    @property
    def categories(self) -> list[str]:
        return list(self.problem.get("categories") or [])


class AuthenticationError(APIStatusError):
    """The credential is missing, unknown, revoked or expired."""


class BudgetExceededError(APIStatusError):
    """The job's estimated cost would pass a budget."""


class PermissionDeniedError(APIStatusError):
    """The credential may not do this."""


class NotFoundError(APIStatusError):
    """No such object (or not yours)."""


class ConflictError(APIStatusError):
    """The object's state does not allow this."""


class _RetryLater(APIStatusError):
    @property
    def retry_after(self) -> float | None:
        """The server's ``Retry-After``, in seconds."""
        return retry_after_s(self.headers.get("retry-after"))


class RateLimitError(_RetryLater):
    """A rate limit, cap or quota was reached."""


class ServiceUnavailableError(_RetryLater):
    """The service (or one of its dependencies) is unavailable for a moment."""


class ServerError(APIStatusError):
    """The server failed."""


class JobError(ImageGateError):
    """The job ended without images."""

    def __init__(self, detail: str, *, job: Job, **fields: Any) -> None:
        super().__init__(detail, **fields)
        self.job = job


class JobFailedError(JobError):
    """The job failed."""

    @property
    def retryable(self) -> bool:
        return bool(self.job.error and self.job.error.retryable)


class JobCanceledError(JobError):
    """The job was canceled."""


class GenerationTimeoutError(ImageGateError, TimeoutError):
    """The deadline passed before the job finished; the job was canceled on the server."""

    def __init__(self, detail: str, *, job_id: str | None, job: Job | None = None) -> None:
        super().__init__(detail, code="deadline_exceeded")
        self.job_id = job_id
        self.job = job  # the job as it was after the cancel, when it could be read


class WebhookVerificationError(ImageGateError):
    """The webhook does not verify."""


BY_CODE: dict[str, type[APIStatusError]] = {
    "content_policy_violation": ContentPolicyError,
    "idempotency_key_reused": IdempotencyKeyReusedError,
    "unauthorized": AuthenticationError,
    "budget_exceeded": BudgetExceededError,
    "forbidden": PermissionDeniedError,
    "invalid_signature": PermissionDeniedError,
    "origin_forbidden": PermissionDeniedError,
    "illegal_transition": ConflictError,
    "rate_limited": RateLimitError,
    "quota_exceeded": RateLimitError,
}
BY_STATUS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    402: BudgetExceededError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    413: BadRequestError,
    422: ValidationError,
    429: RateLimitError,
    503: ServiceUnavailableError,
}


def error_from_response(response: httpx.Response) -> APIStatusError:
    """The typed error for a refused request (its body must have been read)."""
    problem = _problem(response)
    status = response.status_code
    code = str(problem.get("code") or response.reason_phrase.lower().replace(" ", "_"))
    fallback = ServerError if status >= 500 else BadRequestError
    kind = BY_CODE.get(code) or BY_STATUS.get(status) or fallback
    detail = str(problem.get("detail") or response.reason_phrase or f"HTTP {status}")
    field = problem.get("field")
    return kind(
        detail,
        response=response,
        code=code,
        field=str(field) if field is not None else None,
        problem=problem,
    )


def _problem(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def connection_error(exc: httpx.TransportError) -> APIConnectionError:
    kind = APITimeoutError if isinstance(exc, httpx.TimeoutException) else APIConnectionError
    return kind(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__, code="network")
