"""Small helpers the tests share: waiting on jobs and processes, without fixed sleeps."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import httpx

from imagegate.jobs.models import JobSpec

T = TypeVar("T")
FINAL = {"completed", "failed", "canceled"}


def eventually(probe: Callable[[], T | None], timeout_s: float = 20.0, every_s: float = 0.05) -> T:
    """Call ``probe`` until it returns something truthy; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s (last: {value!r})")
        time.sleep(every_s)


def wait_for_job(
    client: httpx.Client, job_id: str, statuses: set[str] = FINAL, timeout_s: float = 20.0
) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        job: dict[str, Any] = client.get(f"/v1/jobs/{job_id}").json()
        return job if job["status"] in statuses else None

    return eventually(probe, timeout_s)


def spec(prompt: str = "a lighthouse at dusk", **overrides: Any) -> JobSpec:
    values: dict[str, Any] = {
        "prompt": prompt,
        "full_prompt": prompt,
        "style": None,
        "negative_prompt": None,
        "width": 64,
        "height": 64,
        "steps": 4,
        "guidance": 7.5,
        "seed": 1,
    }
    return JobSpec(**(values | overrides))
