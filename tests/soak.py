"""A steady load on a real ``imagegate serve`` with short retention: rows and files are
sampled as it runs, to show they level off. Used by ``tests/test_retention.py`` (briefly)
and ``bench/retention_soak.py`` (for minutes)."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, func, select

from imagegate.jobs.tables import blobs, cache_entries, images, job_events, jobs
from tests.processes import serve

TABLES = {
    "jobs": jobs,
    "images": images,
    "job_events": job_events,
    "cache_entries": cache_entries,
    "blobs": blobs,
}


@dataclass
class Soak:
    retention_s: float
    samples: list[dict[str, Any]] = field(default_factory=list)
    submitted: int = 0
    failed: int = 0

    def levels(self, name: str) -> tuple[int, int]:
        """The highest count in the run's middle third, and in its last third."""
        values = [sample[name] for sample in self.samples]
        third = max(1, len(values) // 3)
        return max(values[third : 2 * third]), max(values[2 * third :])


def soak(database_url: str, data_dir: Path, duration_s: float, retention_s: float) -> Soak:
    env = {
        "IMAGEGATE_DATABASE_URL": database_url,
        "IMAGEGATE_DATA_DIR": str(data_dir),
        "IMAGEGATE_LOG_LEVEL": "warning",
        "IMAGEGATE_SECRET_KEY": "soak" * 10,
        "IMAGEGATE_OUTPUT_MODERATION": "false",
        "IMAGEGATE_PREVIEW_EVERY": "2",
        "IMAGEGATE_SKETCH_DELAY_MS": "20",
        "IMAGEGATE_RETENTION_DAYS": str(retention_s / 86400),
        "IMAGEGATE_EVENTS_RETENTION_HOURS": str(retention_s / 2 / 3600),
        "IMAGEGATE_PREVIEW_RETENTION_MINUTES": "0",
        "IMAGEGATE_CACHE_TTL_DAYS": str(retention_s / 2 / 86400),
        "IMAGEGATE_SWEEP_INTERVAL_S": "1",
    }
    result = Soak(retention_s)
    stop = threading.Event()
    with serve(env, data_dir.parent / "soak.log", workers=2) as api:
        load = threading.Thread(target=_submit, args=(api, stop, result))
        load.start()
        engine = create_engine(_sync_url(database_url))
        try:
            began = time.monotonic()
            while time.monotonic() - began < duration_s:
                time.sleep(1.0)
                result.samples.append(_sample(engine, data_dir, time.monotonic() - began))
        finally:
            stop.set()
            load.join()
            engine.dispose()
    return result


def _submit(api: httpx.Client, stop: threading.Event, result: Soak) -> None:
    """About 10 jobs a second: every fourth a repeat of a recent seeded one (a cache hit)."""
    index = 0
    while not stop.wait(0.1):
        index += 1
        seed = index - 3 if index % 4 == 0 else index
        body = {"prompt": "a lighthouse at dusk", "seed": seed, "width": 64, "height": 64}
        try:
            answer = api.post("/v1/jobs", json=body | {"steps": 4})
            result.submitted += 1
            result.failed += answer.status_code != 202
        except httpx.TransportError:
            result.failed += 1


def _sample(engine: Any, data_dir: Path, at: float) -> dict[str, Any]:
    with engine.connect() as conn:
        counts = {
            name: int(conn.execute(select(func.count()).select_from(table)).scalar_one())
            for name, table in TABLES.items()
        }
    # Folders vanish while we walk (the sweeper): os.walk skips what it cannot list.
    counts["files"] = sum(len(names) for _, _, names in os.walk(data_dir / "images"))
    return {"at_s": round(at, 1), **counts}


def _sync_url(url: str) -> str:
    return url.replace("postgresql://", "postgresql+psycopg://", 1)
