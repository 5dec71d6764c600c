"""Following a job's event stream across dropped connections: what both clients share.

The stream is read from the last event id seen (``Last-Event-ID``), so a reconnect neither
repeats nor loses an event: the server keeps every event of the job. A drop with no event
since the last one counts towards the retry limit; any event resets it.
"""

from __future__ import annotations

import httpx

from imagegate.sdk.errors import APIConnectionError, connection_error
from imagegate.sdk.events import Event
from imagegate.sdk.retries import RetryPolicy


class Resume:
    def __init__(self, after: int | None, retry: RetryPolicy) -> None:
        self.last_id = after
        self.retry = retry
        self.drops = 0

    def headers(self) -> dict[str, str]:
        return {} if self.last_id is None else {"Last-Event-ID": str(self.last_id)}

    def seen(self, event: Event) -> None:
        self.drops = 0
        if event.id:  # live queue updates have none: nothing to resume from
            self.last_id = event.id

    def dropped(self, error: httpx.TransportError) -> float:
        """Seconds to wait before reconnecting; raises once reconnecting stops helping."""
        wait = self.retry.after_error(self.drops, error)
        if wait is None:
            raise connection_error(error) from error
        self.drops += 1
        return wait

    def ended(self) -> float:
        """The server closed the stream before a terminal event (a restart, a proxy)."""
        wait = self.retry.after_error(self.drops, httpx.RemoteProtocolError("stream ended"))
        if wait is None:
            raise APIConnectionError("The event stream kept ending early.", code="network")
        self.drops += 1
        return wait


def events_path(job_id: str) -> str:
    return f"/v1/jobs/{job_id}/events"
