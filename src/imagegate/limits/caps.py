"""The caps counted in the database, the truth across replicas: concurrent unfinished
jobs (per key, tenant or end user), a browser token's job allowance, and queue depth.

They run inside the transaction that records the job. On PostgreSQL that transaction
first takes an advisory lock per tenant, so concurrent submissions of one tenant are
counted one after the other; SQLite's writers are serialised anyway.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, func, select
from sqlalchemy.sql.elements import ColumnElement

from imagegate.errors import QueueFull, RateLimited
from imagegate.jobs.database import lock_for_transaction
from imagegate.jobs.states import Status
from imagegate.jobs.tables import jobs

UNFINISHED = (Status.QUEUED.value, Status.GENERATING.value, Status.PENDING_REVIEW.value)


@dataclass(frozen=True, slots=True)
class Caps:
    tenant: str
    concurrent: Sequence[tuple[str, str, int]] = ()  # (policy, identity, cap)
    token_id: str | None = None
    token_max_jobs: int | None = None
    max_queue_depth: int | None = None
    retry_after_s: int = 2

    @property
    def empty(self) -> bool:
        return not self.concurrent and self.token_max_jobs is None and not self.max_queue_depth

    def enforce(self, conn: Connection) -> None:
        """Raise if the job just inserted (uncommitted) takes a count past its cap."""
        if self.empty:
            return
        lock_for_transaction(conn, self.tenant)
        for policy, identity, cap in self.concurrent:
            if _count(conn, _matching(identity), jobs.c.status.in_(UNFINISHED)) > cap:
                raise RateLimited(
                    f"The cap {policy} ({cap} unfinished jobs) is reached; retry when one ends.",
                    retry_after_s=self.retry_after_s,
                    policy=policy,
                    limit=cap,
                )
        self._enforce_token(conn)
        self._enforce_queue_depth(conn)

    def _enforce_token(self, conn: Connection) -> None:
        if self.token_max_jobs is None or self.token_id is None:
            return
        if _count(conn, jobs.c.token_id == self.token_id) > self.token_max_jobs:
            raise RateLimited(
                f"This token may create {self.token_max_jobs} jobs, and has.",
                retry_after_s=3600,
                policy="token.max_jobs",
                limit=self.token_max_jobs,
            )

    def _enforce_queue_depth(self, conn: Connection) -> None:
        if self.max_queue_depth is None:
            return
        if _count(conn, jobs.c.status == Status.QUEUED.value) > self.max_queue_depth:
            raise QueueFull(
                f"The queue holds {self.max_queue_depth} jobs, its limit; retry shortly.",
                max_queue_depth=self.max_queue_depth,
            )


def _matching(identity: str) -> ColumnElement[bool]:
    level, _, rest = identity.partition(":")
    if level == "key":
        return jobs.c.key_id == rest
    if level == "user":
        tenant, _, user = rest.partition(":")
        return (jobs.c.owner == tenant) & (jobs.c.end_user == user)
    return jobs.c.owner == rest


def _count(conn: Connection, *where: ColumnElement[bool]) -> int:
    return int(conn.execute(select(func.count()).select_from(jobs).where(*where)).scalar_one())
