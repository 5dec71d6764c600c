"""the queue by tenant: each tenant's next jobs, for the fair claim at scale

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_jobs_queue_by_owner",
        "jobs",
        ["status", "owner", sa.literal_column("priority DESC"), "created_at", "id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_jobs_queue_by_owner", table_name="jobs")
