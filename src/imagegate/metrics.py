"""Prometheus metrics, served at ``GET /metrics`` (the API) and at the ``/metrics`` of
``imagegate worker --metrics-port`` (docs/metrics.md says which process exports what).

Counters and histograms are per process (Prometheus adds up the replicas): the safety
decisions that went into the audit log, counted once their transaction commits; what ended
jobs cost; and, in the processes that run workers, how long jobs waited and ran. The queue
is read from the database at each scrape, so every replica reports the same depth, the
figure a worker autoscaler follows.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from imagegate.jobs.models import Job
from imagegate.jobs.queue_stats import QueueStat

# From a cached sketch (50 ms) to a large model's long generation (10 min).
SECONDS_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600)
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)  # settings.max_batch ≤ 64

SAFETY_DECISIONS = Counter(
    "imagegate_safety_decisions",
    "Blocked, flagged and reviewed requests, as recorded in the audit log.",
    ["stage", "action", "category"],
)
OUTPUT_MODERATION = Counter(
    "imagegate_output_moderation_decisions",
    "Output moderation of generated images: allow, block or review (per job), and "
    "preview_withheld (a flagged preview, not kept).",
    ["action"],
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
JOBS_ENDED = Counter(
    "imagegate_jobs_ended",
    "Jobs that ended, by final status and error code (empty unless failed or canceled with one).",
    ["tenant", "model", "status", "error_code"],
)
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
EVENT_STREAMS_OPEN = Gauge(
    "imagegate_event_streams_open",
    "Open event streams (SSE and WebSockets) in this process.",
)
EVENT_STREAMS_REFUSED = Counter(
    "imagegate_event_streams_refused",
    "Event streams refused because IMAGEGATE_MAX_EVENT_STREAMS were open.",
)
QUEUE_WAIT = Histogram(
    "imagegate_queue_wait_seconds",
    "Completed jobs: from creation to the start of the attempt that completed them.",
    ["model", "backend"],
    buckets=SECONDS_BUCKETS,
)
GENERATION = Histogram(
    "imagegate_generation_seconds",
    "Completed jobs: the model's time on their batch.",
    ["model", "backend"],
    buckets=SECONDS_BUCKETS,
)
JOB_LATENCY = Histogram(
    "imagegate_job_latency_seconds",
    "Completed jobs: from creation to the recorded result (end to end).",
    ["model", "backend"],
    buckets=SECONDS_BUCKETS,
)
BATCH_SIZE = Histogram(
    "imagegate_batch_size",
    "Jobs per generator call (forward pass), counted once per batch generated.",
    ["model"],
    buckets=BATCH_BUCKETS,
)


def count_settled(
    tenant: str, model: str, status: str, images: int, micros: int, error_code: str = ""
) -> None:
    COST.labels(tenant, model).inc(micros / 1_000_000)
    IMAGES.labels(tenant, model, status).inc(images)
    JOBS_ENDED.labels(tenant, model, status, error_code).inc()


def count_decision(stage: str, action: str, categories: Iterable[str]) -> None:
    for category in list(categories) or ["uncategorised"]:
        SAFETY_DECISIONS.labels(stage, action, category).inc()


def observe_completed(
    job: Job, model: str, backend: str, generation_s: float, finished: datetime
) -> None:
    """A worker recorded ``job``'s result at ``finished`` (aware, UTC)."""
    labels = (model, backend)
    if job.started_at is not None:
        QUEUE_WAIT.labels(*labels).observe(_seconds(job.created_at, job.started_at))
    GENERATION.labels(*labels).observe(generation_s)
    JOB_LATENCY.labels(*labels).observe(_seconds(job.created_at, finished))


def _seconds(start: datetime, end: datetime) -> float:
    return max(0.0, (end - start).total_seconds())


@dataclass(frozen=True, slots=True)
class DatabaseFigures:
    """What a scrape reads from the database: the same on every replica."""

    jobs_by_status: Mapping[str, int]
    cache: tuple[int, int]  # live entries, and their images' bytes
    queues: Sequence[QueueStat]


def exposition(figures: DatabaseFigures | None) -> bytes:
    """The process's counters and histograms, then what was just read: the job counts,
    the queue by model, the cache, and GPU memory. ``None``: the database could not be
    read, and the process's own figures are still worth a scrape."""
    scrape = CollectorRegistry()
    if figures is not None:
        _database_gauges(scrape, figures)
    _gpu_gauges(scrape)
    return generate_latest(REGISTRY) + generate_latest(scrape)


def _database_gauges(scrape: CollectorRegistry, figures: DatabaseFigures) -> None:
    jobs = Gauge(
        "imagegate_jobs", "Jobs by status, from the database.", ["status"], registry=scrape
    )
    for status, count in figures.jobs_by_status.items():
        jobs.labels(status).set(count)
    _queue_gauges(scrape, figures.queues)
    entries, size = figures.cache
    Gauge("imagegate_cache_entries", "Live cache entries.", registry=scrape).set(entries)
    Gauge("imagegate_cache_bytes", "Bytes of the cached images.", registry=scrape).set(size)


def _queue_gauges(scrape: CollectorRegistry, queues: Sequence[QueueStat]) -> None:
    depth = Gauge(
        "imagegate_queue_depth",
        "Queued jobs a worker could claim, by model (followers of an identical job excluded).",
        ["model"],
        registry=scrape,
    )
    age = Gauge(
        "imagegate_queue_oldest_age_seconds",
        "Age of the oldest of those jobs, by model (0 when none waits).",
        ["model"],
        registry=scrape,
    )
    for stat in queues:
        depth.labels(stat.model).set(stat.depth)
        age.labels(stat.model).set(stat.oldest_age_s)


def _gpu_gauges(scrape: CollectorRegistry) -> None:
    """Only where this process already uses CUDA through torch: importing torch (seconds)
    or creating a CUDA context (GPU memory) for a scrape would be worse than no figure."""
    cuda = _initialised_cuda()
    if cuda is None:
        return
    held = Gauge(
        "imagegate_gpu_memory_bytes",
        "GPU memory this process holds through torch's caching allocator (reserved).",
        ["device"],
        registry=scrape,
    )
    used = Gauge(
        "imagegate_gpu_memory_allocated_bytes",
        "GPU memory in use by this process's tensors.",
        ["device"],
        registry=scrape,
    )
    peak = Gauge(
        "imagegate_gpu_memory_peak_allocated_bytes",
        "The most GPU memory this process's tensors have used at once since it started: "
        "what the largest batch needed.",
        ["device"],
        registry=scrape,
    )
    total = Gauge(
        "imagegate_gpu_memory_total_bytes", "The device's memory.", ["device"], registry=scrape
    )
    for index in range(cuda.device_count()):
        device = f"cuda:{index}"
        held.labels(device).set(cuda.memory_reserved(index))
        used.labels(device).set(cuda.memory_allocated(index))
        peak.labels(device).set(cuda.max_memory_allocated(index))
        total.labels(device).set(cuda.get_device_properties(index).total_memory)


def _initialised_cuda() -> Any:
    torch = sys.modules.get("torch")
    cuda = getattr(torch, "cuda", None)
    if cuda is None or not cuda.is_available() or not cuda.is_initialized():
        return None
    return cuda
