"""``client.jobs`` and ``client.images`` of :class:`~imagegate.sdk.AsyncClient`: the async
twin of :mod:`imagegate.sdk.resources`, line for line."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from datetime import datetime
from typing import TYPE_CHECKING, TypeVar, Unpack

import anyio

from imagegate.sdk.base import Page, image_url, job_body, parsed
from imagegate.sdk.events import Event, parse_event
from imagegate.sdk.models import GalleryImage, Image, ImagePage, Job, JobPage, JobParams
from imagegate.sdk.retries import RETRY_ERRORS
from imagegate.sdk.sse import SSEDecoder
from imagegate.sdk.streaming import Resume, events_path

if TYPE_CHECKING:
    from imagegate.sdk.async_client import AsyncClient

T = TypeVar("T")


class AsyncJobs:
    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def create(
        self,
        prompt: str | None = None,
        *,
        idempotency_key: str | None = None,
        **params: Unpack[JobParams],
    ) -> Job:
        """Submit a job; it answers at once, queued (or completed, from the cache)."""
        body = job_body(prompt, params)
        response = await self._client._send(
            "POST", "/v1/jobs", json=body, idempotency_key=idempotency_key
        )
        return parsed(response, Job)

    async def get(self, job_id: str) -> Job:
        return parsed(await self._client._send("GET", f"/v1/jobs/{job_id}"), Job)

    async def cancel(self, job_id: str) -> Job:
        """Queued: canceled at once; generating: stops at its next step; finished: a
        :class:`~imagegate.sdk.ConflictError`."""
        return parsed(await self._client._send("POST", f"/v1/jobs/{job_id}/cancel"), Job)

    async def page(
        self,
        *,
        status: str | None = None,
        user: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> JobPage:
        """One page of jobs, newest first; pass ``next_cursor`` back as ``cursor``."""
        query: dict[str, object] = {"status": status, "user": user, "limit": limit}
        query |= {"cursor": cursor}
        query |= {"created_after": created_after, "created_before": created_before}
        return parsed(await self._client._send("GET", "/v1/jobs", params=query), JobPage)

    def list(
        self,
        *,
        status: str | None = None,
        user: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[Job]:
        """Every job that matches, newest first, fetched a page (of ``limit``) at a time."""
        return paginate(
            lambda cursor: self.page(
                status=status,
                user=user,
                created_after=created_after,
                created_before=created_before,
                limit=limit,
                cursor=cursor,
            )
        )

    async def stream(self, job_id: str, *, after: int | None = None) -> AsyncIterator[Event]:
        """The job's events until its terminal one (``completed``, ``failed`` or
        ``canceled``), from the first or from after event id ``after``. A dropped
        connection is resumed with ``Last-Event-ID``: no event is lost or repeated."""
        resume = Resume(after, self._client.retry)
        while True:
            try:
                async with aclosing(self._read(job_id, resume)) as events:
                    async for event in events:
                        resume.seen(event)
                        yield event
                        if event.is_terminal:
                            return
                wait = resume.ended()
            except RETRY_ERRORS as exc:
                wait = resume.dropped(exc)
            await anyio.sleep(wait)

    async def _read(self, job_id: str, resume: Resume) -> AsyncGenerator[Event, None]:
        response = await self._client._send(
            "GET", events_path(job_id), headers=resume.headers(), stream=True
        )
        try:
            decoder = SSEDecoder()
            async for line in response.aiter_lines():
                sse = decoder.feed(line)
                if sse is not None:
                    yield parse_event(sse)
        finally:
            await response.aclose()


class AsyncImages:
    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def page(
        self, *, user: str | None = None, limit: int | None = None, cursor: str | None = None
    ) -> ImagePage:
        query = {"user": user, "limit": limit, "cursor": cursor}
        return parsed(await self._client._send("GET", "/v1/images", params=query), ImagePage)

    def list(
        self, *, user: str | None = None, limit: int | None = None
    ) -> AsyncIterator[GalleryImage]:
        """The tenant's images (or one end user's), newest first: a gallery."""
        return paginate(lambda cursor: self.page(user=user, limit=limit, cursor=cursor))

    async def download(self, image: Image | str) -> bytes:
        """The bytes of an image (or of its signed URL): PNG unless it says otherwise."""
        return (await self._client._send("GET", image_url(image))).content


async def paginate(fetch: Callable[[str | None], Awaitable[Page[T]]]) -> AsyncIterator[T]:
    cursor: str | None = None
    while True:
        page = await fetch(cursor)
        for item in page.data:
            yield item
        if not page.next_cursor:
            return
        cursor = page.next_cursor
