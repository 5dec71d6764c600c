"""Reading the usage ledger: buckets of an hour or a day, grouped as asked."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, func, literal_column, select, text
from sqlalchemy.sql.elements import ColumnElement

from imagegate.jobs.rows import utc
from imagegate.jobs.tables import budget_spend, usage_ledger
from imagegate.usage.budgets import Budget, period_bounds
from imagegate.usage.prices import from_micros

BUCKETS = {"1h": timedelta(hours=1), "1d": timedelta(days=1)}
GROUPS = {
    "key": usage_ledger.c.key_id,
    "user": usage_ledger.c.end_user,
    "model": usage_ledger.c.model,
    "status": usage_ledger.c.status,
}


class UsageStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def buckets(
        self,
        tenant: str | None,
        start: datetime,
        end: datetime,
        bucket: str = "1d",
        group_by: Sequence[str] = (),
    ) -> list[dict[str, Any]]:
        """Jobs, images, cost and generation time per bucket (and group), oldest first."""
        with self.engine.connect() as conn:
            when = _truncated(conn, bucket)
            groups = [GROUPS[name].label(name) for name in group_by]
            query = (
                select(
                    when.label("bucket"),
                    *groups,
                    func.count().label("jobs"),
                    func.sum(usage_ledger.c.images).label("images"),
                    func.sum(usage_ledger.c.cost_micros).label("cost_micros"),
                    func.min(usage_ledger.c.currency).label("currency"),
                    func.sum(usage_ledger.c.generation_ms).label("generation_ms"),
                )
                .where(usage_ledger.c.at >= start, usage_ledger.c.at < end)
                .group_by(when, *groups)
                .order_by(when, *groups)
            )
            if tenant is not None:
                query = query.where(usage_ledger.c.tenant == tenant)
            rows = conn.execute(query).mappings().all()
        return [_bucket(row, BUCKETS[bucket], group_by) for row in rows]

    def spend(self, scope: str, budget: Budget, now: datetime) -> dict[str, Any]:
        """Where a budget stands this period."""
        start, end = period_bounds(budget.period, now)
        query = select(budget_spend.c.spent_micros, budget_spend.c.reserved_micros).where(
            budget_spend.c.scope == scope, budget_spend.c.period_start == start
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        spent, reserved = row if row is not None else (0, 0)
        return {
            "period_start": start.isoformat(),
            "period_end": end.isoformat(),
            "spend": from_micros(spent),
            "reserved": from_micros(reserved),
        }


def _truncated(conn: Connection, bucket: str) -> ColumnElement[Any]:
    """The ledger time cut down to its hour or day, in UTC, on either database."""
    if conn.dialect.name == "postgresql":
        unit = "hour" if bucket == "1h" else "day"
        return func.date_trunc(unit, text("usage_ledger.at AT TIME ZONE 'UTC'"))
    pattern = "%Y-%m-%d %H:00:00" if bucket == "1h" else "%Y-%m-%d 00:00:00"
    return func.strftime(pattern, literal_column("usage_ledger.at"))


def _bucket(row: Any, width: timedelta, group_by: Sequence[str]) -> dict[str, Any]:
    raw = row["bucket"]
    moment = raw if isinstance(raw, datetime) else datetime.fromisoformat(str(raw))
    start = utc(moment.replace(tzinfo=None)) or moment.replace(tzinfo=UTC)
    return {
        "start": start.isoformat(),
        "end": (start + width).isoformat(),
        **{name: row[name] for name in group_by},
        "jobs": int(row["jobs"]),
        "images": int(row["images"] or 0),
        "cost": from_micros(int(row["cost_micros"] or 0)),
        "currency": row["currency"],
        "generation_s": round(int(row["generation_ms"] or 0) / 1000, 3),
    }
