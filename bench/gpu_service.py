"""bench/gpu.py's service half: one ``imagegate serve`` per case, measured over HTTP and SSE.

A case is one model, one ``IMAGEGATE_MAX_BATCH`` and output moderation on or off. For each
step count it sends one batch of jobs to warm the shapes up, then:

- throughput: ``THROUGHPUT_BATCHES`` batches' worth of jobs at once, each submitted with
  ``POST /v1/jobs`` and followed on its SSE stream; images/s from the first submission to
  the last terminal event, as a client sees them;
- overhead: rounds of one batch, nothing queued before it; each job's end-to-end time
  (submission to its ``completed`` event) less its batch's generation time.
"""

from __future__ import annotations

import itertools
import statistics
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.processes import serve

from imagegate.sdk import Client
from imagegate.sdk.events import CompletedEvent, Event

THROUGHPUT_BATCHES = 3
OVERHEAD_SAMPLES = 8  # jobs, in rounds of one batch (at least two rounds)
BATCH_WINDOW_MS = 50
SEEDS = itertools.count(1)  # every job its own seed: no cache hit, no shared flight


@dataclass(frozen=True)
class ServiceCase:
    arch: str
    folder: Path
    size: int
    device: str
    batch: int
    moderation: bool


@dataclass(frozen=True)
class Finished:
    submitted: float
    ended: float
    generation_s: float
    batch_size: int

    @property
    def overhead_s(self) -> float:
        return self.ended - self.submitted - self.generation_s


def environment(case: ServiceCase, data_dir: Path) -> dict[str, str]:
    return {
        "IMAGEGATE_DATA_DIR": str(data_dir),  # SQLite in it: the default database
        "IMAGEGATE_BACKEND": "diffusers",
        "IMAGEGATE_MODEL": str(case.folder),
        "IMAGEGATE_DIFFUSERS_DEVICE": case.device,
        "IMAGEGATE_MAX_BATCH": str(case.batch),
        "IMAGEGATE_BATCH_WINDOW_MS": str(BATCH_WINDOW_MS),
        "IMAGEGATE_OUTPUT_MODERATION": "true" if case.moderation else "false",
        # The prompt checks run, but not the semantic stage: its model's 32 MB wheel does
        # not fit what the GPU machine can be sent (scripts/gpu_wheels.sh).
        "IMAGEGATE_SAFETY_SEMANTIC": "false",
        "IMAGEGATE_DEFAULT_SIZE": str(case.size),
        "IMAGEGATE_MIN_SIZE": "64",
        "IMAGEGATE_JOB_TIMEOUT_S": "600",
        "IMAGEGATE_LOG_LEVEL": "warning",
    }


@contextmanager
def service(case: ServiceCase, work: Path) -> Iterator[tuple[httpx.Client, Client]]:
    name = f"{case.arch}-b{case.batch}-{'mod' if case.moderation else 'nomod'}"
    data_dir = work / "service" / name
    data_dir.mkdir(parents=True)
    log = data_dir / "serve.log"
    try:
        with (
            serve(environment(case, data_dir), log, workers=1) as http,
            Client(str(http.base_url), timeout=600) as client,
        ):
            yield http, client
    except BaseException:
        print(f"--- the end of {log}:\n{log.read_text(errors='replace')[-4000:]}", flush=True)
        raise


def follow(client: Client, body: dict[str, Any]) -> Finished:
    """Submit one job and read its SSE stream to the end."""
    submitted = time.perf_counter()
    job = client.jobs.create("a lighthouse at dusk", seed=next(SEEDS), **body)
    last: Event | None = None
    for last in client.jobs.stream(job.id):
        if last.is_terminal:
            break
    ended = time.perf_counter()
    if not isinstance(last, CompletedEvent) or last.metadata is None:
        raise RuntimeError(f"job {job.id} ended as {last!r}")
    meta = last.metadata
    return Finished(submitted, ended, meta.generation_time_ms / 1000, meta.batch_size)


def run_jobs(client: Client, count: int, body: dict[str, Any]) -> list[Finished]:
    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(lambda _: follow(client, body), range(count)))


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def measure(client: Client, case: ServiceCase, steps: int, guidance: float) -> dict[str, Any]:
    body = {"width": case.size, "height": case.size, "steps": steps, "guidance": guidance}
    run_jobs(client, case.batch, body)  # the shapes' first call, not measured
    flow = run_jobs(client, THROUGHPUT_BATCHES * case.batch, body)
    span = max(f.ended for f in flow) - min(f.submitted for f in flow)
    rounds = max(2, OVERHEAD_SAMPLES // case.batch)
    calm = [f for _ in range(rounds) for f in run_jobs(client, case.batch, body)]
    overheads = [f.overhead_s * 1000 for f in calm]
    return {
        "jobs": len(flow),
        "images_per_s": round(len(flow) / span, 3),
        "mean_batch_formed": round(statistics.mean(f.batch_size for f in flow), 2),
        "generation_s_median": round(statistics.median(f.generation_s for f in calm), 4),
        "end_to_end_s_median": round(statistics.median(f.ended - f.submitted for f in calm), 4),
        "overhead_samples": len(overheads),
        "overhead_ms_p50": round(percentile(overheads, 50), 1),
        "overhead_ms_p99": round(percentile(overheads, 99), 1),
    }


def gpu_peak_bytes(http: httpx.Client) -> int | None:
    """The worker's peak GPU memory, from ``/metrics`` (absent on a CPU)."""
    for line in http.get("/metrics").text.splitlines():
        if line.startswith("imagegate_gpu_memory_peak_allocated_bytes{"):
            return int(float(line.rsplit(" ", 1)[1]))
    return None
