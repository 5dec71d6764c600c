"""The synchronous client (:mod:`imagegate.sdk.async_client` is its twin)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from types import TracebackType
from typing import Any, Literal, Unpack

import httpx

from imagegate.sdk.auth import TokenProvider
from imagegate.sdk.base import (
    ABANDON_TIMEOUT_S,
    DEFAULT_BASE_URL,
    NO_DEADLINE,
    BaseClient,
    idempotency_headers,
    job_body,
    new_idempotency_key,
    parsed,
    timeout_error,
    token_body,
)
from imagegate.sdk.errors import ConflictError, ImageGateError, error_from_response
from imagegate.sdk.events import Event
from imagegate.sdk.generation import DeadlinePassed, Generation
from imagegate.sdk.models import ClientToken, Job, JobParams, Usage
from imagegate.sdk.resources import Images, Jobs
from imagegate.sdk.retries import Deadline, RetryPolicy


class Client(BaseClient):
    """ImageGate over HTTP. ``transport`` is the seam: any ``httpx.BaseTransport`` (a
    ``WSGITransport``, a ``MockTransport``, a proxy). Use it as a context manager, or call
    :meth:`close`."""

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        *,
        api_key: str | None = None,
        token: str | None = None,
        token_provider: TokenProvider | None = None,
        timeout: float | httpx.Timeout | None = None,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(
            base_url,
            api_key=api_key,
            token=token,
            token_provider=token_provider,
            timeout=timeout,
            retry=retry,
        )
        self._provider = token_provider
        self._http = httpx.Client(transport=transport, **self._http_options(headers))
        self.jobs = Jobs(self)
        self.images = Images(self)

    def generate(
        self,
        prompt: str | None = None,
        *,
        timeout: float | None = None,
        on_event: Callable[[Event], None] | None = None,
        idempotency_key: str | None = None,
        **params: Unpack[JobParams],
    ) -> Job:
        """Submit, follow the job's events (``on_event`` gets each, in this thread), and
        return the completed job. A failed or canceled job raises :class:`JobFailedError`
        or :class:`JobCanceledError`. Past ``timeout`` seconds (the whole call, submission
        included) the job is canceled on the server and :class:`GenerationTimeoutError`
        is raised. Ctrl-C cancels the job too (and ``KeyboardInterrupt`` goes on)."""
        key = idempotency_key or new_idempotency_key()
        run = Generation(self, prompt, key, params)
        try:
            return run.wait(Deadline.after(timeout), on_event)
        except DeadlinePassed:
            job_id, job = self._abandon(run.job_id, key, job_body(prompt, params))
            raise timeout_error(timeout, job_id, job) from None
        except KeyboardInterrupt:
            self._abandon(run.job_id, key, job_body(prompt, params))
            raise

    def usage(
        self,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        bucket: Literal["1h", "1d"] | None = None,
        group_by: Iterable[str] = (),
    ) -> Usage:
        """What the tenant's jobs cost, per hour or day (needs ``usage:read``)."""
        query = {"start": start, "end": end, "bucket": bucket, "group_by": ",".join(group_by)}
        return parsed(self._send("GET", "/v1/usage", params=query), Usage)

    def create_client_token(
        self,
        user: str,
        *,
        ttl_s: int | None = None,
        max_jobs: int | None = None,
        templates: Iterable[str] | None = None,
    ) -> ClientToken:
        """A browser token for one of your end users (with a secret key)."""
        body = token_body(user, ttl_s, max_jobs, templates)
        return parsed(self._send("POST", "/v1/client-tokens", json=body), ClientToken)

    def request(self, method: str, path: str, **parts: Any) -> httpx.Response:
        """Any route, with the credential, retries and typed errors (``params``, ``json``,
        ``headers``, ``idempotency_key``)."""
        return self._send(method, path, **parts)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _send(
        self,
        method: str,
        target: str,
        *,
        idempotency_key: str | None = None,
        headers: Mapping[str, str] | None = None,
        deadline: Deadline = NO_DEADLINE,
        stream: bool = False,
        **parts: Any,
    ) -> httpx.Response:
        """Send, retrying as :class:`RetryPolicy` says; a refusal raises its typed error."""
        sent = {**(headers or {}), **idempotency_headers(method, idempotency_key)}
        attempt, refreshed = 0, False
        while True:
            self._authorize()
            request = self._build(
                self._http,
                method,
                target,
                headers=sent,
                deadline=deadline,
                streaming=stream,
                **parts,
            )
            try:
                response = self._http.send(request, stream=stream)
            except httpx.TransportError as exc:
                time.sleep(self._wait_after_error(attempt, deadline, exc))
                attempt += 1
                continue
            if self._refresh_after(response, refreshed):
                refreshed = True
                response.close()
                continue
            wait = self._wait_after(attempt, deadline, response)
            if wait is None:
                return self._checked(response)
            response.close()
            time.sleep(wait)
            attempt += 1

    def _authorize(self) -> None:
        if self._provider is not None and self._credentials.needs_token():
            self._credentials.store(self._provider())

    @staticmethod
    def _checked(response: httpx.Response) -> httpx.Response:
        if response.is_error:
            response.read()
            response.close()
            raise error_from_response(response)
        return response

    def _abandon(
        self, job_id: str | None, key: str, body: dict[str, Any]
    ) -> tuple[str | None, Job | None]:
        """Cancel the job of a generate() that gave up, and read it back. Not knowing its
        id (the submission was still on its way), resend the submission with the same
        Idempotency-Key: that answers with the very job, or makes it, to be canceled."""
        deadline = Deadline.after(ABANDON_TIMEOUT_S)
        try:
            if job_id is None:
                submitted = self._send(
                    "POST", "/v1/jobs", json=body, idempotency_key=key, deadline=deadline
                )
                job_id = parsed(submitted, Job).id
            return job_id, self._cancel_or_read(job_id, deadline)
        except ImageGateError:
            return job_id, None

    def _cancel_or_read(self, job_id: str, deadline: Deadline) -> Job:
        try:
            return parsed(self._send("POST", f"/v1/jobs/{job_id}/cancel", deadline=deadline), Job)
        except ConflictError:  # it finished meanwhile
            return parsed(self._send("GET", f"/v1/jobs/{job_id}", deadline=deadline), Job)
