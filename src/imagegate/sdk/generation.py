"""``Client.generate`` under a deadline: the work runs in a thread, the caller waits.

The thread submits, follows the events and reads the final job; it hands each item to the
caller's thread through a queue. The caller waits on that queue for no longer than the
deadline allows, so the deadline holds whatever the network does, and ``on_event`` runs
in the caller's thread. A caller that gives up leaves the thread to end by itself: once
the job is canceled, its stream ends.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from imagegate.sdk.base import outcome
from imagegate.sdk.events import Event
from imagegate.sdk.models import Job, JobParams
from imagegate.sdk.retries import Deadline

if TYPE_CHECKING:
    from imagegate.sdk.client import Client


class DeadlinePassed(Exception):
    """The caller's deadline passed (caught inside the SDK; never reaches you)."""


class Generation:
    def __init__(self, client: Client, prompt: str | None, key: str, params: JobParams):
        self.job_id: str | None = None
        self._items: queue.Queue[Event | Job | BaseException] = queue.Queue()
        self._done = threading.Event()
        args = (client, prompt, key, params)
        threading.Thread(
            target=self._run, args=args, name="imagegate-generate", daemon=True
        ).start()

    def wait(self, deadline: Deadline, on_event: Callable[[Event], None] | None) -> Job:
        """The completed job; raises its error, or DeadlinePassed."""
        try:
            while True:
                try:
                    item = self._items.get(timeout=deadline.remaining())
                except queue.Empty:
                    raise DeadlinePassed from None
                if isinstance(item, BaseException):
                    raise item
                if isinstance(item, Job):
                    return outcome(item)
                if on_event is not None:
                    on_event(item)
        finally:
            self._done.set()

    def _run(self, client: Client, prompt: str | None, key: str, params: JobParams) -> None:
        try:
            job = client.jobs.create(prompt, idempotency_key=key, **params)
            self.job_id = job.id
            if not job.is_final:
                for event in client.jobs.stream(job.id):
                    if self._done.is_set():
                        return
                    self._items.put(event)
                job = client.jobs.get(job.id)
            self._items.put(job)
        except BaseException as exc:  # handed to the caller's thread, raised there
            self._items.put(exc)
