"""What the result cache and single-flight save, on a real ``imagegate serve`` process.

1. **A hit end to end**: ``POST /v1/jobs`` of a seeded request made before, timed from
   send to the completed job resource in the answer (target: p99 at most 10 ms). In turn
   with each hit, the floor: an unseeded submission, timed to its ``queued`` answer (at
   the lowest priority). Before them, on an empty queue, misses: a new seed each time,
   submitted and polled every 10 ms until completed, with the sketch delay at 200 ms.
   The server's prompt safety is the term lists (as in the tests' processes).
2. **Single-flight**: 20 identical seeded requests at once, on a fresh seed each round;
   how many of them generated (target: 1).

Writes ``bench/results/cache.json``.

    .venv/bin/python bench/cache.py [--hits 500] [--misses 20] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.processes import serve

RESULTS = Path(__file__).parent / "results"
BODY = {"prompt": "a lighthouse at dusk", "width": 512, "height": 512}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def hit_ms(api: httpx.Client, count: int) -> tuple[list[float], list[float]]:
    """Hits, and in turn with them the floor: an unseeded submission's answer (queued)."""
    api.post("/v1/jobs", json=BODY | {"seed": 1}).raise_for_status()
    wait(api, api.post("/v1/jobs", json=BODY | {"seed": 1}).json()["id"])
    hits, plain = [], []
    for _ in range(count):
        started = time.perf_counter()
        job = api.post("/v1/jobs", json=BODY | {"seed": 1}).json()
        hits.append((time.perf_counter() - started) * 1000)
        assert job["status"] == "completed" and job["metadata"]["cache"] == "hit", job
        started = time.perf_counter()
        api.post("/v1/jobs", json=BODY | {"priority": -100}).raise_for_status()
        plain.append((time.perf_counter() - started) * 1000)
    return hits, plain


def miss_ms(api: httpx.Client, count: int) -> list[float]:
    times = []
    for seed in range(1000, 1000 + count):
        started = time.perf_counter()
        job = api.post("/v1/jobs", json=BODY | {"seed": seed}).json()
        wait(api, job["id"])
        times.append((time.perf_counter() - started) * 1000)
    return times


def wait(api: httpx.Client, job_id: str) -> dict[str, Any]:
    while True:
        job: dict[str, Any] = api.get(f"/v1/jobs/{job_id}").json()
        if job["status"] == "completed":
            return job
        time.sleep(0.01)


def single_flight(api: httpx.Client, seed: int) -> int:
    with ThreadPoolExecutor(20) as pool:
        answers = list(
            pool.map(lambda _: api.post("/v1/jobs", json=BODY | {"seed": seed}), range(20))
        )
    jobs = [wait(api, answer.json()["id"]) for answer in answers]
    return sum(job["metadata"]["cache"] == "miss" for job in jobs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hits", type=int, default=500)
    parser.add_argument("--misses", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        env = {
            "IMAGEGATE_DATA_DIR": str(Path(scratch) / "data"),
            "IMAGEGATE_SKETCH_DELAY_MS": "200",
            "IMAGEGATE_LOG_LEVEL": "warning",
        }
        with serve(env, Path(scratch) / "serve.log", workers=1) as api:
            misses = miss_ms(api, args.misses)  # first, while the queue is empty
            hits, plain = hit_ms(api, args.hits)
            generations = [single_flight(api, 5000 + r) for r in range(args.rounds)]
    result = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, SQLite, term-list safety",
        "hit_ms": {
            "p50": round(statistics.median(hits), 2),
            "p99": round(percentile(hits, 0.99), 2),
        },
        "uncached_submission_ms": {
            "p50": round(statistics.median(plain), 2),
            "p99": round(percentile(plain, 0.99), 2),
        },
        "miss_ms": {
            "p50": round(statistics.median(misses), 1),
            "p99": round(percentile(misses, 0.99), 1),
        },
        "single_flight_generations_per_20": generations,
        "targets": {"hit_p99_ms": 10, "single_flight_generations": 1},
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "cache.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
