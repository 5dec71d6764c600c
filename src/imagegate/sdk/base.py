"""What :class:`~imagegate.sdk.Client` and :class:`~imagegate.sdk.AsyncClient` share, with
no I/O in it: building requests, the retry decisions, reading answers and outcomes.

Every POST carries an ``Idempotency-Key`` (a new UUID per call unless one is given), the
same on each retry, so a retried submission never makes a second job.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol, TypeVar

import httpx
from pydantic import BaseModel

import imagegate
from imagegate.sdk.auth import Credentials
from imagegate.sdk.errors import (
    GenerationTimeoutError,
    JobCanceledError,
    JobFailedError,
    connection_error,
)
from imagegate.sdk.models import Job
from imagegate.sdk.retries import Deadline, RetryPolicy

DEFAULT_BASE_URL = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
# A stream is quiet between events; the server sends a keep-alive every 15 s by default.
STREAM_READ_TIMEOUT_S = 60.0
USER_AGENT = f"imagegate-python/{imagegate.__version__}"
NO_DEADLINE = Deadline()
ABANDON_TIMEOUT_S = 10.0  # for canceling the job of a generate() that ran out of time
M = TypeVar("M", bound=BaseModel)
T_co = TypeVar("T_co", covariant=True)


class Page(Protocol[T_co]):
    """A page of a listing: its items, and the cursor of the next page (None at the end)."""

    @property
    def data(self) -> Sequence[T_co]: ...

    @property
    def next_cursor(self) -> str | None: ...


class BaseClient:
    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None,
        token: str | None,
        token_provider: object | None,
        timeout: float | httpx.Timeout | None,
        retry: RetryPolicy | None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._credentials = Credentials.of(api_key, token, token_provider)
        self._timeout = _timeout_of(timeout)
        self.retry = retry or RetryPolicy()

    def _build(
        self,
        http: httpx.Client | httpx.AsyncClient,
        method: str,
        target: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        deadline: Deadline = NO_DEADLINE,
        streaming: bool = False,
    ) -> httpx.Request:
        """A request to an API path (with the credential), or to an absolute URL such as a
        signed image link (without it: the link is the capability, and may point at S3)."""
        sent = dict(headers or {})
        if target.startswith("/"):
            sent |= self._credentials.headers()
        timeout = self._timeout
        if streaming:
            timeout = httpx.Timeout(
                connect=timeout.connect,
                read=max(timeout.read or 0.0, STREAM_READ_TIMEOUT_S),
                write=timeout.write,
                pool=timeout.pool,
            )
        return http.build_request(
            method,
            target,
            params=_query(params) if params else None,  # {} would drop a URL's own query
            json=json,
            headers=sent,
            timeout=deadline.cap(timeout),
        )

    def _wait_after_error(
        self, attempt: int, deadline: Deadline, error: httpx.TransportError
    ) -> float:
        """Seconds to wait before trying again; raises when it is not tried again."""
        wait = self.retry.after_error(attempt, error)
        if wait is None or not deadline.allows(wait):
            raise connection_error(error) from error
        return wait

    def _wait_after(
        self, attempt: int, deadline: Deadline, response: httpx.Response
    ) -> float | None:
        wait = self.retry.after_response(attempt, response)
        return wait if wait is not None and deadline.allows(wait) else None

    def _refresh_after(self, response: httpx.Response, refreshed: bool) -> bool:
        """A 401 with a token provider: ask it for a new token, once per request."""
        return response.status_code == 401 and not refreshed and self._credentials.forget()

    def _http_options(self, headers: Mapping[str, str] | None) -> dict[str, Any]:
        return {
            "base_url": self.base_url,
            "headers": {"User-Agent": USER_AGENT, **(headers or {})},
            "timeout": self._timeout,
            "follow_redirects": False,
        }


def idempotency_headers(method: str, key: str | None) -> dict[str, str]:
    if method != "POST":
        return {}
    return {"Idempotency-Key": key or new_idempotency_key()}


def new_idempotency_key() -> str:
    return str(uuid.uuid4())


def job_body(prompt: str | None, params: Mapping[str, Any]) -> dict[str, Any]:
    body = {"prompt": prompt} if prompt is not None else {}
    return body | {name: value for name, value in params.items() if value is not None}


def parsed(response: httpx.Response, model: type[M]) -> M:
    return model.model_validate(response.json())


def outcome(job: Job) -> Job:
    """A finished job, or the error of one that ended without images."""
    if job.status == "failed":
        error = job.error
        detail = error.message if error else "The job failed."
        code = error.code if error else "failed"
        raise JobFailedError(detail, job=job, code=code)
    if job.status == "canceled":
        raise JobCanceledError("The job was canceled.", job=job, code="canceled")
    return job


def token_body(
    user: str, ttl_s: int | None, max_jobs: int | None, templates: Iterable[str] | None
) -> dict[str, Any]:
    body: dict[str, Any] = {"user": user, "ttl_s": ttl_s, "max_jobs": max_jobs}
    body = {name: value for name, value in body.items() if value is not None}
    if templates is not None:
        body["templates"] = list(templates)
    return body


def timeout_error(
    timeout: float | None, job_id: str | None, job: Job | None
) -> GenerationTimeoutError:
    detail = f"The job did not finish within {timeout} s"
    if job is None:
        detail += "; canceling it on the server was not confirmed."
    elif job.status in ("canceled", "failed", "completed"):
        detail += f", and is now {job.status}."
    else:
        detail += ", so it was canceled; it stops at its next step."
    return GenerationTimeoutError(detail, job_id=job_id, job=job)


def image_url(image: object) -> str:
    url = getattr(image, "url", image)
    if not isinstance(url, str):
        raise TypeError("download() takes an image (with a url) or its signed URL")
    return url


def _query(params: Mapping[str, Any]) -> dict[str, str | int | float]:
    """Query parameters without the unset ones; datetimes in ISO 8601."""
    query: dict[str, str | int | float] = {}
    for name, value in params.items():
        if value is None:
            continue
        query[name] = value.isoformat() if isinstance(value, datetime) else value
    return query


def _timeout_of(timeout: float | httpx.Timeout | None) -> httpx.Timeout:
    if timeout is None:
        return DEFAULT_TIMEOUT
    return timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)
