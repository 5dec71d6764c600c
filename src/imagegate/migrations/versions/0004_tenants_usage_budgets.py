"""tenants and API keys, per-job identity and cost, the usage ledger, budgets and alerts

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

WHEN = sa.DateTime(timezone=True)
JOB_COLUMNS = (
    ("key_id", sa.String(40)),
    ("end_user", sa.String(200)),
    ("token_id", sa.String(40)),
    ("cost_currency", sa.String(3)),
    ("cost_estimate_micros", sa.BigInteger()),
    ("cost_micros", sa.BigInteger()),
    ("budgeted", sa.Boolean()),
)


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        for name, kind in JOB_COLUMNS:
            batch.add_column(sa.Column(name, kind, nullable=True))
    op.create_index("ix_jobs_owner_status", "jobs", ["owner", "status"])
    op.create_index("ix_jobs_started", "jobs", ["started_at"])
    with op.batch_alter_table("webhook_deliveries") as batch:
        batch.alter_column("job_id", existing_type=sa.String(36), nullable=True)
        batch.add_column(sa.Column("tenant", sa.String(100), nullable=True))
    _tenancy()
    _usage()


def _tenancy() -> None:
    op.create_table(
        "tenants",
        sa.Column("id", sa.String(100), primary_key=True),
        sa.Column("weight", sa.Float(), nullable=False, server_default=sa.text("1")),
        sa.Column("limits", sa.JSON(), nullable=True),
        sa.Column("budget", sa.JSON(), nullable=True),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("updated_at", WHEN, nullable=False),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("tenant", sa.String(100), sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("prefix", sa.String(20), nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("limits", sa.JSON(), nullable=True),
        sa.Column("budget", sa.JSON(), nullable=True),
        sa.Column("expires_at", WHEN, nullable=True),
        sa.Column("revoked_at", WHEN, nullable=True),
        sa.Column("created_at", WHEN, nullable=False),
    )
    op.create_index("ix_api_keys_hash", "api_keys", ["secret_hash"], unique=True)
    op.create_index("ix_api_keys_tenant", "api_keys", ["tenant", "created_at"])


def _usage() -> None:
    op.create_table(
        "usage_ledger",
        sa.Column("job_id", sa.String(36), primary_key=True),
        sa.Column("tenant", sa.String(100), nullable=False),
        sa.Column("key_id", sa.String(40), nullable=True),
        sa.Column("end_user", sa.String(200), nullable=True),
        sa.Column("model", sa.String(300), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("images", sa.Integer(), nullable=False),
        sa.Column("cost_micros", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("generation_ms", sa.BigInteger(), nullable=False),
        sa.Column("at", WHEN, nullable=False),
    )
    op.create_index("ix_usage_ledger_tenant_at", "usage_ledger", ["tenant", "at"])
    op.create_table(
        "budget_spend",
        sa.Column("scope", sa.String(150), primary_key=True),
        sa.Column("period_start", WHEN, primary_key=True),
        sa.Column("reserved_micros", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("spent_micros", sa.BigInteger(), nullable=False, server_default="0"),
    )
    op.create_table(
        "budget_reservations",
        sa.Column(
            "job_id", sa.String(36), sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("scope", sa.String(150), primary_key=True),
        sa.Column("period_start", WHEN, nullable=False),
        sa.Column("micros", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "budget_alerts",
        sa.Column("scope", sa.String(150), primary_key=True),
        sa.Column("period_start", WHEN, primary_key=True),
        sa.Column("threshold", sa.Float(), primary_key=True),
        sa.Column("at", WHEN, nullable=False),
    )


def downgrade() -> None:
    for table in (
        "budget_alerts",
        "budget_reservations",
        "budget_spend",
        "usage_ledger",
        "api_keys",
        "tenants",
    ):
        op.drop_table(table)
    with op.batch_alter_table("webhook_deliveries") as batch:
        batch.drop_column("tenant")
        batch.alter_column("job_id", existing_type=sa.String(36), nullable=False)
    op.drop_index("ix_jobs_started", "jobs")
    op.drop_index("ix_jobs_owner_status", "jobs")
    with op.batch_alter_table("jobs") as batch:
        for name, _ in reversed(JOB_COLUMNS):
            batch.drop_column(name)
