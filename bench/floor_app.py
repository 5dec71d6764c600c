"""The floor for a status poll: a bare FastAPI app that answers the same shapes from a dict.

Served by ``bench/status_poll.py`` under the same uvicorn settings as ``imagegate serve``
(access log included), so the difference is what ImageGate's own code costs per poll.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, HTTPException

app = FastAPI()
JOBS: dict[str, dict[str, Any]] = {}


@app.put("/jobs/{job_id}")
def put(job_id: str, body: dict[str, Any]) -> dict[str, str]:
    JOBS[job_id] = body
    return {"ok": job_id}


@app.get("/status/{job_id}")
def status(job_id: str) -> dict[str, Any]:
    return _found(job_id, "legacy")


@app.get("/v1/jobs/{job_id}")
def job(job_id: str) -> dict[str, Any]:
    return _found(job_id, "v1")


def _found(job_id: str, shape: str) -> dict[str, Any]:
    try:
        found: dict[str, Any] = JOBS[job_id][shape]
    except KeyError:
        raise HTTPException(404) from None
    return found
