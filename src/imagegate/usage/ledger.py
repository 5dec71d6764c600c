"""The usage ledger: one row per ended job, written in the transaction that ends it.

:class:`Pricing` turns a job into money: an estimate at submission (what budgets
reserve), and its actual cost when it ends. A job that never ran costs nothing; one
that failed (or was canceled) while running costs ``failed_fraction`` of what it used.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update

from imagegate.jobs.models import GenerationMeta, JobSpec
from imagegate.jobs.states import Status
from imagegate.jobs.tables import api_keys, jobs, tenants, usage_ledger
from imagegate.usage import alerts, budgets
from imagegate.usage.budgets import Budget, budget_of
from imagegate.usage.prices import PriceTable, Usage

SETTLED = "imagegate_settled"  # Connection.info key: metrics.count_settled's arguments


@dataclass(frozen=True, slots=True)
class Pricing:
    prices: PriceTable
    model: str  # the model this deployment serves, for jobs not yet run
    failed_fraction: float = 0.0

    @property
    def currency(self) -> str:
        return self.prices.currency

    def estimate(self, spec: JobSpec) -> int:
        usage = Usage(self.model, spec.width, spec.height, spec.steps, spec.n)
        return self.prices.estimate(usage)

    def completed(self, spec: JobSpec, meta: GenerationMeta) -> int:
        """What a job that completed with ``meta`` costs (set as it completes)."""
        size = (spec.width, spec.height, spec.steps, spec.n)
        return self.prices.actual(Usage(meta.model, *size, meta.generation_time_ms))

    def actual(self, row: Any, status: Status) -> int:
        if row["started_at"] is None:
            return 0  # canceled or rejected before it ran
        usage = Usage(
            row["model"] or self.model,
            row["width"],
            row["height"],
            row["steps"],
            row["n"],
            row["generation_time_ms"],
        )
        cost = self.prices.actual(usage)
        return cost if status is Status.COMPLETED else round(cost * self.failed_fraction)


def settle_job(conn: Connection, row: Any, status: Status, pricing: Pricing, now: datetime) -> None:
    """Record the ended job's cost (``row``: the job as it ended): on the job, in the
    ledger, against its budgets (and alert on thresholds crossed)."""
    job_id = row["id"]
    cost = pricing.actual(row, status)
    images = row["n"] if status is Status.COMPLETED else 0
    if row["cost_micros"] != cost:  # a completion sets it already, in the same UPDATE
        conn.execute(update(jobs).where(jobs.c.id == job_id).values(cost_micros=cost))
    conn.execute(
        insert(usage_ledger).values(
            job_id=job_id,
            tenant=row["owner"],
            key_id=row["key_id"],
            end_user=row["end_user"],
            model=row["model"] or pricing.model,
            status=status.value,
            images=images,
            cost_micros=cost,
            currency=row["cost_currency"] or pricing.currency,
            generation_ms=row["generation_time_ms"] or 0,
            at=now,
        )
    )
    model = row["model"] or pricing.model
    settled = (row["owner"], model, status.value, images, cost, row["error_code"] or "")
    conn.info.setdefault(SETTLED, []).append(settled)
    held = budgets.reservations(conn, job_id) if row["budgeted"] else []
    if not held:  # no budget applied when it was submitted
        return
    scoped = budgets_for(conn, row["owner"], row["key_id"])
    crossings = budgets.settle(conn, job_id, held, cost, scoped, now)
    for crossing in crossings:
        alerts.raise_alert(conn, crossing, scoped[crossing.scope], row["owner"], now)


def budgets_for(conn: Connection, tenant: str, key_id: str | None) -> dict[str, Budget]:
    """The budgets that apply to a tenant's job, by scope, as they are set now."""
    found: dict[str, Budget] = {}
    stored = conn.execute(select(tenants.c.budget).where(tenants.c.id == tenant)).scalar()
    if (budget := budget_of(stored)) is not None:
        found[f"tenant:{tenant}"] = budget
    if key_id is not None:
        stored = conn.execute(select(api_keys.c.budget).where(api_keys.c.id == key_id)).scalar()
        if (budget := budget_of(stored)) is not None:
            found[f"key:{key_id}"] = budget
    return found
