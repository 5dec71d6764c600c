"""Budgets: reserved at submission, settled when the job ends, alerting as spend grows.

A budget (a tenant's, or a key's) is an amount per UTC day or month. Submitting a job
reserves its estimated cost in one guarded UPDATE (``spent + reserved + estimate <=
amount``), so concurrent submitters cannot overshoot: the database serialises the rows'
updates and re-checks the guard for each. When the job ends its reservation becomes
its actual cost (nothing, when it never ran), and each alert threshold that the spend
crosses is reported once per period.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import Connection, delete, select, update

from imagegate.errors import BudgetExceeded, InvalidField
from imagegate.jobs.database import insert_or_ignore
from imagegate.jobs.tables import budget_alerts, budget_reservations, budget_spend
from imagegate.usage.prices import from_micros, to_micros


class Budget(BaseModel):
    """The ``budget`` object of a tenant or a key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    amount: float = Field(gt=0, description="The most that may be spent per period.")
    currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$")
    period: Literal["day", "month"] = "month"
    thresholds: tuple[float, ...] = Field(
        default=(0.5, 0.8, 1.0), description="Fractions of the amount that send an alert."
    )
    alert_url: str | None = Field(default=None, max_length=2000)

    @field_validator("thresholds")
    @classmethod
    def _fractions(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if any(not 0 < t <= 1 for t in value):
            raise ValueError("each threshold is a fraction of the amount, above 0 and at most 1")
        return tuple(sorted(set(value)))

    @property
    def amount_micros(self) -> int:
        return to_micros(self.amount)


def budget_of(stored: Any) -> Budget | None:
    return Budget.model_validate(stored) if stored else None


def period_bounds(period: str, now: datetime) -> tuple[datetime, datetime]:
    """The UTC day or month that ``now`` falls in: its start, and the next one's."""
    day = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return day, day.fromordinal(day.toordinal() + 1).replace(tzinfo=UTC)
    start = day.replace(day=1)
    after = start.replace(year=start.year + 1, month=1) if start.month == 12 else None
    return start, after or start.replace(month=start.month + 1)


@dataclass(frozen=True, slots=True)
class Scoped:
    """A budget and whose it is: ``tenant:acme`` or ``key:key_…``."""

    scope: str
    budget: Budget
    tenant: str
    key_id: str | None = None


def reserve(
    conn: Connection, job_id: str, budgets: Sequence[Scoped], micros: int, now: datetime
) -> None:
    """Reserve ``micros`` against each budget, or raise :class:`BudgetExceeded`. Rows are
    locked in scope order here and in :func:`settle`, so the two never deadlock."""
    for scoped in sorted(budgets, key=lambda b: b.scope):
        start, end = period_bounds(scoped.budget.period, now)
        row = {"scope": scoped.scope, "period_start": start}
        insert_or_ignore(conn, budget_spend, row | {"reserved_micros": 0, "spent_micros": 0})
        admitted = conn.execute(
            update(budget_spend)
            .where(
                budget_spend.c.scope == scoped.scope,
                budget_spend.c.period_start == start,
                budget_spend.c.spent_micros + budget_spend.c.reserved_micros + micros
                <= scoped.budget.amount_micros,
            )
            .values(reserved_micros=budget_spend.c.reserved_micros + micros)
        ).rowcount
        if not admitted:
            raise _exceeded(conn, scoped, start, end, micros)
        insert_or_ignore(conn, budget_reservations, row | {"job_id": job_id, "micros": micros})


def _exceeded(
    conn: Connection, scoped: Scoped, start: datetime, end: datetime, micros: int
) -> BudgetExceeded:
    spent, reserved = conn.execute(
        select(budget_spend.c.spent_micros, budget_spend.c.reserved_micros).where(
            budget_spend.c.scope == scoped.scope, budget_spend.c.period_start == start
        )
    ).one()
    budget = scoped.budget
    return BudgetExceeded(
        f"This job's estimated cost ({from_micros(micros)} {budget.currency}) would pass the "
        f"{scoped.scope.split(':')[0]} budget of {budget.amount} {budget.currency} per "
        f"{budget.period}.",
        budget={"scope": scoped.scope, "amount": budget.amount, "currency": budget.currency},
        spend=from_micros(spent),
        reserved=from_micros(reserved),
        estimate=from_micros(micros),
        period=budget.period,
        period_end=end.isoformat(),
    )


@dataclass(frozen=True, slots=True)
class Crossing:
    """A threshold the spend crossed, to alert on once."""

    scope: str
    period_start: datetime
    threshold: float
    spent_micros: int


def reservations(conn: Connection, job_id: str) -> list[Any]:
    """The job's reservations, in the order :func:`reserve` locked their budgets."""
    held = conn.execute(
        select(budget_reservations)
        .where(budget_reservations.c.job_id == job_id)
        .order_by(budget_reservations.c.scope)
    ).mappings()
    return list(held)


def settle(
    conn: Connection,
    job_id: str,
    held: Sequence[Any],
    actual: int,
    budgets: dict[str, Budget],
    now: datetime,
) -> list[Crossing]:
    """Turn the job's reservations (``held``) into its actual cost; the thresholds newly
    crossed."""
    crossings: list[Crossing] = []
    for reservation in held:
        scope, start = reservation["scope"], reservation["period_start"]
        where = (budget_spend.c.scope == scope, budget_spend.c.period_start == start)
        conn.execute(
            update(budget_spend)
            .where(*where)
            .values(
                reserved_micros=budget_spend.c.reserved_micros - reservation["micros"],
                spent_micros=budget_spend.c.spent_micros + actual,
            )
        )
        spent = conn.execute(select(budget_spend.c.spent_micros).where(*where)).scalar_one()
        if (budget := budgets.get(scope)) is not None and actual > 0:
            crossings += _crossed(conn, scope, start, budget, spent - actual, spent, now)
    conn.execute(delete(budget_reservations).where(budget_reservations.c.job_id == job_id))
    return crossings


def _crossed(
    conn: Connection,
    scope: str,
    start: datetime,
    budget: Budget,
    before: int,
    after: int,
    now: datetime,
) -> list[Crossing]:
    crossed = []
    for threshold in budget.thresholds:
        line = threshold * budget.amount_micros
        if not before < line <= after:
            continue
        key = {"scope": scope, "period_start": start, "threshold": threshold}
        if insert_or_ignore(conn, budget_alerts, key | {"at": now}):  # once per period
            crossed.append(Crossing(scope, start, threshold, after))
    return crossed


def check_currency(budget: Budget | None, currency: str, field: str = "budget") -> None:
    if budget is not None and budget.currency != currency:
        raise InvalidField(
            f"{field}.currency",
            "currency_mismatch",
            f"Prices are in {currency}; a budget must be in {currency} too.",
        )
