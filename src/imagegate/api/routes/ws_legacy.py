"""The original WebSocket protocol, kept: ``/ws/generate``.

The client sends ``{"prompt", "style"}``; the server answers ``{"status": "generating",
"message", "job_id"}``, then ``{"status": "progress", …}`` messages, then ``{"status":
"completed", "image_url", "metadata": {"seed", "model", "generation_time"}}``. The socket
stays open for the next prompt. A bad prompt gets ``{"status": "error", "message"}`` and
the socket stays usable. A client that leaves does not cancel or lose its job. While a
job runs, ``{"action": "cancel"}`` cancels it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import time
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from imagegate.api.deps import authenticate, client_ip
from imagegate.api.follow import follow, refuse_busy, render, socket_links
from imagegate.api.schemas import LegacyGenerateIn
from imagegate.api.submission import submit
from imagegate.errors import ImageGateError, TooManyStreams
from imagegate.jobs.events import EventType, JobEvent
from imagegate.jobs.specs import JobRequest, build_spec
from imagegate.runtime import Runtime
from imagegate.tenancy.principal import Principal, Scope

router = APIRouter(tags=["original API"])
INBOX_LIMIT = 16  # messages waiting while a job runs
FRAMES_PER_S = 20
PROMPTS_PER_SOCKET = 100


@router.websocket("/ws/generate")
async def generate_socket(websocket: WebSocket) -> None:
    runtime: Runtime = websocket.app.state.runtime
    try:
        with runtime.streams.hold():
            await _generate_socket(websocket, runtime)
    except TooManyStreams as exc:
        await refuse_busy(websocket, {"status": "error", "message": exc.message, "code": exc.code})


async def _generate_socket(websocket: WebSocket, runtime: Runtime) -> None:
    await websocket.accept()
    try:
        principal = await run_in_threadpool(authenticate, runtime, websocket)
        principal.require(Scope.JOBS_WRITE)
    except ImageGateError as exc:  # refused: say why in the protocol's own words, then close
        await websocket.send_json({"status": "error", "message": exc.message, "code": exc.code})
        await websocket.close(code=4000 + exc.status)
        return
    inbox: asyncio.Queue[Any] = asyncio.Queue()
    reader = asyncio.create_task(_read(websocket, inbox))
    session = _Session(websocket, runtime, inbox, principal)
    try:
        while (message := await inbox.get()) is not None:
            await session.handle(message)
    except WebSocketDisconnect:
        pass
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader


async def _read(websocket: WebSocket, inbox: asyncio.Queue[Any]) -> None:
    """Reads every client message into the inbox; ``None`` marks the end of the socket,
    whatever ends it. The protocol is JSON text: a binary frame closes with 1003. A client
    that sends faster than ``FRAMES_PER_S``, or queues more than ``INBOX_LIMIT`` messages
    while a job runs, is closed with 1008 rather than buffered without limit."""
    pace = _Pace(FRAMES_PER_S)
    try:
        while (message := await websocket.receive())["type"] == "websocket.receive":
            if message.get("text") is None:
                await websocket.close(code=1003, reason="Send JSON text frames.")
                return
            if not pace.allows() or inbox.qsize() >= INBOX_LIMIT:
                await websocket.close(code=1008, reason="Too many messages.")
                return
            inbox.put_nowait(json.loads(message["text"]))
    except (WebSocketDisconnect, ValueError, RuntimeError):
        pass  # gone, or not JSON: the socket ends
    finally:
        inbox.put_nowait(None)  # the inbox is unbounded, so this never fails


class _Pace:
    """At most ``per_s`` events in any one-second window."""

    def __init__(self, per_s: int) -> None:
        self.per_s, self.recent = per_s, collections.deque[float]()

    def allows(self) -> bool:
        now = time.monotonic()
        while self.recent and now - self.recent[0] > 1.0:
            self.recent.popleft()
        self.recent.append(now)
        return len(self.recent) <= self.per_s


class _Session:
    def __init__(
        self,
        websocket: WebSocket,
        runtime: Runtime,
        inbox: asyncio.Queue[Any],
        principal: Principal,
    ):
        self.websocket, self.runtime, self.inbox = websocket, runtime, inbox
        self.principal = principal
        self.prompts = 0
        self.links = socket_links(websocket, runtime)
        self.pending: list[Any] = []  # prompts that arrived while a job ran

    async def handle(self, message: Any) -> None:
        if isinstance(message, dict) and message.get("action") == "cancel":
            await self.send({"status": "error", "message": "No job is running to cancel."})
            return
        self.prompts += 1
        if self.prompts > PROMPTS_PER_SOCKET:
            message = f"At most {PROMPTS_PER_SOCKET} prompts per socket; open a new one."
            await self.send({"status": "error", "message": message})
            await self.websocket.close(code=1008, reason="Too many prompts.")
            raise WebSocketDisconnect(1008)
        try:
            request = LegacyGenerateIn.model_validate(message)
            spec = build_spec(
                JobRequest(prompt=request.prompt, style=request.style), self.runtime.settings
            )
            user, address = self.principal.user, client_ip(self.websocket)
            await run_in_threadpool(self.runtime.gate.admit_request, self.principal, address)
            accepted = await run_in_threadpool(
                submit, self.runtime, self.principal, spec, address, user
            )
            job = accepted.submitted.job
        except (ValidationError, ImageGateError) as exc:  # refused: say why, keep the socket
            await self.send({"status": "error", "message": _reason(exc)})
            return
        message = "Your image is being generated."
        await self.send({"status": "generating", "message": message, "job_id": job.id})
        await self._stream(job.id)

    async def _stream(self, job_id: str) -> None:
        async for event in follow(self.runtime, job_id, idle_s=0.5):
            await self._take_cancel(job_id)
            if event is not None and (message := self._translate(event)) is not None:
                await self.send(message)

    async def _take_cancel(self, job_id: str) -> None:
        """Handle a cancel sent mid-job; keep any other message for after this job."""
        while not self.inbox.empty():
            message = self.inbox.get_nowait()
            if isinstance(message, dict) and message.get("action") == "cancel":
                with contextlib.suppress(ImageGateError):
                    principal = self.principal
                    await run_in_threadpool(
                        self.runtime.store.cancel, job_id, principal.tenant, principal.user
                    )
            elif message is None:
                raise WebSocketDisconnect
            else:
                self.pending.append(message)
        for message in self.pending:
            self.inbox.put_nowait(message)
        self.pending.clear()

    def _translate(self, event: JobEvent) -> dict[str, Any] | None:
        data = render(event, self.links)
        if event.type is EventType.PROGRESS:
            return {"status": "progress", "progress": round(data["step"] / data["total"], 3)} | data
        if event.type is EventType.COMPLETED:
            meta = data["metadata"]
            return {
                "status": "completed",
                "job_id": event.job_id,
                "image_url": data["images"][0]["url"],
                "image_urls": [image["url"] for image in data["images"]],
                "metadata": {
                    "seed": meta["seed"],
                    "model": meta["model"],
                    "generation_time": meta["generation_time_ms"] / 1000,
                },
            }
        if event.type is EventType.FAILED:
            return {"status": "error", "message": data["message"]} | data
        if event.type is EventType.CANCELED:
            return {
                "status": "canceled",
                "message": "The job was canceled.",
                "job_id": event.job_id,
            }
        return None  # queued and started: the opening "generating" message covers them

    async def send(self, message: dict[str, Any]) -> None:
        await self.websocket.send_json(message)


def _reason(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "message"
        return f"{field}: {first['msg']}"
    return exc.message if isinstance(exc, ImageGateError) else str(exc)
