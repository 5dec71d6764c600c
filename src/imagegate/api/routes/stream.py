"""Following one job live: Server-Sent Events, and a WebSocket that can also cancel."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Annotated, Any

import anyio
import structlog
from fastapi import APIRouter, Depends, Header, Query, WebSocket, WebSocketDisconnect
from fastapi.sse import EventSourceResponse, ServerSentEvent
from starlette.concurrency import run_in_threadpool

from imagegate.api.deps import LinksDep, Reader, RuntimeDep, authenticate
from imagegate.api.follow import follow, refuse_busy, render, socket_links
from imagegate.api.links import Links
from imagegate.api.problems import documented
from imagegate.errors import ImageGateError, TooManyStreams
from imagegate.runtime import Runtime
from imagegate.tenancy.principal import Principal, Scope

log = structlog.get_logger(__name__)
MAX_EVENT_ID = 2**63 - 1  # event ids are 64-bit: a larger one is a 422, not a crash
router = APIRouter(prefix="/v1/jobs", tags=["events"])


def existing_job(job_id: str, runtime: RuntimeDep, principal: Reader) -> str:
    """The job must exist (and be the caller's) before a stream starts: else a real 404.
    A browser's EventSource, which cannot send headers, passes ``?access_token=``."""
    return runtime.store.get(job_id, principal.tenant, principal.user).id


async def stream_slot(runtime: RuntimeDep) -> AsyncIterator[None]:
    """A place among the open event streams, held until the stream ends (503 when none)."""
    with runtime.streams.hold():
        try:
            yield
        except* (anyio.BrokenResourceError, anyio.ClosedResourceError):
            # fastapi/fastapi#15725: a client that leaves (or is cut off) while events
            # wait for it breaks FastAPI's keep-alive task; the stream is over either way.
            log.debug("events.client_gone")


@router.get("/{job_id}/events", response_class=EventSourceResponse, responses=documented(404, 503))
async def job_events(
    job_id: Annotated[str, Depends(existing_job)],
    _slot: Annotated[None, Depends(stream_slot)],
    runtime: RuntimeDep,
    links: LinksDep,
    last_event_id: Annotated[int | None, Header(ge=0, le=MAX_EVENT_ID)] = None,
    after: Annotated[
        int | None, Query(ge=0, le=MAX_EVENT_ID, description="Same as Last-Event-ID.")
    ] = None,
) -> AsyncIterator[ServerSentEvent]:
    """The job's events as ``text/event-stream``: ``event:`` is the type, ``data:`` the JSON
    payload, ``id:`` the event id (resume with ``Last-Event-ID``). Keep-alive comments come
    while nothing happens; the stream ends after ``completed``, ``failed`` or ``canceled``."""
    async for event in follow(runtime, job_id, last_event_id or after or 0):
        if event is None:
            yield ServerSentEvent(comment="keep-alive")
            continue
        event_id = str(event.id) if event.id else None
        yield ServerSentEvent(event=event.type.value, data=render(event, links), id=event_id)


@router.websocket("/{job_id}/ws")
async def job_socket(websocket: WebSocket, job_id: str) -> None:
    """Sends ``{"event", "id", "data"}`` messages until the job ends, then closes; a
    ``{"action": "cancel"}`` message cancels the job. The credential comes in the
    ``Authorization`` header or, from a browser, as ``?access_token=``. A refusal is an
    ``error`` message, then a close with 4000 + its HTTP status (4401, 4403, 4404, 4429),
    or 1013 (try again later) while too many streams are open."""
    runtime: Runtime = websocket.app.state.runtime
    try:
        with runtime.streams.hold():
            await _job_socket(websocket, runtime, job_id)
    except TooManyStreams as exc:
        await refuse_busy(websocket, {"event": "error", "data": error_payload(exc)})


async def _job_socket(websocket: WebSocket, runtime: Runtime, job_id: str) -> None:
    await websocket.accept()
    try:
        principal = await run_in_threadpool(authenticate, runtime, websocket)
        principal.require(Scope.JOBS_READ)
        await run_in_threadpool(runtime.store.get, job_id, principal.tenant, principal.user)
    except ImageGateError as exc:
        await websocket.send_json({"event": "error", "data": error_payload(exc)})
        await websocket.close(code=4000 + exc.status)
        return
    links = socket_links(websocket, runtime)
    listener = asyncio.create_task(_listen_for_cancel(websocket, runtime, job_id, principal))
    sender = asyncio.create_task(_send_events(websocket, runtime, job_id, links))
    # Whichever ends first ends the socket: the job (sender) or the client (listener). A
    # client that leaves cancels nothing: the job goes on and can be read later by id.
    await asyncio.wait({listener, sender}, return_when=asyncio.FIRST_COMPLETED)
    for task in (listener, sender):
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, RuntimeError):
            await task


async def _send_events(websocket: WebSocket, runtime: Runtime, job_id: str, links: Links) -> None:
    async for event in follow(runtime, job_id):
        if event is not None:
            message = {"event": event.type.value, "id": event.id, "data": render(event, links)}
            await websocket.send_json(message)
    await websocket.close()


async def _listen_for_cancel(
    websocket: WebSocket, runtime: Runtime, job_id: str, principal: Principal
) -> None:
    while True:
        try:
            message = await websocket.receive_json()
        except ValueError:
            continue  # not JSON: nothing we act on
        except KeyError:  # a binary frame: this socket speaks JSON text
            await websocket.close(code=1003, reason="Send JSON text frames.")
            return
        if isinstance(message, dict) and message.get("action") == "cancel":
            try:
                principal.require(Scope.JOBS_WRITE)
                await run_in_threadpool(
                    runtime.store.cancel, job_id, principal.tenant, principal.user
                )
            except ImageGateError as exc:
                await websocket.send_json({"event": "error", "data": error_payload(exc)})


def error_payload(exc: ImageGateError) -> dict[str, Any]:
    payload: dict[str, Any] = {"code": exc.code, "message": exc.message}
    field = getattr(exc, "field", None)
    if field:
        payload["field"] = field
    return payload
