"""The cap on open event streams (SSE and both WebSockets) in one API process.

Each stream holds a task, a database follower and buffers for as long as its job runs, so
a crowd of them, or of stalled clients, must not grow without bound. Past
``IMAGEGATE_MAX_EVENT_STREAMS`` a new one is refused (503 ``too_many_streams``, or a
WebSocket close 1013) rather than slow every other stream down.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from imagegate import metrics
from imagegate.errors import TooManyStreams


class StreamSlots:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0
        self._lock = threading.Lock()

    @contextmanager
    def hold(self) -> Iterator[None]:
        """A slot for the ``with`` block, freed however it ends; raises
        :class:`TooManyStreams` when none is free."""
        self._take()
        try:
            yield
        finally:
            self._give_back()

    def _take(self) -> None:
        with self._lock:
            if self.open >= self.limit:
                metrics.EVENT_STREAMS_REFUSED.inc()
                raise TooManyStreams
            self.open += 1
        metrics.EVENT_STREAMS_OPEN.inc()

    def _give_back(self) -> None:
        with self._lock:
            self.open -= 1
        metrics.EVENT_STREAMS_OPEN.dec()
