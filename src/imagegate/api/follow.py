"""Following a job's events from the API's event loop: what SSE and WebSockets share.

The stored events come first (from ``after_id``, so a late or reconnecting subscriber
catches up), then live ones as they are published, until a terminal event. While the
job waits in the queue, an unstored ``queued`` update (id 0) is added whenever its
position changes. A timeout with no news yields ``None``, for keep-alives.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.websockets import WebSocket

from imagegate.api.links import Links
from imagegate.jobs.events import ANY_JOB, EventType, JobEvent
from imagegate.runtime import Runtime


async def follow(
    runtime: Runtime, job_id: str, after_id: int = 0, idle_s: float | None = None
) -> AsyncIterator[JobEvent | None]:
    if after_id and await _ended(runtime, job_id):
        # Resumed after its final event, perhaps: what is left (its final event may have
        # come just now), then the stream ends, rather than keep a finished job open.
        for event in await run_in_threadpool(runtime.store.events_since, job_id, after_id):
            yield event
        return
    async for update in _follow(runtime, job_id, after_id, idle_s):
        yield update


async def _follow(
    runtime: Runtime, job_id: str, after_id: int, idle_s: float | None
) -> AsyncIterator[JobEvent | None]:
    idle = idle_s or runtime.settings.sse_keepalive_s
    last_id, last_type, position = after_id, None, None
    # While queued, any job's news may move this one up, so listen to all; after that,
    # only to this job (a crowd of followers must not all wake for every event).
    waiter = runtime.hub.waiter(job_id, ANY_JOB)
    try:
        while True:
            for event in await run_in_threadpool(runtime.store.events_since, job_id, last_id):
                yield event
                last_id, last_type = event.id, event.type
                position = event.data.get("queue_position", position)
                if event.type.is_terminal:
                    return
            if last_type in (None, EventType.QUEUED):
                update = await _queue_update(runtime, job_id, position)
                if update is not None:
                    position = update.data["queue_position"]
                    yield update
            elif ANY_JOB in waiter.job_ids:
                waiter.close()
                waiter = runtime.hub.waiter(job_id)
            if not await waiter.wait(idle):
                yield None
    finally:
        waiter.close()


async def _ended(runtime: Runtime, job_id: str) -> bool:
    job = await run_in_threadpool(runtime.store.get, job_id)
    return job.status.is_final


async def _queue_update(runtime: Runtime, job_id: str, known: int | None) -> JobEvent | None:
    job = await run_in_threadpool(runtime.store.get, job_id)
    if job.status.value != EventType.QUEUED.value:
        return None
    stale_after = 2 * runtime.settings.lease_s
    info = await run_in_threadpool(runtime.store.queue_info, job, stale_after)
    if info.position == known:
        return None
    data = {"queue_position": info.position, "eta_s": info.eta_s}
    return JobEvent(0, job_id, EventType.QUEUED, data, datetime.now(UTC))


def socket_links(websocket: WebSocket, runtime: Runtime) -> Links:
    """Links for a WebSocket's messages: http(s) URLs, not ws(s) ones."""
    base = str(websocket.base_url).replace("ws", "http", 1)
    return Links(runtime.settings.public_url or base, runtime.signer, runtime.presigner)


async def refuse_busy(websocket: WebSocket, message: dict[str, Any]) -> None:
    """Too many open streams: say why, then close with 1013 (Try Again Later)."""
    await websocket.accept()
    await websocket.send_json(message)
    await websocket.close(code=1013, reason="Too many streams; try again later.")


def render(event: JobEvent, links: Links) -> dict[str, Any]:
    """An event's public payload: stored references become signed URLs."""
    data = dict(event.data)
    if event.type is EventType.PROGRESS:
        preview = data.pop("preview", None)
        step = data.pop("preview_step", data["step"])
        data["preview_url"] = links.preview(event.job_id, step) if preview else None
    elif event.type is EventType.COMPLETED:
        data["images"] = [
            {
                "id": im["id"],
                "width": im["width"],
                "height": im["height"],
                "url": links.image_id(event.job_id, im["id"], im.get("key")),
            }
            for im in data["images"]
        ]
    return {"job_id": event.job_id, **data}
