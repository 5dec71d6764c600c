"""``client.jobs`` and ``client.images`` of the synchronous :class:`~imagegate.sdk.Client`
(:mod:`imagegate.sdk.async_resources` is their async twin)."""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Iterator
from contextlib import closing
from datetime import datetime
from typing import TYPE_CHECKING, TypeVar, Unpack

from imagegate.sdk.base import Page, image_url, job_body, parsed
from imagegate.sdk.events import Event, parse_event
from imagegate.sdk.models import GalleryImage, Image, ImagePage, Job, JobPage, JobParams
from imagegate.sdk.retries import RETRY_ERRORS
from imagegate.sdk.sse import SSEDecoder
from imagegate.sdk.streaming import Resume, events_path

if TYPE_CHECKING:
    from imagegate.sdk.client import Client

T = TypeVar("T")


class Jobs:
    def __init__(self, client: Client) -> None:
        self._client = client

    def create(
        self,
        prompt: str | None = None,
        *,
        idempotency_key: str | None = None,
        **params: Unpack[JobParams],
    ) -> Job:
        """Submit a job; it answers at once, queued (or completed, from the cache)."""
        body = job_body(prompt, params)
        response = self._client._send(
            "POST", "/v1/jobs", json=body, idempotency_key=idempotency_key
        )
        return parsed(response, Job)

    def get(self, job_id: str) -> Job:
        return parsed(self._client._send("GET", f"/v1/jobs/{job_id}"), Job)

    def cancel(self, job_id: str) -> Job:
        """Queued: canceled at once; generating: stops at its next step; finished: a
        :class:`~imagegate.sdk.ConflictError`."""
        return parsed(self._client._send("POST", f"/v1/jobs/{job_id}/cancel"), Job)

    def page(
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
        return parsed(self._client._send("GET", "/v1/jobs", params=query), JobPage)

    def list(
        self,
        *,
        status: str | None = None,
        user: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        limit: int | None = None,
    ) -> Iterator[Job]:
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

    def stream(self, job_id: str, *, after: int | None = None) -> Iterator[Event]:
        """The job's events until its terminal one (``completed``, ``failed`` or
        ``canceled``), from the first or from after event id ``after``. A dropped
        connection is resumed with ``Last-Event-ID``: no event is lost or repeated."""
        resume = Resume(after, self._client.retry)
        while True:
            try:
                with closing(self._read(job_id, resume)) as events:
                    for event in events:
                        resume.seen(event)
                        yield event
                        if event.is_terminal:
                            return
                wait = resume.ended()
            except RETRY_ERRORS as exc:
                wait = resume.dropped(exc)
            time.sleep(wait)

    def _read(self, job_id: str, resume: Resume) -> Generator[Event, None, None]:
        response = self._client._send(
            "GET", events_path(job_id), headers=resume.headers(), stream=True
        )
        with closing(response):
            decoder = SSEDecoder()
            for line in response.iter_lines():
                sse = decoder.feed(line)
                if sse is not None:
                    yield parse_event(sse)


class Images:
    def __init__(self, client: Client) -> None:
        self._client = client

    def page(
        self, *, user: str | None = None, limit: int | None = None, cursor: str | None = None
    ) -> ImagePage:
        query = {"user": user, "limit": limit, "cursor": cursor}
        return parsed(self._client._send("GET", "/v1/images", params=query), ImagePage)

    def list(self, *, user: str | None = None, limit: int | None = None) -> Iterator[GalleryImage]:
        """The tenant's images (or one end user's), newest first: a gallery."""
        return paginate(lambda cursor: self.page(user=user, limit=limit, cursor=cursor))

    def download(self, image: Image | str) -> bytes:
        """The bytes of an image (or of its signed URL): PNG unless it says otherwise."""
        return self._client._send("GET", image_url(image)).content


def paginate(fetch: Callable[[str | None], Page[T]]) -> Iterator[T]:
    cursor: str | None = None
    while True:
        page = fetch(cursor)
        yield from page.data
        if not page.next_cursor:
            return
        cursor = page.next_cursor
