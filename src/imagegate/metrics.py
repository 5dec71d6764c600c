"""Prometheus metrics, served at ``GET /metrics``.

Counters are per process (Prometheus adds up the replicas): the safety decisions that
went into the audit log, counted once their transaction commits. Job counts by status are
read from the database at each scrape, so every replica reports the same queue depth, the
figure a worker autoscaler follows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, generate_latest

SAFETY_DECISIONS = Counter(
    "imagegate_safety_decisions",
    "Blocked, flagged and reviewed requests, as recorded in the audit log.",
    ["stage", "action", "category"],
)


COST = Counter(
    "imagegate_cost",
    "What ended jobs cost, in the price table's currency.",
    ["tenant", "model"],
)
IMAGES = Counter(
    "imagegate_images",
    "Images of ended jobs (0 for a job that did not complete), by its final status.",
    ["tenant", "model", "status"],
)
JOBS_ENDED = Counter("imagegate_jobs_ended", "Jobs that ended.", ["tenant", "model", "status"])
RATE_LIMIT_REFUSALS = Counter(
    "imagegate_rate_limit_refusals",
    "Requests refused by a rate limit, quota, cap or budget, by the policy hit.",
    ["policy"],
)
CACHE_LOOKUPS = Counter(
    "imagegate_cache_requests",
    "New jobs by what the cache did (RFC 9211's words): hit, collapsed (followed an identical "
    "job in flight), miss, or bypass (not cacheable, or the request said no-cache).",
    ["result"],
)
BUDGET_ALERTS = Counter(
    "imagegate_budget_alerts", "Budget thresholds crossed.", ["tenant", "threshold"]
)


def count_settled(tenant: str, model: str, status: str, images: int, micros: int) -> None:
    COST.labels(tenant, model).inc(micros / 1_000_000)
    IMAGES.labels(tenant, model, status).inc(images)
    JOBS_ENDED.labels(tenant, model, status).inc()


def count_decision(stage: str, action: str, categories: Iterable[str]) -> None:
    for category in list(categories) or ["uncategorised"]:
        SAFETY_DECISIONS.labels(stage, action, category).inc()


def exposition(jobs_by_status: Mapping[str, int], cache: tuple[int, int] = (0, 0)) -> bytes:
    """The process's counters, then what was just read from the database: the job counts,
    and the cache's live entries and bytes."""
    scrape = CollectorRegistry()
    jobs = Gauge(
        "imagegate_jobs", "Jobs by status, from the database.", ["status"], registry=scrape
    )
    for status, count in jobs_by_status.items():
        jobs.labels(status).set(count)
    entries, size = cache
    Gauge("imagegate_cache_entries", "Live cache entries.", registry=scrape).set(entries)
    Gauge("imagegate_cache_bytes", "Bytes of the cached images.", registry=scrape).set(size)
    return generate_latest(REGISTRY) + generate_latest(scrape)
