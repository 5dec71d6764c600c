"""What tenancy costs and what fair share buys, measured on real ``imagegate serve`` processes.

1. **Auth overhead.** The same poll (``GET /v1/jobs/{id}`` of a finished job) against three
   servers side by side, in interleaved rounds: ``IMAGEGATE_AUTH=off`` (the floor), and
   ``required`` with a key whose tenant has rate limits, counted in memory and in Redis.
   Reports each median and the difference from the floor (target: at most 0.3 ms), and the
   same for the dependency alone, called in process (authenticate and count the request).
2. **Fair share.** Two workers, a 100 ms generation: tenant A submits 300 jobs, then tenant
   B submits 10. Reports B's median wait (submission to start) in generation times (target
   at most 3; first come, first served, run in the same script, gives about 150) and the
   throughput against the limit of 2 jobs per 100 ms (target at least 95%): over the whole
   run, and once every submission is in (the 310 submissions share the same two cores).

Writes ``bench/results/tenancy.json``.

    .venv/bin/python bench/tenancy.py [--polls 2000] [--redis-url redis://127.0.0.1:6379/0]
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
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.helpers import eventually
from tests.processes import serve

RESULTS = Path(__file__).parent / "results"
ADMIN = "bench-admin-token-0123456789abcdef-xyz"
BASE = {"IMAGEGATE_LOG_LEVEL": "warning", "IMAGEGATE_SAFETY_ENABLED": "false"}
WORKERS, DELAY_MS = 2, 100
LIMITS = {"requests_per_minute": 10_000_000, "images_per_minute": 10_000_000}


def make_key(client: httpx.Client, tenant: str, limits: dict[str, int] | None = None) -> str:
    admin = {"Authorization": f"Bearer {ADMIN}"}
    if limits:
        client.put(f"/v1/admin/tenants/{tenant}", json={"limits": limits}, headers=admin)
    created = client.post("/v1/admin/keys", json={"tenant": tenant, "name": "bench"}, headers=admin)
    created.raise_for_status()
    key: str = created.json()["key"]
    return key


def env_for(work: Path, name: str, **more: str) -> dict[str, str]:
    data = work / name
    return BASE | {"IMAGEGATE_DATA_DIR": str(data), "IMAGEGATE_ADMIN_TOKEN": ADMIN} | more


def finished_job(client: httpx.Client, headers: dict[str, str]) -> str:
    job_id: str = client.post("/v1/jobs", json={"prompt": "a poll"}, headers=headers).json()["id"]

    def done() -> bool:
        return client.get(f"/v1/jobs/{job_id}", headers=headers).json()["status"] == "completed"

    eventually(done, timeout_s=30)
    return job_id


def auth_overhead(work: Path, polls: int, redis_url: str | None) -> dict[str, Any]:
    variants = {"off": {}, "required_memory": {"IMAGEGATE_AUTH": "required"}}
    if redis_url:
        variants["required_redis"] = {
            "IMAGEGATE_AUTH": "required",
            "IMAGEGATE_REDIS_URL": redis_url,
        }
    targets: dict[str, tuple[httpx.Client, str, dict[str, str]]] = {}
    with ExitStack() as stack:
        for name, extra in variants.items():
            client = stack.enter_context(
                serve(env_for(work, name, **extra), work / f"{name}.log", 1)
            )
            headers = (
                {}
                if name == "off"
                else {"Authorization": f"Bearer {make_key(client, name, LIMITS)}"}
            )
            targets[name] = (client, f"/v1/jobs/{finished_job(client, headers)}", headers)
        samples: dict[str, list[float]] = {name: [] for name in targets}
        for _ in range(polls):  # round robin: drift hits every variant alike
            for name, (client, path, headers) in targets.items():
                started = time.perf_counter()
                response = client.get(path, headers=headers)
                samples[name].append((time.perf_counter() - started) * 1000)
                assert response.status_code == 200, response.text
    medians = {name: round(statistics.median(ms), 4) for name, ms in samples.items()}
    return {
        "polls_per_variant": len(samples["off"]),
        "median_ms": medians,
        "added_ms": {name: round(ms - medians["off"], 4) for name, ms in medians.items()},
        "target_added_ms": 0.3,
    }


def auth_cpu(work: Path, calls: int, redis_url: str | None) -> dict[str, Any]:
    """The dependency itself, in process: authenticate and count one request, per call."""
    from starlette.requests import Request

    from imagegate.api.deps import authenticate
    from imagegate.runtime import Runtime
    from imagegate.settings import load_settings

    runtimes, requests = {}, {}
    variants = {"off": {}, "required_memory": {"auth": "required"}}
    if redis_url:
        variants["required_redis"] = {"auth": "required", "redis_url": redis_url}
    for name, extra in variants.items():
        settings = load_settings(data_dir=work / f"cpu-{name}", safety_enabled=False, **extra)
        runtime = Runtime(settings)
        runtime.keys.put_tenant(name, limits=LIMITS)
        _, secret = runtime.keys.create_key(name, "bench", ["jobs:read"])
        header = [(b"authorization", f"Bearer {secret}".encode())]
        scope = {"type": "http", "headers": header, "query_string": b"", "client": ("127.0.0.1", 1)}
        runtimes[name], requests[name] = runtime, Request(scope)
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(calls // 100):
        for name in variants:
            started = time.perf_counter()
            for _ in range(100):
                authenticate(runtimes[name], requests[name])
            samples[name].append((time.perf_counter() - started) * 10)  # ms per call
    for runtime in runtimes.values():
        runtime.close()
    medians = {name: round(statistics.median(ms), 4) for name, ms in samples.items()}
    return {
        "calls_per_variant": calls,
        "median_ms": medians,
        "added_ms": {name: round(ms - medians["off"], 4) for name, ms in medians.items()},
    }


def fair_share(work: Path, name: str, fair: bool, a_jobs: int, b_jobs: int) -> dict[str, Any]:
    env = env_for(
        work,
        name,
        IMAGEGATE_AUTH="required",
        IMAGEGATE_SKETCH_DELAY_MS=str(DELAY_MS),
        IMAGEGATE_FAIR_SHARE=str(fair).lower(),
        IMAGEGATE_OUTPUT_MODERATION="false",
    )
    with serve(env, work / f"{name}.log", WORKERS) as client:
        keys = {t: {"Authorization": f"Bearer {make_key(client, t)}"} for t in ("a", "b")}
        a_ids = _submit_many(client, keys["a"], a_jobs, "tenant a")
        b_ids = _submit_many(client, keys["b"], b_jobs, "tenant b")
        submitted = datetime.now(UTC)
        every = [(keys["a"], i) for i in a_ids] + [(keys["b"], i) for i in b_ids]
        eventually(lambda: _all_final(client, every), timeout_s=a_jobs * DELAY_MS / 1000 + 120)
        a = [client.get(f"/v1/jobs/{i}", headers=keys["a"]).json() for i in a_ids]
        b = [client.get(f"/v1/jobs/{i}", headers=keys["b"]).json() for i in b_ids]
    waits = [(_t(j["started_at"]) - _t(j["created_at"])).total_seconds() for j in b]
    span = max(_t(j["finished_at"]) for j in a + b) - min(_t(j["created_at"]) for j in a)
    ideal_s = (a_jobs + b_jobs) * DELAY_MS / 1000 / WORKERS
    a_span = max(_t(j["finished_at"]) for j in a) - min(_t(j["created_at"]) for j in a)
    # Once every submission is in, the workers alone: job starts per second, against the limit.
    later = sorted(_t(j["started_at"]) for j in a + b if _t(j["started_at"]) > submitted)
    steady = (len(later) - 1) / (later[-1] - later[0]).total_seconds()
    return {
        "fair_share": fair,
        "a_jobs": a_jobs,
        "b_jobs": b_jobs,
        "b_median_wait_s": round(statistics.median(waits), 3),
        "b_median_wait_generations": round(statistics.median(waits) / (DELAY_MS / 1000), 2),
        "b_max_wait_generations": round(max(waits) / (DELAY_MS / 1000), 2),
        "throughput_vs_limit": round(ideal_s / span.total_seconds(), 4),
        "steady_throughput_vs_limit": round(steady / (WORKERS / (DELAY_MS / 1000)), 4),
        "a_jobs_per_s": round(a_jobs / a_span.total_seconds(), 2),
        "limit_jobs_per_s": WORKERS / (DELAY_MS / 1000),
        "completed": sum(j["status"] == "completed" for j in a + b),
    }


def _submit_many(
    client: httpx.Client, headers: dict[str, str], count: int, prompt: str
) -> list[str]:
    def one(i: int) -> str:
        response = client.post(
            "/v1/jobs", json={"prompt": f"{prompt} {i}", "width": 64, "height": 64}, headers=headers
        )
        response.raise_for_status()
        job_id: str = response.json()["id"]
        return job_id

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(count)))


def _all_final(client: httpx.Client, jobs: list[tuple[dict[str, str], str]]) -> bool:
    page = jobs[-1]  # cheap check first: the newest job, then all
    if client.get(f"/v1/jobs/{page[1]}", headers=page[0]).json()["finished_at"] is None:
        return False
    return all(client.get(f"/v1/jobs/{i}", headers=h).json()["finished_at"] for h, i in jobs)


def _medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Each figure's median over the trials (and the trials themselves)."""
    numbers = [k for k, v in runs[0].items() if isinstance(v, float)]
    return (
        runs[0]
        | {k: statistics.median(r[k] for r in runs) for k in numbers}
        | {
            "trials": len(runs),
            "per_trial": {k: [r[k] for r in runs] for k in numbers},
        }
    )


def _t(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--polls", type=int, default=2000)
    parser.add_argument("--a-jobs", type=int, default=300)
    parser.add_argument("--b-jobs", type=int, default=10)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--redis-url", default=os.environ.get("IMAGEGATE_TEST_REDIS_URL"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        overhead = auth_overhead(work, args.polls, args.redis_url)
        overhead["in_process"] = auth_cpu(work, 20 * args.polls, args.redis_url)
        print(json.dumps(overhead, indent=2))
        trials: dict[str, list[dict[str, Any]]] = {"fair": [], "fcfs": []}
        for trial in range(args.trials):  # alternated, so drift hits both alike
            for name in trials:
                run = fair_share(work, f"{name}{trial}", name == "fair", args.a_jobs, args.b_jobs)
                print(json.dumps(run))
                trials[name].append(run)
    fair, fcfs = (_medians(trials[name]) for name in ("fair", "fcfs"))
    print(json.dumps({"fair": fair, "fcfs": fcfs}, indent=2))
    results = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "auth_overhead": overhead,
        "fair_share": {"fair": fair, "first_come_first_served": fcfs},
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "tenancy.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULTS / 'tenancy.json'}")


if __name__ == "__main__":
    main()
