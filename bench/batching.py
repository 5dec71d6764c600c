"""Dynamic batching: does the service keep the model's own batch speed-up?

With the tiny random-weight Stable Diffusion pipeline on CPU (it draws noise; it proves
the code path, not image quality):

- offline: one pipeline call with a batch of B versus B calls of one (the limit);
- service: ``imagegate serve`` as a real process, one worker, 16 equal jobs submitted at
  once, images/s with ``IMAGEGATE_MAX_BATCH=B`` versus ``1``.

Target: the service keeps at least 80% of the offline speed-up. Medians of 3 runs;
JSON goes to ``bench/results/batching.json``.

    .venv/bin/python bench/batching.py [--batch 8] [--jobs 16] [--size 128] [--steps 8]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.processes import serve

from imagegate.generators import GenerationRequest, StepInfo
from imagegate.generators.diffusers import DiffusersGenerator, DiffusersOptions
from imagegate.generators.tiny_sd import build_tiny_sd

RESULTS = Path(__file__).parent / "results"
TRIALS = 3


def offline(model: Path, batch: int, size: int, steps: int) -> dict[str, float]:
    generator = DiffusersGenerator(str(model), DiffusersOptions(device="cpu"))
    generator.load()
    requests = [
        GenerationRequest(f"j{i}", f"a prompt {i}", None, None, size, size, steps, 7.5, i)
        for i in range(batch)
    ]

    def quiet(_: StepInfo) -> None:
        return None

    singles, batched = [], []
    for _ in range(TRIALS):
        started = time.perf_counter()
        for request in requests:
            generator.generate([request], quiet)
        singles.append(time.perf_counter() - started)
        started = time.perf_counter()
        generator.generate(requests, quiet)
        batched.append(time.perf_counter() - started)
    single_s, batch_s = statistics.median(singles), statistics.median(batched)
    return {
        "images_per_s_single_calls": round(batch / single_s, 2),
        "images_per_s_one_batched_call": round(batch / batch_s, 2),
        "speedup": round(single_s / batch_s, 3),
    }


def service(model: Path, max_batch: int, jobs: int, size: int, steps: int) -> float:
    """Images/s for ``jobs`` equal jobs, median over trials, each on a fresh database."""
    rates = []
    for _ in range(TRIALS):
        with tempfile.TemporaryDirectory() as tmp:
            env = {
                "IMAGEGATE_DATA_DIR": tmp,
                "IMAGEGATE_BACKEND": "diffusers",
                "IMAGEGATE_MODEL": str(model),
                "IMAGEGATE_DIFFUSERS_DEVICE": "cpu",
                "IMAGEGATE_MIN_SIZE": "64",
                "IMAGEGATE_MAX_BATCH": str(max_batch),
                "IMAGEGATE_BATCH_WINDOW_MS": "50",
                "IMAGEGATE_LOG_LEVEL": "warning",
            }
            with serve(env, Path(tmp) / "serve.log", workers=1) as client:
                rates.append(_run_jobs(client, jobs, size, steps))
    return statistics.median(rates)


def _run_jobs(client: httpx.Client, jobs: int, size: int, steps: int) -> float:
    body = {"width": size, "height": size, "steps": steps, "guidance": 7.5}

    def submit(i: int) -> str:
        job: dict[str, Any] = client.post(
            "/v1/jobs", json=body | {"prompt": f"p{i}", "seed": i}
        ).json()
        return str(job["id"])

    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(submit, range(jobs)))
    records = []
    for job_id in ids:
        while (job := client.get(f"/v1/jobs/{job_id}").json())["status"] not in (
            "completed",
            "failed",
        ):
            time.sleep(0.02)
        assert job["status"] == "completed", job
        records.append(job)
    start = min(datetime.fromisoformat(r["created_at"]) for r in records)
    end = max(datetime.fromisoformat(r["finished_at"]) for r in records)
    return jobs / (end - start).total_seconds()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--jobs", type=int, default=16)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = build_tiny_sd(Path(tmp) / "tiny-sd")
        limit = offline(model, args.batch, args.size, args.steps)
        off = service(model, 1, args.jobs, args.size, args.steps)
        on = service(model, args.batch, args.jobs, args.size, args.steps)
    kept = (on / off) / limit["speedup"]
    result = {
        "benchmark": "batching",
        "when": datetime.now().astimezone().isoformat(timespec="seconds"),
        "model": "tiny random-weight Stable Diffusion (CPU)",
        "batch": args.batch,
        "jobs": args.jobs,
        "size": args.size,
        "steps": args.steps,
        "offline": limit,
        "service_images_per_s_batching_off": round(off, 2),
        "service_images_per_s_batching_on": round(on, 2),
        "service_speedup": round(on / off, 3),
        "share_of_offline_speedup_kept": round(kept, 3),
        "target": ">= 0.8",
    }
    print(
        f"offline: batch of {args.batch} is {limit['speedup']:.2f}x faster than {args.batch} "
        f"single calls; service: {off:.1f} -> {on:.1f} images/s ({on / off:.2f}x), "
        f"keeping {kept:.0%} of the offline speed-up"
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "batching.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
