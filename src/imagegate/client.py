"""A small synchronous client for the /v1 API, used by ``imagegate generate``."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

from imagegate.errors import GenerationError, RemoteError

FINAL = {"completed", "failed", "canceled"}


class ImageGateClient:
    def __init__(self, base_url: str, timeout_s: float = 30.0, api_key: str | None = None):
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=base_url, timeout=timeout_s, headers=headers)

    def close(self) -> None:
        self._http.close()

    def submit(self, **fields: Any) -> dict[str, Any]:
        return self._json(self._http.post("/v1/jobs", json=fields))

    def job(self, job_id: str) -> dict[str, Any]:
        return self._json(self._http.get(f"/v1/jobs/{job_id}"))

    def wait(
        self,
        job_id: str,
        on_update: Callable[[dict[str, Any]], None] = lambda job: None,
        poll_s: float = 0.2,
    ) -> dict[str, Any]:
        """Poll until the job is final; raises when it did not complete."""
        while True:
            job = self.job(job_id)
            on_update(job)
            if job["status"] in FINAL:
                break
            time.sleep(poll_s)
        if job["status"] != "completed":
            error = job.get("error") or {}
            raise GenerationError(f"job {job['status']}: {error.get('message', 'no reason given')}")
        return job

    def download(self, url: str) -> bytes:
        response = self._http.get(url)
        response.raise_for_status()
        return response.content

    @staticmethod
    def _json(response: httpx.Response) -> dict[str, Any]:
        if response.is_error:
            problem = response.json() if response.content else {}
            raise RemoteError(problem.get("detail") or response.text, problem=problem)
        body: dict[str, Any] = response.json()
        return body
