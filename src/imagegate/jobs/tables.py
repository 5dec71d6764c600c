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


WAITING = text("status = 'queued' AND follows IS NULL")  # queued, and not a follower


def sweep_indexes(*flags: tuple[str, bool]) -> list[Index]:
    """Partial indexes over ended jobs that still have something to sweep: they stay as
    small as the backlog, however many jobs are kept."""
    made = []
    for column, pending in flags:
        where = text(f"{column} = {'true' if pending else 'false'}")
        made.append(
            Index(
                f"ix_jobs_sweep_{column}",
                "finished_at",
                postgresql_where=where,
                sqlite_where=where,
            )
        )
    return made


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
    Column("key_id", String(40)),  # the API key (or the key behind a browser token)
    Column("end_user", String(200)),  # the app's own end-user id ("user" in the API)
    Column("token_id", String(40)),  # the browser token that created the job
    Column("cost_currency", String(3)),
    Column("cost_estimate_micros", BigInteger),  # reserved against budgets at submission
    Column("cost_micros", BigInteger),  # the actual cost, once the job ended
    Column("budgeted", Boolean),  # its estimate was reserved against a budget
    Column("cache_key", String(64)),  # a deterministic request's key (imagegate.cache.keys)
    Column("cache_store", Boolean),  # its result may be kept, and shared with followers
    Column("cache_status", String(10)),  # hit, collapsed, miss, bypass (RFC 9211's words)
    Column("follows", String(36)),  # the identical job in flight whose result this one takes
    Column("output_format", String(10), nullable=False, server_default=text("'png'")),
    Column("output_compression", Integer),  # 0-100 for webp and jpeg; None: the default
    # What the sweeper (imagegate.retention) still has to delete once the job has ended.
    Column("events_swept", Boolean, nullable=False, server_default=text("false")),
    Column("previews_kept", Boolean, nullable=False, server_default=text("false")),
    Column("quarantined", Boolean, nullable=False, server_default=text("false")),
    # The claim query's path: the next runnable job by priority, then age.
    Index("ix_jobs_queue", "status", text("priority DESC"), "created_at", "id"),
    # The fair claim on PostgreSQL: which tenants wait, and each one's next jobs.
    Index("ix_jobs_queue_by_owner", "status", "owner", text("priority DESC"), "created_at", "id"),
    # A waiting job's place: the jobs ahead of it, counted from the index alone (no row
    # read to rule out a follower), as small as the queue.
    Index(
        "ix_jobs_waiting",
        text("priority DESC"),
        "created_at",
        "id",
        postgresql_where=WAITING,
        sqlite_where=WAITING,
    ),
    Index("ix_jobs_owner_created", "owner", "created_at", "id"),
    Index("ix_jobs_owner_status", "owner", "status"),
    Index("ix_jobs_started", "started_at"),  # fair share: who was served recently
    Index("ix_jobs_cache_key", "cache_key", "status"),  # single-flight: the leader in flight
    Index("ix_jobs_follows", "follows"),  # a leader's followers
    # Retention: ended jobs by age (per tenant too), and what is left to sweep of them.
    Index("ix_jobs_finished", "finished_at"),
    Index("ix_jobs_owner_finished", "owner", "finished_at"),
    *sweep_indexes(("events_swept", False), ("previews_kept", True), ("quarantined", True)),
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
    Column("content_type", String(40), nullable=False, server_default=text("'image/png'")),
    Column("sha256", String(64)),  # of the bytes: the ETag, and the blob's name
    Column("placeholder", JSON),  # {"thumbhash": base64, "data_url": "data:image/png;…"}
    Index("ix_images_job", "job_id", "idx", unique=True),
    Index("ix_images_storage_key", "storage_key"),  # is a blob still referred to?
)

