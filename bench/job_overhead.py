"""The service's CPU per job, the model's own time excluded, at 512x512 (issue 13, target 3).

The real runtime (store, worker threads, output gate, storage, events) runs in this
process, with a stand-in model that hands back ready-made 512x512 images with
photographic texture (``bench/formats.py``'s textured sketches, since PNG's cost depends
on the content) after sleeping through its steps: its CPU is nearly nil, and what it has
is measured and taken off. Jobs are submitted through the intake with prompt safety off,
on SQLite and on PostgreSQL, with output moderation off and on (the default: NudeNet on
every image). The figure is the CPU time of every thread but the submitting one (the
workers, their finishing threads, the lease keeper, the listeners), over the jobs; the
submission's own CPU (the intake and the store's insert) is reported beside it.

Targets: at most 10 ms a job with moderation off, at most 20 ms with it on. Configurations
run in turn, each round, so they are compared side by side; medians of the rounds. Writes
``bench/results/job_overhead.json``.

    .venv/bin/python bench/job_overhead.py [--jobs 24] [--rounds 3] [--only sqlite/on]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.formats import images as sketches
from bench.formats import textured
from bench.throughput import fresh_postgres
from PIL.Image import Image

import imagegate.runtime
from imagegate.generators import GenerationRequest, StepCallback, StepInfo
from imagegate.intake import Caller
from imagegate.jobs.specs import JobRequest, build_spec
from imagegate.logs import configure_logging
from imagegate.runtime import Runtime
from imagegate.settings import Settings, load_settings
from imagegate.storage.encoding import PNG_LEVEL

RESULTS = Path(__file__).parent / "results"
MODEL_S, STEPS = 0.6, 20  # the stand-in's generation: two progress writes a job
WORKERS = 2
TARGETS_MS = {"off": 10.0, "on": 20.0}


class StillModel:
    """A model whose output is ready: it sleeps through its steps (calling back after
    each, as a model does) and hands back the next of its pictures."""

    model_name = "still-v1"

    def __init__(self, pictures: Sequence[Image]) -> None:
        self._pictures = pictures
        self._next = itertools.count()
        self._lock = threading.Lock()
        self.cpu_s = 0.0  # its own CPU, taken off the service's

    def load(self) -> None:
        return None

    def generate(
        self, batch: Sequence[GenerationRequest], on_step: StepCallback
    ) -> list[list[Image]]:
        cpu = time.thread_time()
        started = time.monotonic()
        outputs = [[self._picture() for _ in range(request.n)] for request in batch]
        for step in range(1, STEPS + 1):
            pause = started + MODEL_S * step / STEPS - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            own = time.thread_time()
            on_step(StepInfo(step, STEPS))  # the service's, not the model's
            cpu -= time.thread_time() - own
        with self._lock:
            self.cpu_s += time.thread_time() - cpu
        return outputs

    def _picture(self) -> Image:
        return self._pictures[next(self._next) % len(self._pictures)].copy()


def quiet_production_logging() -> None:
    """The service's own logging (JSON lines at info, as deployed), costed but unseen."""
    stderr, sys.stderr = sys.stderr, open(os.devnull, "w")  # noqa: SIM115
    try:
        configure_logging(Settings(log_json=True, log_level="info"))
    finally:
        sys.stderr = stderr


@contextmanager
def serving(settings: Settings, model: StillModel) -> Iterator[Runtime]:
    """The runtime with ``WORKERS`` worker threads on the stand-in model."""
    original = imagegate.runtime.load_generator
    imagegate.runtime.load_generator = lambda _settings: model
    runtime = Runtime(settings)
    try:
        runtime.start_workers(WORKERS)
        yield runtime
    finally:
        imagegate.runtime.load_generator = original
        runtime.close(grace_s=5)


def run_jobs(runtime: Runtime, count: int, tag: str) -> float:
    """Submit ``count`` jobs and wait for them; the submitting thread's CPU seconds."""
    done = runtime.store.status_counts()["completed"]
    cpu = time.thread_time()
    for index in range(count):
        request = JobRequest(f"bench {tag} {index}", width=512, height=512, steps=STEPS)
        runtime.intake.submit(build_spec(request, runtime.settings), Caller("bench"))
    submit_s = time.thread_time() - cpu
    while runtime.store.status_counts()["completed"] < done + count:
        time.sleep(0.05)
    return submit_s


