"""Flat at scale (issue 13, target 2): the hot operations on an empty PostgreSQL database
and on one holding 1,000,000 finished jobs (with their images and events) and 100,000
queued ones, seeded with SQL, measured side by side in one run: both databases at once,
each behind its own ``imagegate serve --workers 0``, in alternated rounds (so that this
machine's drift over the minutes of a run falls on both alike).

For each database:

- ``GET /v1/jobs/{id}`` and ``GET /status/{id}`` of the queued job at the back of the
  queue (the one whose place costs most to count, held there), median of sequential polls;
- the SSE stream of that job: the time to its first ``queued`` event;
- a submission (``POST /v1/jobs``), median;
- a claim (``JobStore.claim`` in this process, the query every worker runs), median.

Target: each within 1.2x of its time on the empty database. The plans of the queries
behind them are written with EXPLAIN ANALYZE into the JSON (``bench/results/at_scale.json``).

    .venv/bin/python bench/at_scale.py [--finished 1000000] [--queued 100000]
        [--postgres-url postgresql://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).parent))
from imagegate.jobs import lookup, queue
from imagegate.jobs.database import create_db_engine, upgrade
from imagegate.jobs.store import JobStore
from imagegate.settings import Settings
from status_poll import drop_postgres, fresh_postgres, server

BIN = Path(sys.executable).parent
RESULTS = Path(__file__).parent / "results"
BODY = {"prompt": "a lighthouse at dusk", "width": 64, "height": 64, "steps": 2}

# 1M finished jobs over 20 hours that ended 10 minutes ago (inside the events' 24-hour
# retention, so the sweeper has nothing to do meanwhile; and before the fair-share window,
# so a claim measures the history's size, not how many jobs the tenant started in the
# last minute), each with one image and three events, and the queued ones behind them;
# then VACUUM and ANALYZE, as autovacuum would soon do.
SEED = """
INSERT INTO jobs (id, owner, status, prompt, full_prompt, width, height, steps, guidance,
    seed, n, priority, attempts, created_at, run_after, started_at, finished_at, model,
    generation_time_ms, batch_size, output_format, cost_currency, cost_micros)
SELECT gen_random_uuid()::text, 'local', 'completed', 'a seeded harbour', 'a seeded harbour',
    64, 64, 2, 7.5, g, 1, 0, 1, t, t, t, t + interval '200 milliseconds', 'sketch-v1', 200, 1,
    'png', 'USD', 1000
FROM generate_series(1, :finished) AS g,
    LATERAL (
        SELECT now() - interval '20 hours 10 minutes' + g * (interval '20 hours' / :finished)
    ) AS s(t);
INSERT INTO images (id, job_id, idx, storage_key, width, height, size_bytes, created_at,
    content_type, sha256)
SELECT gen_random_uuid()::text, id, 0, 'blobs/00/' || md5(id) || '.png', 64, 64, 2000,
    finished_at, 'image/png', md5(id) || md5(id)
FROM jobs WHERE status = 'completed';
INSERT INTO job_events (job_id, type, data, created_at)
SELECT id, kind, '{}'::json, finished_at
FROM jobs, unnest(ARRAY['queued', 'started', 'completed']) AS kind
WHERE status = 'completed';
INSERT INTO jobs (id, owner, status, prompt, full_prompt, width, height, steps, guidance,
    seed, n, priority, attempts, created_at, run_after)
SELECT gen_random_uuid()::text, 'local', 'queued', 'a seeded lighthouse',
    'a seeded lighthouse', 64, 64, 2, 7.5, g, 1, 0, 0, t, t
FROM generate_series(1, :queued) AS g,
    LATERAL (SELECT now() - interval '10 minutes' + g * (interval '10 minutes' / :queued)) AS s(t);
"""


def first_event_ms(api: httpx.Client, job_id: str) -> float:
    started = time.perf_counter()
    with api.stream("GET", f"/v1/jobs/{job_id}/events") as stream:
        for line in stream.iter_lines():
            if line.startswith("event: queued"):
                return (time.perf_counter() - started) * 1000
    raise AssertionError("the stream ended without a queued event")


ROUNDS = 4  # alternated rounds: each operation, on each database, then again


@contextmanager
def subject(url: str) -> Iterator[dict[str, Callable[[], float]]]:
    """``imagegate serve --workers 0`` on the database at ``url``, and each operation as
    one timed call (ms). The job polled is at the back of the queue and kept there:
    its ``run_after`` is a day ahead, as a retry's backoff leaves it, so no claim takes it."""
    with tempfile.TemporaryDirectory() as tmp:
        env = {"IMAGEGATE_DATA_DIR": tmp, "IMAGEGATE_DATABASE_URL": url}
        serve = [str(BIN / "imagegate"), "serve", "--port", "{port}", "--workers", "0"]
        engine = create_db_engine(Settings(database_url=url, data_dir=Path(tmp)))
        store = JobStore(engine)
        with server(serve, env) as (api, _):
            last = api.post("/v1/jobs", json=BODY).json()["id"]
            with engine.begin() as conn:
                conn.execute(
                    text("UPDATE jobs SET run_after = now() + interval '1 day' WHERE id = :id"),
                    {"id": last},
                )
            yield {
                "get_job_ms": timed(lambda: api.get(f"/v1/jobs/{last}")),
                "status_ms": timed(lambda: api.get(f"/status/{last}")),
                "sse_first_queued_ms": lambda: first_event_ms(api, last),
                "submit_ms": timed(lambda: api.post("/v1/jobs", json=BODY)),
                "claim_ms": timed(lambda: store.claim(lease_s=600)),
            }
        engine.dispose()


