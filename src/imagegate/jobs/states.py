"""The job state machine, defined once.

``queued → generating → completed | failed | canceled``; a generating job whose worker
died or hit a transient error goes back to ``queued`` for another attempt. A queued job
completes without running when the cache answers it, and a job that follows an identical
one in flight (single-flight) completes or fails from ``queued`` with its leader. A job that the
safety rules hold waits in ``pending_review``: before it runs (its prompt), a reviewer
queues it (approve) or fails it (reject); after it ran (its image, when
``IMAGEGATE_OUTPUT_FLAGGED=review``), a reviewer completes it with the image or fails it.
The store enforces these transitions in one guarded UPDATE each (see
:mod:`imagegate.jobs.store`).
"""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    PENDING_REVIEW = "pending_review"
    QUEUED = "queued"
    GENERATING = "generating"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def is_final(self) -> bool:
        return self in FINAL

    def can_become(self, target: Status) -> bool:
        return target in TRANSITIONS[self]


FINAL = frozenset({Status.COMPLETED, Status.FAILED, Status.CANCELED})

TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.PENDING_REVIEW: frozenset(
        {Status.QUEUED, Status.COMPLETED, Status.FAILED, Status.CANCELED}
    ),
    Status.QUEUED: frozenset({Status.GENERATING, Status.COMPLETED, Status.FAILED, Status.CANCELED}),
    Status.GENERATING: frozenset(
        {Status.COMPLETED, Status.FAILED, Status.CANCELED, Status.QUEUED, Status.PENDING_REVIEW}
    ),
    Status.COMPLETED: frozenset(),
    Status.FAILED: frozenset(),
    Status.CANCELED: frozenset(),
}


def sources_of(target: Status) -> frozenset[Status]:
    """The states from which a job may move to ``target``."""
    return frozenset(source for source, targets in TRANSITIONS.items() if target in targets)
