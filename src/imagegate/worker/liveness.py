"""Is the worker loop alive? Each worker thread beats a heartbeat; a stale one is a stall.

A thread beats on every pass of its loop (an idle one at least every poll interval), on
every step the generator reports (so a long generation counts as alive while it makes
progress), and as its finishing thread records each job. A thread whose last beat is older
than the stall limit is stuck: a hung CUDA call, a database call that never returns, a
deadlock. ``/healthz`` then fails and the kubelet restarts the pod; the jobs it held go
back to the queue when their leases run out.

The limit (``IMAGEGATE_WORKER_STALL_S``) defaults to twice the longest gap a healthy
thread can leave between beats: a whole job timeout (a step that reports no progress
until the job's deadline), a lease, or, on the ``openai`` backend, one request with all
its retries (it reports a step per image).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from imagegate.settings import Settings

Clock = Callable[[], float]


def stall_limit_s(settings: Settings) -> float:
    if settings.worker_stall_s is not None:
        return settings.worker_stall_s
    longest_gap = max(settings.job_timeout_s, settings.lease_s, settings.poll_interval_s)
    if settings.backend == "openai":
        attempts = settings.openai_max_retries + 1
        longest_gap = max(longest_gap, attempts * (settings.openai_timeout_s + 1))
    return 2 * longest_gap


@dataclass(frozen=True, slots=True)
class Health:
    """The answer of a liveness or readiness check: ok, and why (for the probe's body)."""

    ok: bool
    status: str
    workers: dict[str, float] = field(default_factory=dict)  # name: seconds since a beat


class Heartbeat:
    """One worker thread's last sign of life."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._last = clock()

    def beat(self) -> None:
        self._last = self._clock()  # one float store: safe to read from another thread

    def age_s(self) -> float:
        return self._clock() - self._last


class Liveness:
    """The heartbeats of a process's worker threads, and the limit past which one is stuck."""

    def __init__(self, stall_s: float = math.inf, clock: Clock = time.monotonic) -> None:
        self.stall_s = stall_s
        self._clock = clock
        self._beats: dict[str, Heartbeat] = {}
        self._lock = threading.Lock()

    def register(self, name: str) -> Heartbeat:
        heartbeat = Heartbeat(self._clock)
        with self._lock:
            self._beats[name] = heartbeat
        return heartbeat

    def ages(self) -> dict[str, float]:
        """Seconds since each thread's last beat."""
        with self._lock:
            beats = dict(self._beats)
        return {name: round(beat.age_s(), 1) for name, beat in beats.items()}

    def stalled(self) -> dict[str, float]:
        """The threads past the limit, with their ages."""
        return {name: age for name, age in self.ages().items() if age > self.stall_s}