def trial(
    database_url: str, moderation: bool, pictures: Sequence[Image], jobs: int
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        url = database_url or f"sqlite:///{tmp}/bench.db"
        settings = load_settings(
            data_dir=Path(tmp),
            database_url=url,
            safety_enabled=False,
            output_moderation=moderation,
            sweep_interval_s=0,
        )
        model = StillModel(pictures)
        with serving(settings, model) as runtime:
            _reset(runtime)
            run_jobs(runtime, 2, "warm")  # connections, the detector's first run
            model.cpu_s = 0.0
            process, main = time.process_time(), time.thread_time()
            wall = time.perf_counter()
            submit_s = run_jobs(runtime, jobs, "job")
            wall_s = time.perf_counter() - wall
            others_s = (time.process_time() - process) - (time.thread_time() - main)
            sizes = _image_sizes(runtime)
            progress = _progress_events(runtime)
    service_s = others_s - model.cpu_s
    return {
        "jobs": jobs,
        "service_cpu_ms_per_job": round(service_s * 1000 / jobs, 2),
        "submit_cpu_ms_per_job": round(submit_s * 1000 / jobs, 2),
        "model_cpu_ms_per_job": round(model.cpu_s * 1000 / jobs, 3),
        "wall_s": round(wall_s, 2),
        "png_bytes_median": statistics.median(sizes),
        "progress_events_per_job": round(progress / (jobs + 2), 2),
    }


def _reset(runtime: Runtime) -> None:
    if runtime.settings.is_postgres:
        with runtime.engine.begin() as conn:
            conn.exec_driver_sql("TRUNCATE jobs CASCADE")


def _image_sizes(runtime: Runtime) -> list[int]:
    with runtime.engine.connect() as conn:
        return list(conn.exec_driver_sql("SELECT size_bytes FROM images").scalars())


def _progress_events(runtime: Runtime) -> int:
    with runtime.engine.connect() as conn:
        query = "SELECT count(*) FROM job_events WHERE type = 'progress'"
        return int(conn.exec_driver_sql(query).scalar() or 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=24)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", action="append", help="e.g. sqlite/off; may be repeated")
    parser.add_argument("--out", type=Path, default=RESULTS / "job_overhead.json")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get(
            "IMAGEGATE_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    args = parser.parse_args()
    quiet_production_logging()
    pictures = textured(sketches(12))
    pg_url, drop = fresh_postgres(args.postgres_url)
    configs = {
        f"{database}/{moderation}": (url, moderation == "on")
        for (database, url), moderation in itertools.product(
            (("sqlite", ""), ("postgresql", pg_url)), ("off", "on")
        )
    }
    configs = {name: c for name, c in configs.items() if not args.only or name in args.only}
    trials: dict[str, list[dict[str, Any]]] = {name: [] for name in configs}
    try:
        for _round in range(args.rounds):
            for name, (url, moderation) in configs.items():
                trials[name].append(trial(url, moderation, pictures, args.jobs))
    finally:
        drop()
    runs = {name: _medians(found) | {"trials": found} for name, found in trials.items()}
    print(f"CPU ms per job at 512x512, PNG level {PNG_LEVEL}, medians of {args.rounds} rounds")
    print(f"{'config':>16} {'service':>8} {'target':>7} {'submit':>7} {'png bytes':>10}")
    for name, run in runs.items():
        target = TARGETS_MS[name.split("/")[1]]
        print(
            f"{name:>16} {run['service_cpu_ms_per_job']:8.2f} {target:7.0f} "
            f"{run['submit_cpu_ms_per_job']:7.2f} {run['png_bytes_median']:10.0f}"
        )
    args.out.parent.mkdir(exist_ok=True)
    results = {
        "benchmark": "job_overhead",
        "when": datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        "size": "512x512",
        "png_level": PNG_LEVEL,
        "workers": WORKERS,
        "model_s": MODEL_S,
        "steps": STEPS,
        "targets_ms": {"moderation off": TARGETS_MS["off"], "moderation on": TARGETS_MS["on"]},
        "runs": runs,
    }
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


def _medians(trials: list[dict[str, Any]]) -> dict[str, Any]:
    return {key: statistics.median(t[key] for t in trials) for key in trials[0]}


if __name__ == "__main__":
    main()
