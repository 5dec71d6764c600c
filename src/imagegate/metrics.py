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


def count_decision(stage: str, action: str, categories: Iterable[str]) -> None:
    for category in list(categories) or ["uncategorised"]:
        SAFETY_DECISIONS.labels(stage, action, category).inc()


def exposition(jobs_by_status: Mapping[str, int]) -> bytes:
    """The process's counters, then the job counts just read from the database."""
    scrape = CollectorRegistry()
    jobs = Gauge(
        "imagegate_jobs", "Jobs by status, from the database.", ["status"], registry=scrape
    )
    for status, count in jobs_by_status.items():
        jobs.labels(status).set(count)
    return generate_latest(REGISTRY) + generate_latest(scrape)
