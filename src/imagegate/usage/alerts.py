"""Budget alerts: a ``budget.threshold_crossed`` event for each threshold crossed.

Sent to the budget's ``alert_url`` through the webhook outbox (signed, retried, logged
and SSRF-guarded like job webhooks), written to the audit log, and counted in a metric;
all in the transaction that settled the cost, so an alert is never lost nor doubled.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from imagegate.jobs import audit
from imagegate.jobs.audit import AuditEntry
from imagegate.usage.budgets import Budget, Crossing, period_bounds
from imagegate.usage.prices import from_micros
from imagegate.webhooks import outbox

EVENT = "budget.threshold_crossed"
ALERTED = "imagegate_alerted"  # Connection.info key: thresholds alerted, for the metric


def payload(crossing: Crossing, budget: Budget, tenant: str, now: datetime) -> dict[str, Any]:
    start, end = period_bounds(budget.period, crossing.period_start)
    kind, _, owner = crossing.scope.partition(":")
    return {
        "type": EVENT,
        "timestamp": now.isoformat(),
        "data": {
            "tenant": tenant,
            "key": owner if kind == "key" else None,
            "scope": kind,
            "threshold": crossing.threshold,
            "spend": from_micros(crossing.spent_micros),
            "budget": budget.amount,
            "currency": budget.currency,
            "period": {"kind": budget.period, "start": start.isoformat(), "end": end.isoformat()},
        },
    }


def raise_alert(
    conn: Connection, crossing: Crossing, budget: Budget, tenant: str, now: datetime
) -> None:
    message = payload(crossing, budget, tenant, now)
    if budget.alert_url:
        outbox.enqueue_message(conn, budget.alert_url, EVENT, message, tenant, now)
    spend = f"{message['data']['spend']} of {budget.amount} {budget.currency}"
    entry = AuditEntry(
        owner=tenant,
        prompt="",
        normalized_prompt="",
        stage="budget",
        action="alert",
        categories=(crossing.scope.partition(":")[0],),
        reasons=(f"{crossing.scope} crossed {crossing.threshold:.0%} of its budget: {spend}",),
    )
    audit.record(conn, entry, now)
    conn.info.setdefault(ALERTED, []).append((tenant, crossing.threshold))
