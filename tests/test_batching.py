"""Dynamic batching in the worker: compatible queued jobs share one generator call."""

from __future__ import annotations

import io
from collections.abc import Callable

import httpx
from PIL import Image

from tests.conftest import SettingsFactory
from tests.helpers import wait_for_job


def test_compatible_jobs_run_as_one_batch_and_are_recorded_apart(
    server_factory: Callable[..., httpx.Client], make_settings: SettingsFactory
) -> None:
    settings = make_settings(max_batch=4, batch_window_ms=50)
    queue_only = server_factory(settings, workers=0)
    alike = [
        queue_only.post("/v1/jobs", json={"prompt": f"boat {i}", "seed": i, "width": 128}).json()
        for i in range(5)
    ]
    odd = queue_only.post("/v1/jobs", json={"prompt": "wide", "width": 256}).json()
    worker = server_factory(settings, workers=1)
    done = [wait_for_job(worker, job["id"]) for job in [*alike, odd]]
    sizes = [job["metadata"]["batch_size"] for job in done]
    assert sizes == [4, 4, 4, 4, 1, 1]  # by age: four alike, then the fifth and the odd one
    assert len({job["images"][0]["id"] for job in done}) == 6
    again = {"prompt": "boat 0", "seed": 0, "width": 128, "cache": "no-cache"}  # run it, alone
    alone = worker.post("/v1/jobs", json=again).json()
    solo = wait_for_job(worker, alone["id"])
    assert solo["metadata"]["batch_size"] == 1
    batched_png = worker.get(done[0]["images"][0]["url"]).content
    solo_png = worker.get(solo["images"][0]["url"]).content
    assert _pixels(batched_png) == _pixels(solo_png)


def _pixels(png: bytes) -> bytes:
    return Image.open(io.BytesIO(png)).tobytes()
