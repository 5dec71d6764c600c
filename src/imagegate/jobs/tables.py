"""The SQL schema, as SQLAlchemy Core tables. Alembic migrations create it."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
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
    Column("webhook_url", Text),
    Column("moderation", JSON),  # {"input": …, "output": …}: every check's outcome
    Column("client_ip", String(64)),
    Column("reviewed_by", String(200)),
    Column("reviewed_at", DateTime(timezone=True)),
    Column("review_decision", String(20)),
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

# Every job's ordered events: the log that SSE, WebSocket and late subscribers read.
job_events = Table(
    "job_events",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("job_id", String(36), ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
    Column("type", String(20), nullable=False),
    Column("data", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_job_events_job", "job_id", "id"),
)

# The webhook outbox: one row per message, written in the transaction that ends the job.
webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("job_id", String(36), ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
    Column("event_type", String(40), nullable=False),
    Column("url", Text, nullable=False),
    Column("payload", JSON),  # built at the first attempt, then sent unchanged
    Column("status", String(20), nullable=False),  # pending, delivered, failed
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False),
    Column("lease_token", String(36)),
    Column("lease_expires_at", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
    Index("ix_webhook_deliveries_job", "job_id"),
)

webhook_attempts = Table(
    "webhook_attempts",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column(
        "delivery_id",
        String(40),
        ForeignKey("webhook_deliveries.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("attempt", Integer, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("status_code", Integer),
    Column("error", Text),
    Column("duration_ms", Integer, nullable=False),
    Index("ix_webhook_attempts_delivery", "delivery_id", "attempt"),
)

# Worker processes announce themselves here, so ETAs know how many are running.
workers = Table(
    "workers",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("concurrency", Integer, nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("last_seen", DateTime(timezone=True), nullable=False),
)

# Every blocked, flagged or reviewed request, for the admins.
audit_log = Table(
    "audit_log",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("owner", String(200), nullable=False),
    Column("client_ip", String(64)),
    Column("job_id", String(36)),
    Column("prompt", Text, nullable=False),
    Column("normalized_prompt", Text, nullable=False),
    Column("stage", String(40), nullable=False),  # input, output or review
    Column("action", String(20), nullable=False),  # allow, warn, review, block, approve, reject
    Column("categories", JSON, nullable=False),
    Column("reasons", JSON, nullable=False),
    Index("ix_audit_log_at", "at"),
)
