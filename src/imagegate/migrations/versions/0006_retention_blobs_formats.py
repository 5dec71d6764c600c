"""retention (what is left to sweep), content-addressed blobs, output formats, placeholders

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

WHEN = sa.DateTime(timezone=True)
FALSE = sa.text("false")
JOB_COLUMNS: tuple[sa.Column[Any], ...] = (
    sa.Column("output_format", sa.String(10), nullable=False, server_default=sa.text("'png'")),
    sa.Column("output_compression", sa.Integer()),
    sa.Column("events_swept", sa.Boolean(), nullable=False, server_default=FALSE),
    sa.Column("previews_kept", sa.Boolean(), nullable=False, server_default=FALSE),
    sa.Column("quarantined", sa.Boolean(), nullable=False, server_default=FALSE),
)
IMAGE_COLUMNS: tuple[sa.Column[Any], ...] = (
    sa.Column("content_type", sa.String(40), nullable=False, server_default=sa.text("'image/png'")),
    sa.Column("sha256", sa.String(64)),
    sa.Column("placeholder", sa.JSON()),
)
SWEEPS = (("events_swept", "false"), ("previews_kept", "true"), ("quarantined", "true"))


def upgrade() -> None:
    # Plain ADD COLUMNs: SQLite takes them as they are, where a batch would copy the
    # table (and lose the queue index's DESC).
    for column in JOB_COLUMNS:
        op.add_column("jobs", column)
    for column in IMAGE_COLUMNS:
        op.add_column("images", column)
    op.add_column("tenants", sa.Column("retention_days", sa.Float()))
    # Jobs that ended before this migration have had their events all along: the first
    # sweeps after it go through them in small batches.
    op.create_index("ix_jobs_finished", "jobs", ["finished_at"])
    op.create_index("ix_jobs_owner_finished", "jobs", ["owner", "finished_at"])
    for flag, pending in SWEEPS:
        where = sa.text(f"{flag} = {pending}")
        op.create_index(
            f"ix_jobs_sweep_{flag}",
            "jobs",
            ["finished_at"],
            postgresql_where=where,
            sqlite_where=where,
        )
    op.create_index("ix_images_storage_key", "images", ["storage_key"])
    op.create_table(
        "blobs",
        sa.Column("storage_key", sa.String(500), primary_key=True),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("written_at", WHEN, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("blobs")
    op.drop_index("ix_images_storage_key", "images")
    for flag, _ in reversed(SWEEPS):
        op.drop_index(f"ix_jobs_sweep_{flag}", "jobs")
    op.drop_index("ix_jobs_owner_finished", "jobs")
    op.drop_index("ix_jobs_finished", "jobs")
    with op.batch_alter_table("tenants") as batch:
        batch.drop_column("retention_days")
    with op.batch_alter_table("images") as batch:
        for column in reversed(IMAGE_COLUMNS):
            batch.drop_column(column.name)
    with op.batch_alter_table("jobs") as batch:
        for column in reversed(JOB_COLUMNS):
            batch.drop_column(column.name)
