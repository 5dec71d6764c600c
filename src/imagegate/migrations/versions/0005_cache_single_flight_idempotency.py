"""the result cache, single-flight and idempotency keys

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

WHEN = sa.DateTime(timezone=True)
JOB_COLUMNS = (
    ("cache_key", sa.String(64)),
    ("cache_store", sa.Boolean()),
    ("cache_status", sa.String(10)),
    ("follows", sa.String(36)),
)


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        for name, kind in JOB_COLUMNS:
            batch.add_column(sa.Column(name, kind, nullable=True))
    op.create_index("ix_jobs_cache_key", "jobs", ["cache_key", "status"])
    op.create_index("ix_jobs_follows", "jobs", ["follows"])
    op.create_table(
        "cache_entries",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column(
            "job_id", sa.String(36), sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("last_hit_at", WHEN),
        sa.Column("expires_at", WHEN, nullable=False),
        sa.Column("hits", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False, server_default=sa.text("0")),
    )
    op.create_index("ix_cache_entries_expires", "cache_entries", ["expires_at"])
    op.create_table(
        "idempotency_keys",
        sa.Column("tenant", sa.String(200), primary_key=True),
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column(
            "job_id", sa.String(36), sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("expires_at", WHEN, nullable=False),
    )
    op.create_index("ix_idempotency_keys_expires", "idempotency_keys", ["expires_at"])


def downgrade() -> None:
    op.drop_table("idempotency_keys")
    op.drop_table("cache_entries")
    op.drop_index("ix_jobs_follows", "jobs")
    op.drop_index("ix_jobs_cache_key", "jobs")
    with op.batch_alter_table("jobs") as batch:
        for name, _ in reversed(JOB_COLUMNS):
            batch.drop_column(name)