def timed(run: Callable[[], Any]) -> Callable[[], float]:
    def once() -> float:
        started = time.perf_counter()
        run()
        return (time.perf_counter() - started) * 1000

    return once


def measure_side_by_side(urls: dict[str, str], polls: int) -> dict[str, dict[str, float]]:
    """Each operation's median on each database, from alternated rounds."""
    counts = {"get_job_ms": polls, "status_ms": polls, "sse_first_queued_ms": max(10, polls // 20)}
    counts |= {"submit_ms": polls // 4, "claim_ms": polls // 4}
    times: dict[str, dict[str, list[float]]] = {name: {} for name in urls}
    with subject(urls["empty"]) as empty, subject(urls["seeded"]) as seeded:
        operations = {"empty": empty, "seeded": seeded}
        for name in operations:  # warm-up: caches, connections, the thread pool
            for operation in operations[name].values():
                for _ in range(5):
                    operation()
        for _ in range(ROUNDS):
            for key, count in counts.items():
                for name, ops in operations.items():
                    found = times[name].setdefault(key, [])
                    found.extend(ops[key]() for _ in range(max(1, count // ROUNDS)))
    return {
        name: {key: round(statistics.median(values), 3) for key, values in found.items()}
        for name, found in times.items()
    }


def plans(engine: Engine) -> dict[str, str]:
    """EXPLAIN ANALYZE of the statements behind a queued job's poll, at the back of the
    queue: the very statements the store runs, compiled for PostgreSQL."""
    with engine.connect() as conn:
        job = conn.execute(
            text(
                "SELECT id, owner, priority, created_at FROM jobs WHERE status = 'queued' "
                "ORDER BY created_at DESC LIMIT 1"
            )
        ).one()
        values = {"priority": job.priority, "created": job.created_at, "id": job.id}
        owned = {"id": job.id, "owner": job.owner}
        statements = {
            "ahead_of": (queue._AHEAD, values),
            "mean_generation": (queue._MEAN_GENERATION_MS, {}),
            "job_by_id": (lookup._JOB[(True, False)].statement, owned),
            "job_with_place": (lookup._PLACED[(True, False)].statement, owned),  # /v1 polls
            "glance": (lookup._GLANCE[(True, False)].statement, owned),
        }
        found = {}
        for name, (statement, bound) in statements.items():
            compiled = statement.compile(dialect=conn.dialect)
            rows = conn.exec_driver_sql(
                f"EXPLAIN (ANALYZE, BUFFERS) {compiled}", compiled.construct_params(bound)
            )
            found[name] = "\n".join(row[0] for row in rows)
        return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--finished", type=int, default=1_000_000)
    parser.add_argument("--queued", type=int, default=100_000)
    parser.add_argument("--polls", type=int, default=400)
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get(
            "IMAGEGATE_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1/postgres"
        ),
    )
    args = parser.parse_args()
    admin = make_url(args.postgres_url).set(drivername="postgresql+psycopg")
    admin_url = admin.render_as_string(hide_password=False)
    url, name = fresh_postgres(admin_url)
    empty_url, empty_name = fresh_postgres(admin_url)
    results: dict[str, Any] = {
        "bench": "at_scale",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "finished": args.finished,
        "queued": args.queued,
        "target_ratio": 1.2,
        "rounds": ROUNDS,
    }
    try:
        upgrade_engine = create_engine(empty_url)
        upgrade(upgrade_engine)
        upgrade_engine.dispose()
        engine = create_engine(url)
        upgrade(engine)
        started = time.monotonic()
        with engine.begin() as conn:
            for statement in SEED.split(";\n"):
                if statement.strip():
                    conn.execute(
                        text(statement), {"finished": args.finished, "queued": args.queued}
                    )
        # What autovacuum would soon do after 5M inserts, done now, so that it does not
        # run during the measurements.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM (ANALYZE)"))
        results["seed_s"] = round(time.monotonic() - started, 1)
        print(f"seeded in {results['seed_s']} s", flush=True)
        measured = measure_side_by_side({"empty": empty_url, "seeded": url}, args.polls)
        results |= measured
        results["ratio"] = {
            key: round(results["seeded"][key] / results["empty"][key], 2)
            for key in results["empty"]
        }
        results["plans"] = plans(engine)
        engine.dispose()
    finally:
        drop_postgres(admin_url, name)
        drop_postgres(admin_url, empty_name)
    for key, ratio in results["ratio"].items():
        print(
            f"{key:22} empty {results['empty'][key]:8.2f} ms  seeded "
            f"{results['seeded'][key]:8.2f} ms  ratio {ratio:5.2f}"
        )
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "at_scale.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
