"""the waiting jobs: a partial index that counts a queued job's place from the index alone

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

WAITING = sa.text("status = 'queued' AND follows IS NULL")


def upgrade() -> None:
    op.create_index(
        "ix_jobs_waiting",
        "jobs",
        [sa.literal_column("priority DESC"), "created_at", "id"],
        unique=False,
        postgresql_where=WAITING,
        sqlite_where=WAITING,
    )


def downgrade() -> None:
    op.drop_index("ix_jobs_waiting", table_name="jobs")
