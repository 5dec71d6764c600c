"""Server CPU per status poll, against the floor, side by side in one run (issue 13, target 1).

For SQLite and PostgreSQL: ``imagegate serve --workers 0`` holds a queued, a generating and
a completed job (the completed one made by a worker in a first run of the server on the
same database; the generating one set by SQL, as a worker's claim would leave it). The
client polls ``GET /status/{id}`` and ``GET /v1/jobs/{id}`` of each, one request at a time
on a keep-alive connection, and the server process's CPU time (user + system, from
``/proc``) over the polls, divided by their number, is the cost of one poll.

The floor is ``bench/floor_app.py``: a bare FastAPI app answering the same JSON from a
dict, under the same uvicorn settings, measured in the same run: each trial alternates
the two in turns of a quarter of its polls, and the figure is the median of the trials'
ratios (each trial's ratio is also in the JSON). Target: at most 1.5 times the floor.

    .venv/bin/python bench/status_poll.py [--polls 2000] [--postgres-url postgresql://...]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psutil
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

BIN = Path(sys.executable).parent
RESULTS = Path(__file__).parent / "results"
STATES = ("queued", "generating", "completed")
ROUTES = {"legacy": "/status/{id}", "v1": "/v1/jobs/{id}"}
TRIALS = 5  # trials of each measurement; the median of their ratios is reported
CHUNKS = 4  # turns that ours and the floor take within a trial


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def server(args: list[str], env: dict[str, str]) -> Iterator[tuple[httpx.Client, int]]:
    port = free_port()
    command = [a.replace("{port}", str(port)) for a in args]
    log = Path(tempfile.mkstemp(prefix="status-poll-", suffix=".log")[1])
    with log.open("wb") as out:
        process = subprocess.Popen(command, env=os.environ | env, stdout=out, stderr=out)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log.read_text()[-3000:]
            try:
                if client.get("/health").status_code in (200, 404):
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.2)
        yield client, process.pid
    finally:
        client.close()
        process.terminate()
        process.wait(30)


def cpu_s(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def poll_cost_ms(client: httpx.Client, pid: int, path: str, polls: int) -> float:
    for _ in range(100):  # warm-up: caches, the connection, the thread pool
        assert client.get(path).status_code == 200
    before = cpu_s(pid)
    for _ in range(polls):
        client.get(path)
    return (cpu_s(pid) - before) / polls * 1000


def trial(
    ours: tuple[httpx.Client, int], floor: tuple[httpx.Client, int], path: str, polls: int
) -> tuple[float, float]:
    """CPU per poll of ours and of the floor, in CHUNKS alternated chunks each: the
    machine's speed drifts over seconds (the floor alone moved by a third within a run), and
    a drift falls on both alike only when they take turns this often."""
    spent = [0.0, 0.0]
    for _ in range(CHUNKS):
        for side, (client, pid) in enumerate((ours, floor)):
            spent[side] += poll_cost_ms(client, pid, path, polls // CHUNKS)
    return spent[0] / CHUNKS, spent[1] / CHUNKS


def imagegate_env(data_dir: Path, database_url: str | None) -> dict[str, str]:
    env = {"IMAGEGATE_DATA_DIR": str(data_dir), "IMAGEGATE_LOG_FORMAT": "json"}
    if database_url:
        env["IMAGEGATE_DATABASE_URL"] = database_url
    return env


def make_jobs(env: dict[str, str], database_url: str) -> dict[str, str]:
    """A completed job (made by a worker), then a queued one and a generating one."""
    serve = [str(BIN / "imagegate"), "serve", "--port", "{port}"]
    body = {"user_prompt": "a lighthouse at dusk", "style": "photorealistic"}
    with server([*serve, "--workers", "1"], env) as (client, _):
        done = client.post("/generate", params=body).json()["job_id"]
        while client.get(f"/status/{done}").json()["status"] != "completed":
            time.sleep(0.1)
    with server([*serve, "--workers", "0"], env) as (client, _):
        queued = client.post("/generate", params=body).json()["job_id"]
        generating = client.post("/generate", params=body).json()["job_id"]
    now = datetime.now(UTC)
    engine = create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE jobs SET status = 'generating', attempts = 1, started_at = :now, "
                "lease_token = :token, lease_expires_at = :until, progress_step = 3, "
                "progress_total = 8 WHERE id = :id"
            ),
            {
                "now": now,
                "token": str(uuid.uuid4()),
                "until": now + timedelta(days=1),
                "id": generating,
            },
        )
    engine.dispose()
    return {"queued": queued, "generating": generating, "completed": done}


def measure_database(name: str, database_url: str | None, polls: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        env = imagegate_env(Path(tmp), database_url)
        url = database_url or f"sqlite:///{Path(tmp) / 'imagegate.db'}"
        jobs = make_jobs(env, url)
        serve = [str(BIN / "imagegate"), "serve", "--port", "{port}", "--workers", "0"]
        floor = [str(BIN / "python"), "-m", "uvicorn", "floor_app:app", "--port", "{port}"]
        floor_env = {"PYTHONPATH": str(Path(__file__).parent)}
        figures: dict[str, Any] = {}
        with server(serve, env) as (api, api_pid), server(floor, floor_env) as (bare, bare_pid):
            for state, job_id in jobs.items():
                shapes = {
                    "legacy": api.get(f"/status/{job_id}").json(),
                    "v1": api.get(f"/v1/jobs/{job_id}").json(),
                }
                assert shapes["legacy"]["status"] == state, shapes
                bare.put(f"/jobs/{job_id}", json=shapes)
            for route, template in ROUTES.items():
                for state, job_id in jobs.items():
                    path = template.format(id=job_id)
                    pairs = [
                        trial((api, api_pid), (bare, bare_pid), path, polls) for _ in range(TRIALS)
                    ]
                    ms = statistics.median(o for o, _ in pairs)
                    floor_ms = statistics.median(f for _, f in pairs)
                    ratio = statistics.median(o / f for o, f in pairs)  # each trial's own
                    figures[f"{route}/{state}"] = {
                        "ms": round(ms, 3),
                        "floor_ms": round(floor_ms, 3),
                        "ratio": round(ratio, 2),
                        "trial_ratios": [round(o / f, 2) for o, f in pairs],
                    }
                    print(
                        f"{name:10} {template:15} {state:10} {ms:6.3f} ms  floor "
                        f"{floor_ms:6.3f} ms  ratio {ratio:4.2f}",
                        flush=True,
                    )
        return figures


def fresh_postgres(admin_url: str) -> tuple[str, str]:
    name = f"bench_poll_{uuid.uuid4().hex[:8]}"
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    url = make_url(admin_url).set(database=name, drivername="postgresql+psycopg")
    return url.render_as_string(hide_password=False), name


def drop_postgres(admin_url: str, name: str) -> None:
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--polls", type=int, default=2000)
    parser.add_argument("--postgres-url", default=os.environ.get("IMAGEGATE_TEST_DATABASE_URL"))
    args = parser.parse_args()
    results: dict[str, Any] = {
        "bench": "status_poll",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}",
        "polls": args.polls,
        "trials": TRIALS,
        "target_ratio": 1.5,
    }
    results["sqlite"] = measure_database("sqlite", None, args.polls)
    if args.postgres_url:
        admin = make_url(args.postgres_url).set(drivername="postgresql+psycopg")
        admin_url = admin.render_as_string(hide_password=False)
        url, name = fresh_postgres(admin_url)
        try:
            results["postgres"] = measure_database("postgres", url, args.polls)
        finally:
            drop_postgres(admin_url, name)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "status_poll.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULTS / 'status_poll.json'}")


if __name__ == "__main__":
    main()