# Content-addressed image files: one row per stored blob, written before its bytes, so
# the sweeper never deletes a file that a job is about to refer to again.
blobs = Table(
    "blobs",
    metadata,
    Column("storage_key", String(500), primary_key=True),
    Column("size_bytes", BigInteger, nullable=False),
    Column("written_at", DateTime(timezone=True), nullable=False),
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
    Column("job_id", String(36), ForeignKey("jobs.id", ondelete="CASCADE")),  # None: an alert
    Column("tenant", String(100)),  # whose message it is (a budget alert's tenant)
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


# -- tenancy: tenants, their API keys --------------------------------------------------------

tenants = Table(
    "tenants",
    metadata,
    Column("id", String(100), primary_key=True),
    Column("weight", Float, nullable=False, server_default=text("1")),  # fair share
    Column("limits", JSON),  # {"requests_per_minute", "images_per_minute", ...}
    Column("budget", JSON),  # {"amount", "currency", "period", "thresholds", "alert_url"}
    Column("retention_days", Float),  # ended jobs and their images; None: the default
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("tenant", String(100), ForeignKey("tenants.id"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("prefix", String(20), nullable=False),  # shown in lists: ig_sk_ and 8 characters
    Column("secret_hash", String(64), nullable=False),  # SHA-256 of the whole key, hex
    Column("scopes", JSON, nullable=False),
    Column("limits", JSON),
    Column("budget", JSON),
    Column("expires_at", DateTime(timezone=True)),
    Column("revoked_at", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_api_keys_hash", "secret_hash", unique=True),
    Index("ix_api_keys_tenant", "tenant", "created_at"),
)

# -- usage: the ledger, budget spend and reservations, alerts sent ---------------------------

usage_ledger = Table(
    "usage_ledger",
    metadata,
    Column("job_id", String(36), primary_key=True),  # one row per job, written as it ends
    Column("tenant", String(100), nullable=False),
    Column("key_id", String(40)),
    Column("end_user", String(200)),
    Column("model", String(300), nullable=False),
    Column("status", String(20), nullable=False),
    Column("images", Integer, nullable=False),
    Column("cost_micros", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("generation_ms", BigInteger, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Index("ix_usage_ledger_tenant_at", "tenant", "at"),
)

# Spend per budget and period: ``scope`` is "tenant:<id>" or "key:<id>".
budget_spend = Table(
    "budget_spend",
    metadata,
    Column("scope", String(150), primary_key=True),
    Column("period_start", DateTime(timezone=True), primary_key=True),
    Column("reserved_micros", BigInteger, nullable=False, server_default=text("0")),
    Column("spent_micros", BigInteger, nullable=False, server_default=text("0")),
)

budget_reservations = Table(
    "budget_reservations",
    metadata,
    Column("job_id", String(36), ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    Column("scope", String(150), primary_key=True),
    Column("period_start", DateTime(timezone=True), nullable=False),
    Column("micros", BigInteger, nullable=False),
)

# One row per threshold crossed per budget period: the key that makes alerts fire once.
budget_alerts = Table(
    "budget_alerts",
    metadata,
    Column("scope", String(150), primary_key=True),
    Column("period_start", DateTime(timezone=True), primary_key=True),
    Column("threshold", Float, primary_key=True),
    Column("at", DateTime(timezone=True), nullable=False),
)

# The result cache: a deterministic request's key -> the job whose images answer it.
cache_entries = Table(
    "cache_entries",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("job_id", String(36), ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("last_hit_at", DateTime(timezone=True)),
    Column("expires_at", DateTime(timezone=True), nullable=False),  # refreshed by each hit
    Column("hits", Integer, nullable=False, server_default=text("0")),
    Column("size_bytes", BigInteger, nullable=False, server_default=text("0")),
    Index("ix_cache_entries_expires", "expires_at"),
)

# Idempotency-Key: a tenant's key -> the job its first request made, for 24 hours.
idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("tenant", String(200), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("request_hash", String(64), nullable=False),  # what the first request asked
    Column("job_id", String(36), ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Index("ix_idempotency_keys_expires", "expires_at"),
)
