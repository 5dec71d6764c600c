"""The asynchronous client: the twin of :mod:`imagegate.sdk.client`, on any event loop that
httpx and anyio run on (asyncio or trio)."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import datetime
from types import TracebackType
from typing import Any, Literal, Unpack

import anyio
import httpx

from imagegate.sdk.async_resources import AsyncImages, AsyncJobs
from imagegate.sdk.auth import AsyncTokenProvider
from imagegate.sdk.base import (
    ABANDON_TIMEOUT_S,
    DEFAULT_BASE_URL,
    NO_DEADLINE,
    BaseClient,
    idempotency_headers,
    job_body,
    new_idempotency_key,
    outcome,
    parsed,
    timeout_error,
    token_body,
)
from imagegate.sdk.errors import ConflictError, ImageGateError, error_from_response
from imagegate.sdk.events import Event
from imagegate.sdk.models import ClientToken, Job, JobParams, Usage
from imagegate.sdk.retries import Deadline, RetryPolicy

EventHandler = Callable[[Event], Awaitable[None] | None]


class AsyncClient(BaseClient):
    """ImageGate over HTTP, async. ``transport`` is the seam: any
    ``httpx.AsyncBaseTransport``, such as ``httpx.ASGITransport(app)`` to drive an app
    in-process. Use it as an async context manager, or call :meth:`aclose`."""

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        *,
        api_key: str | None = None,
        token: str | None = None,
        token_provider: AsyncTokenProvider | None = None,
        timeout: float | httpx.Timeout | None = None,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
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
        self._http = httpx.AsyncClient(transport=transport, **self._http_options(headers))
        self.jobs = AsyncJobs(self)
        self.images = AsyncImages(self)

    async def generate(
        self,
        prompt: str | None = None,
        *,
        timeout: float | None = None,
        on_event: EventHandler | None = None,
        idempotency_key: str | None = None,
        **params: Unpack[JobParams],
    ) -> Job:
        """Submit, follow the job's events (``on_event`` gets each; it may be async), and
        return the completed job. A failed or canceled job raises :class:`JobFailedError`
        or :class:`JobCanceledError`. Past ``timeout`` seconds (the whole call, submission
        included) the job is canceled on the server and :class:`GenerationTimeoutError`
        is raised. Canceling the task that awaits this cancels the job too."""
        key = idempotency_key or new_idempotency_key()
        known: list[str] = []  # the job's id, once the submission has answered
        try:
            with anyio.move_on_after(timeout) as scope:
                return await self._run(prompt, key, params, on_event, known)
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True):
                await self._abandon(known[0] if known else None, key, job_body(prompt, params))
            raise
        assert scope.cancelled_caught  # the deadline passed
        job_id, job = await self._abandon(
            known[0] if known else None, key, job_body(prompt, params)
        )
        raise timeout_error(timeout, job_id, job)

    async def _run(
        self,
        prompt: str | None,
        key: str,
        params: JobParams,
        on_event: EventHandler | None,
        known: list[str],
    ) -> Job:
        job = await self.jobs.create(prompt, idempotency_key=key, **params)
        known.append(job.id)
        if not job.is_final:
            async for event in self.jobs.stream(job.id):
                handled = on_event(event) if on_event is not None else None
                if inspect.isawaitable(handled):
                    await handled
            job = await self.jobs.get(job.id)
        return outcome(job)

    async def usage(
        self,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        bucket: Literal["1h", "1d"] | None = None,
        group_by: Iterable[str] = (),
    ) -> Usage:
        """What the tenant's jobs cost, per hour or day (needs ``usage:read``)."""
        query = {"start": start, "end": end, "bucket": bucket, "group_by": ",".join(group_by)}
        return parsed(await self._send("GET", "/v1/usage", params=query), Usage)

    async def create_client_token(
        self,
        user: str,
        *,
        ttl_s: int | None = None,
        max_jobs: int | None = None,
        templates: Iterable[str] | None = None,
    ) -> ClientToken:
        """A browser token for one of your end users (with a secret key)."""
        body = token_body(user, ttl_s, max_jobs, templates)
        return parsed(await self._send("POST", "/v1/client-tokens", json=body), ClientToken)

    async def request(self, method: str, path: str, **parts: Any) -> httpx.Response:
        """Any route, with the credential, retries and typed errors (``params``, ``json``,
        ``headers``, ``idempotency_key``)."""
        return await self._send(method, path, **parts)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def _send(
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
            await self._authorize()
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
                response = await self._http.send(request, stream=stream)
            except httpx.TransportError as exc:
                await anyio.sleep(self._wait_after_error(attempt, deadline, exc))
                attempt += 1
                continue
            if self._refresh_after(response, refreshed):
                refreshed = True
                await response.aclose()
                continue
            wait = self._wait_after(attempt, deadline, response)
            if wait is None:
                return await self._checked(response)
            await response.aclose()
            await anyio.sleep(wait)
            attempt += 1

    async def _authorize(self) -> None:
        if self._provider is None or not self._credentials.needs_token():
            return
        token = self._provider()
        self._credentials.store(await token if inspect.isawaitable(token) else token)

    @staticmethod
    async def _checked(response: httpx.Response) -> httpx.Response:
        if response.is_error:
            await response.aread()
            await response.aclose()
            raise error_from_response(response)
        return response

    async def _abandon(
        self, job_id: str | None, key: str, body: dict[str, Any]
    ) -> tuple[str | None, Job | None]:
        """Cancel the job of a generate() that gave up, and read it back (see
        :meth:`Client._abandon <imagegate.sdk.Client._abandon>`)."""
        deadline = Deadline.after(ABANDON_TIMEOUT_S)
        with anyio.move_on_after(ABANDON_TIMEOUT_S):
            try:
                if job_id is None:
                    submitted = await self._send(
                        "POST", "/v1/jobs", json=body, idempotency_key=key, deadline=deadline
                    )
                    job_id = parsed(submitted, Job).id
                return job_id, await self._cancel_or_read(job_id, deadline)
            except ImageGateError:
                pass
        return job_id, None

    async def _cancel_or_read(self, job_id: str, deadline: Deadline) -> Job:
        try:
            return parsed(
                await self._send("POST", f"/v1/jobs/{job_id}/cancel", deadline=deadline), Job
            )
        except ConflictError:  # it finished meanwhile
            return parsed(await self._send("GET", f"/v1/jobs/{job_id}", deadline=deadline), Job)
