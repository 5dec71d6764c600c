"""A job's events, typed: what ``jobs.stream(id)`` yields.

Each has ``type``, ``id`` (the event id to resume after; None for the live queue updates
the server does not store) and ``job_id``. A type this SDK does not know yet arrives as a
plain :class:`Event` with its fields kept.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import Field

from imagegate.sdk.models import Image, Metadata, Model
from imagegate.sdk.sse import ServerSentEvent

TERMINAL = frozenset({"completed", "failed", "canceled"})


class Event(Model):
    type: str
    id: int | None = None
    job_id: str = ""

    @property
    def is_terminal(self) -> bool:
        return self.type in TERMINAL


class PendingReviewEvent(Event):
    """The job waits for a reviewer."""


class QueuedEvent(Event):
    queue_position: int | None = None
    eta_s: float | None = None


class StartedEvent(Event):
    attempt: int | None = None


class ProgressEvent(Event):
    step: int
    total: int
    preview_url: str | None = None


class CompletedEvent(Event):
    images: list[Image] = Field(default_factory=list)
    metadata: Metadata | None = None


class FailedEvent(Event):
    code: str | None = None
    message: str | None = None
    retryable: bool = False


class CanceledEvent(Event):
    code: str | None = None
    message: str | None = None


EVENT_TYPES: dict[str, type[Event]] = {
    "pending_review": PendingReviewEvent,
    "queued": QueuedEvent,
    "started": StartedEvent,
    "progress": ProgressEvent,
    "completed": CompletedEvent,
    "failed": FailedEvent,
    "canceled": CanceledEvent,
}


def parse_event(sse: ServerSentEvent) -> Event:
    try:
        payload: Any = json.loads(sse.data)
    except ValueError:
        payload = {"data": sse.data}
    fields = payload if isinstance(payload, dict) else {"data": payload}
    event_id = int(sse.id) if sse.id and sse.id.isdigit() else None
    kind = EVENT_TYPES.get(sse.event, Event)
    return kind.model_validate({**fields, "type": sse.event, "id": event_id})
