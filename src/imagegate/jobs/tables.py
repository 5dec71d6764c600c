"""The SQL schema, as SQLAlchemy Core tables. Alembic migrations create it."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    text,
)

metadata = MetaData()

jobs = Table(
    "jobs",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("owner", String(200), nullable=False),
    Column("status", String(20), nullable=False),
    Column("prompt", Text, nullable=False),
    Column("full_prompt", Text, nullable=False),
    Column("style", String(100)),
    Column("negative_prompt", Text),
    Column("width", Integer, nullable=False),
    Column("height", Integer, nullable=False),
    Column("steps", Integer, nullable=False),
    Column("guidance", Float, nullable=False),
    Column("seed", BigInteger, nullable=False),
    Column("n", Integer, nullable=False),
    Column("priority", Integer, nullable=False, server_default=text("0")),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("run_after", DateTime(timezone=True), nullable=False),
    Column("started_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
    Column("lease_token", String(36)),
    Column("lease_expires_at", DateTime(timezone=True)),
    Column("cancel_requested", Boolean, nullable=False, server_default=text("false")),
    Column("progress_step", Integer),
    Column("progress_total", Integer),
    Column("error_code", String(100)),
    Column("error_message", Text),
    Column("error_retryable", Boolean),
    Column("model", String(300)),
    Column("generation_time_ms", Integer),
    Column("batch_size", Integer),
    # The claim query's path: the next runnable job by priority, then age.
    Index("ix_jobs_queue", "status", text("priority DESC"), "created_at", "id"),
    Index("ix_jobs_owner_created", "owner", "created_at", "id"),
)

images = Table(
    "images",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("job_id", String(36), ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
    Column("idx", Integer, nullable=False),
    Column("storage_key", String(500), nullable=False),
    Column("width", Integer, nullable=False),
    Column("height", Integer, nullable=False),
    Column("size_bytes", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_images_job", "job_id", "idx", unique=True),
)
