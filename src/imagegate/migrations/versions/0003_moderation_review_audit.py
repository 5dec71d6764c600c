"""moderation outcomes, human review, audit log

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("moderation", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("client_ip", sa.String(64), nullable=True))
        batch.add_column(sa.Column("reviewed_by", sa.String(200), nullable=True))
        batch.add_column(sa.Column("reviewed_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("review_decision", sa.String(20), nullable=True))
    op.create_table(
        "audit_log",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("client_ip", sa.String(64), nullable=True),
        sa.Column("job_id", sa.String(36), nullable=True),
        sa.Column("prompt", sa.Text(), nullable=False),
        sa.Column("normalized_prompt", sa.Text(), nullable=False),
        sa.Column("stage", sa.String(40), nullable=False),
        sa.Column("action", sa.String(20), nullable=False),
        sa.Column("categories", sa.JSON(), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])


def downgrade() -> None:
    op.drop_table("audit_log")
    with op.batch_alter_table("jobs") as batch:
        for column in ("review_decision", "reviewed_at", "reviewed_by", "client_ip", "moderation"):
            batch.drop_column(column)
